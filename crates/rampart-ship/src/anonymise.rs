//! Anonymisation of records: drop fields, truncate IP addresses, replace user names, host names
//! and IP addresses by keyed pseudonyms.
//!
//! The server applies a region's policy at ingest; an agent can apply the same policy before
//! data leaves the host. Pseudonyms are HMAC-SHA256 of the value under a secret key, so the same
//! value always gets the same pseudonym (correlation across hosts and days still works) while
//! the value cannot be recovered without the key:
//!
//! | what | pseudonym form |
//! |---|---|
//! | user name | `u-` and 16 hex digits |
//! | host name | `h-` and 16 hex digits |
//! | IP address | an IPv6 address in `fd00::/8` (unique local), 120 bits of the HMAC: it stays a valid address for every consumer of the JSON |
//! | other string fields | `p-` and 16 hex digits |
//!
//! Structured fields are rewritten where they are (paths below); free-text fields that may quote
//! them (`message`, `output_fields` values, `auth.message`) get every replaced value substituted
//! too, so an alert's rendered output does not leak what its fields hide. Alerts' evidence events
//! are anonymised like events.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ring::hmac;
use serde::Deserialize;
use serde_json::Value;

/// What to do with IP addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpPolicy {
    #[default]
    Keep,
    /// Zero the host bits beyond `ipv4_prefix` / `ipv6_prefix`.
    Truncate,
    /// Replace by a keyed pseudonym address.
    Pseudonymise,
    /// Remove the field.
    Drop,
}

fn default_v4_prefix() -> u8 {
    24
}
fn default_v6_prefix() -> u8 {
    48
}

/// `anonymise:` of a region (server) or of the agent.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnonymiseConfig {
    /// Fields removed from every record, as dotted paths (`process.args`, `auth.message`);
    /// arrays on the way are traversed (`process.ancestors.args`).
    #[serde(default)]
    pub drop: Vec<String>,
    /// `keep` (default), `truncate`, `pseudonymise` or `drop`.
    #[serde(default)]
    pub ips: IpPolicy,
    /// Prefix kept by `ips: truncate` for IPv4 (default 24).
    #[serde(default = "default_v4_prefix")]
    pub ipv4_prefix: u8,
    /// Prefix kept by `ips: truncate` for IPv6 (default 48).
    #[serde(default = "default_v6_prefix")]
    pub ipv6_prefix: u8,
    /// Replace user names (`process.user`, `auth.user`) by pseudonyms.
    #[serde(default)]
    pub users: bool,
    /// Replace host names (`device.hostname`) by pseudonyms.
    #[serde(default)]
    pub hostnames: bool,
    /// Further string fields replaced by pseudonyms, as dotted paths.
    #[serde(default)]
    pub pseudonymise: Vec<String>,
}

impl Default for AnonymiseConfig {
    /// Changes nothing; truncation prefixes 24 (IPv4) and 48 (IPv6).
    fn default() -> Self {
        AnonymiseConfig {
            drop: Vec::new(),
            ips: IpPolicy::Keep,
            ipv4_prefix: default_v4_prefix(),
            ipv6_prefix: default_v6_prefix(),
            users: false,
            hostnames: false,
            pseudonymise: Vec::new(),
        }
    }
}

/// Where IP addresses live in a record.
const IP_PATHS: &[&str] = &[
    "network.src.ip",
    "network.dst.ip",
    "dns.server.ip",
    "auth.src_ip",
];
const USER_PATHS: &[&str] = &["process.user", "auth.user"];
const HOST_PATHS: &[&str] = &["device.hostname"];
/// Free text that may quote other fields' values.
const TEXT_PATHS: &[&str] = &["message", "auth.message", "output"];

/// A configured anonymiser. Applying it is deterministic for a given key.
pub struct Anonymiser {
    cfg: AnonymiseConfig,
    key: hmac::Key,
}

impl std::fmt::Debug for Anonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anonymiser")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// A policy that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnonymiseError {
    #[error("anonymise: ipv4_prefix {0} is more than 32")]
    V4Prefix(u8),
    #[error("anonymise: ipv6_prefix {0} is more than 128")]
    V6Prefix(u8),
    #[error("anonymise: path {0:?} is empty or has an empty component")]
    Path(String),
    #[error("anonymise: the pseudonym key must be at least 16 bytes, got {0}")]
    ShortKey(usize),
}

impl Anonymiser {
    /// An anonymiser for `cfg` with the pseudonym key `key` (at least 16 bytes).
    pub fn new(cfg: AnonymiseConfig, key: &[u8]) -> Result<Anonymiser, AnonymiseError> {
        if cfg.ipv4_prefix > 32 {
            return Err(AnonymiseError::V4Prefix(cfg.ipv4_prefix));
        }
        if cfg.ipv6_prefix > 128 {
            return Err(AnonymiseError::V6Prefix(cfg.ipv6_prefix));
        }
        for p in cfg.drop.iter().chain(&cfg.pseudonymise) {
            if p.is_empty() || p.split('.').any(str::is_empty) {
                return Err(AnonymiseError::Path(p.clone()));
            }
        }
        if key.len() < 16 {
            return Err(AnonymiseError::ShortKey(key.len()));
        }
        Ok(Anonymiser {
            cfg,
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    /// True when the policy changes nothing.
    pub fn is_noop(&self) -> bool {
        self.cfg.drop.is_empty()
            && self.cfg.ips == IpPolicy::Keep
            && !self.cfg.users
            && !self.cfg.hostnames
            && self.cfg.pseudonymise.is_empty()
    }

    fn mac(&self, category: &str, value: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(category.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The pseudonym of a user name.
    pub fn user_pseudonym(&self, user: &str) -> String {
        format!("u-{}", hex::encode(&self.mac("user", user)[..8]))
    }

    /// The pseudonym of a host name.
    pub fn host_pseudonym(&self, host: &str) -> String {
        format!("h-{}", hex::encode(&self.mac("host", host)[..8]))
    }

    /// The pseudonym of any other value.
    pub fn value_pseudonym(&self, value: &str) -> String {
        format!("p-{}", hex::encode(&self.mac("value", value)[..8]))
    }

    /// The pseudonym of an IP address: a unique-local IPv6 address.
    pub fn ip_pseudonym(&self, ip: IpAddr) -> IpAddr {
        let m = self.mac("ip", &ip.to_string());
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        b[1..16].copy_from_slice(&m[..15]);
        IpAddr::V6(Ipv6Addr::from(b))
    }

    /// `ip` with the host bits beyond the configured prefix zeroed.
    pub fn truncate_ip(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let p = u32::from(self.cfg.ipv4_prefix);
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                IpAddr::V4(Ipv4Addr::from(bits & mask))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let p = u32::from(self.cfg.ipv6_prefix);
                let mask = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }
    }

    /// Anonymises one record (event or alert JSON) in place.
    pub fn apply(&self, record: &mut Value) {
        if self.is_noop() {
            return;
        }
        let mut replaced = BTreeMap::new();
        self.apply_structured(record, &mut replaced);
        if let Some(evidences) = record.get_mut("evidences").and_then(Value::as_array_mut) {
            for e in evidences.iter_mut() {
                self.apply_structured(e, &mut replaced);
                self.apply_text(e, &replaced);
            }
        }
        self.apply_text(record, &replaced);
    }

    fn apply_structured(&self, v: &mut Value, replaced: &mut BTreeMap<String, String>) {
        for path in &self.cfg.drop {
            let parts: Vec<&str> = path.split('.').collect();
            remove_path(v, &parts, replaced);
        }
        if self.cfg.ips != IpPolicy::Keep {
            for path in IP_PATHS {
                let parts: Vec<&str> = path.split('.').collect();
                if self.cfg.ips == IpPolicy::Drop {
                    remove_path(v, &parts, replaced);
                } else {
                    map_strings(
                        v,
                        &parts,
                        &mut |s| {
                            let ip: IpAddr = s.parse().ok()?;
                            let new = match self.cfg.ips {
                                IpPolicy::Truncate => self.truncate_ip(ip),
                                _ => self.ip_pseudonym(ip),
                            };
                            Some(new.to_string())
                        },
                        replaced,
                    );
                }
            }
            // DNS answers that are addresses.
            if let Some(answers) = v.pointer_mut("/dns/answers").and_then(Value::as_array_mut) {
                for a in answers {
                    let is_addr =
                        matches!(a.get("rtype").and_then(Value::as_str), Some("A" | "AAAA"));
                    if !is_addr {
                        continue;
                    }
                    if self.cfg.ips == IpPolicy::Drop {
                        if let Some(obj) = a.as_object_mut() {
                            if let Some(Value::String(old)) = obj.remove("data") {
                                replaced.insert(old, "[dropped]".into());
                            }
                        }
                    } else {
                        map_strings(
                            a,
                            &["data"],
                            &mut |s| {
                                let ip: IpAddr = s.parse().ok()?;
                                Some(
                                    match self.cfg.ips {
                                        IpPolicy::Truncate => self.truncate_ip(ip),
                                        _ => self.ip_pseudonym(ip),
                                    }
                                    .to_string(),
                                )
                            },
                            replaced,
                        );
                    }
                }
            }
        }
        if self.cfg.users {
            for path in USER_PATHS {
                let parts: Vec<&str> = path.split('.').collect();
                map_strings(v, &parts, &mut |s| Some(self.user_pseudonym(s)), replaced);
            }
        }
        if self.cfg.hostnames {
            for path in HOST_PATHS {
                let parts: Vec<&str> = path.split('.').collect();
                map_strings(v, &parts, &mut |s| Some(self.host_pseudonym(s)), replaced);
            }
        }
        for path in &self.cfg.pseudonymise {
            let parts: Vec<&str> = path.split('.').collect();
            map_strings(v, &parts, &mut |s| Some(self.value_pseudonym(s)), replaced);
        }
    }

    /// Substitutes replaced values inside free text, longest first so that a value containing
    /// another is replaced whole.
    fn apply_text(&self, v: &mut Value, replaced: &BTreeMap<String, String>) {
        let mut pairs: Vec<(&String, &String)> = replaced
            .iter()
            .filter(|(k, _)| k.chars().count() >= 3)
            .collect();
        if pairs.is_empty() {
            return;
        }
        pairs.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        let subst = |s: &mut String| {
            for (old, new) in &pairs {
                if s.contains(old.as_str()) {
                    *s = s.replace(old.as_str(), new);
                }
            }
        };
        for path in TEXT_PATHS {
            let parts: Vec<&str> = path.split('.').collect();
            visit_strings(v, &parts, &mut |s| subst(s));
        }
        if let Some(fields) = v.get_mut("output_fields").and_then(Value::as_object_mut) {
            for val in fields.values_mut() {
                if let Value::String(s) = val {
                    subst(s);
                }
            }
        }
    }
}

/// Removes the value at `path` (through arrays), remembering removed strings for free text.
fn remove_path(v: &mut Value, path: &[&str], replaced: &mut BTreeMap<String, String>) {
    match v {
        Value::Array(items) => {
            for item in items {
                remove_path(item, path, replaced);
            }
        }
        Value::Object(map) => match path {
            [] => {}
            [last] => {
                if let Some(old) = map.remove(*last) {
                    remember_dropped(&old, replaced);
                }
            }
            [first, rest @ ..] => {
                if let Some(child) = map.get_mut(*first) {
                    remove_path(child, rest, replaced);
                }
            }
        },
        _ => {}
    }
}

fn remember_dropped(v: &Value, replaced: &mut BTreeMap<String, String>) {
    match v {
        Value::String(s) => {
            replaced.insert(s.clone(), "[dropped]".into());
        }
        Value::Array(items) => {
            for i in items {
                remember_dropped(i, replaced);
            }
        }
        _ => {}
    }
}

/// Replaces each string at `path` (through arrays) by `f(string)` when it returns a value.
fn map_strings(
    v: &mut Value,
    path: &[&str],
    f: &mut dyn FnMut(&str) -> Option<String>,
    replaced: &mut BTreeMap<String, String>,
) {
    visit_strings(v, path, &mut |s| {
        if let Some(new) = f(s) {
            replaced.insert(std::mem::replace(s, new.clone()), new);
        }
    });
}

fn visit_strings(v: &mut Value, path: &[&str], f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::Array(items) => {
            for item in items {
                visit_strings(item, path, f);
            }
        }
        Value::String(s) if path.is_empty() => f(s),
        Value::Object(map) => {
            if let [first, rest @ ..] = path {
                if let Some(child) = map.get_mut(*first) {
                    visit_strings(child, rest, f);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn anon(cfg: AnonymiseConfig) -> Anonymiser {
        Anonymiser::new(cfg, b"0123456789abcdef0123456789abcdef").expect("valid policy")
    }

    fn record() -> Value {
        json!({
            "type": "net.connect",
            "device": {"hostname": "web-1", "region": "eu-de"},
            "process": {"name": "curl", "user": "alice", "args": ["curl", "http://10.1.2.3/"]},
            "network": {"direction": "outbound", "src": {"ip": "192.168.7.9", "port": 40000},
                        "dst": {"ip": "2001:db8:1:2:3:4:5:6", "port": 443}},
        })
    }

    #[test]
    fn truncation_zeroes_host_bits() {
        let a = anon(AnonymiseConfig {
            ips: IpPolicy::Truncate,
            ..AnonymiseConfig::default()
        });
        let mut r = record();
        a.apply(&mut r);
        assert_eq!(r["network"]["src"]["ip"], "192.168.7.0");
        assert_eq!(r["network"]["dst"]["ip"], "2001:db8:1::");
        assert_eq!(r["process"]["user"], "alice", "users untouched");
    }

    #[test]
    fn pseudonyms_are_stable_valid_and_keyed() {
        let cfg = AnonymiseConfig {
            ips: IpPolicy::Pseudonymise,
            users: true,
            hostnames: true,
            ..AnonymiseConfig::default()
        };
        let a = anon(cfg.clone());
        let (mut r1, mut r2) = (record(), record());
        a.apply(&mut r1);
        a.apply(&mut r2);
        assert_eq!(r1, r2, "deterministic");
        let ip: IpAddr = r1["network"]["src"]["ip"]
            .as_str()
            .unwrap_or("")
            .parse()
            .expect("an address");
        assert!(matches!(ip, IpAddr::V6(v6) if v6.octets()[0] == 0xfd));
        assert!(r1["process"]["user"]
            .as_str()
            .is_some_and(|u| u.starts_with("u-") && u.len() == 18));
        assert!(r1["device"]["hostname"]
            .as_str()
            .is_some_and(|h| h.starts_with("h-")));
        let other = Anonymiser::new(cfg, b"another key, also 32 bytes long!").expect("valid");
        let mut r3 = record();
        other.apply(&mut r3);
        assert_ne!(r1["process"]["user"], r3["process"]["user"], "key matters");
    }

    #[test]
    fn dropped_and_replaced_values_leave_alert_text_too() {
        let a = anon(AnonymiseConfig {
            drop: vec!["process.args".into()],
            users: true,
            ..AnonymiseConfig::default()
        });
        let mut alert = json!({
            "type": "alert",
            "message": "alice ran curl http://10.1.2.3/",
            "output_fields": {"user.name": "alice"},
            "process": {"user": "alice", "args": ["curl", "http://10.1.2.3/"]},
            "evidences": [record()],
        });
        a.apply(&mut alert);
        let u = a.user_pseudonym("alice");
        // Conservative: argv[0] is dropped from the text as well.
        assert_eq!(alert["message"], format!("{u} ran [dropped] [dropped]"));
        assert_eq!(alert["output_fields"]["user.name"], u);
        assert!(alert["process"].get("args").is_none());
        assert!(alert["evidences"][0]["process"].get("args").is_none());
        assert_eq!(alert["evidences"][0]["process"]["user"], u);
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(Anonymiser::new(
            AnonymiseConfig {
                ipv4_prefix: 40,
                ..AnonymiseConfig::default()
            },
            &[0; 32]
        )
        .is_err());
        assert!(Anonymiser::new(AnonymiseConfig::default(), b"short").is_err());
        assert!(Anonymiser::new(
            AnonymiseConfig {
                drop: vec!["a..b".into()],
                ..AnonymiseConfig::default()
            },
            &[0; 32]
        )
        .is_err());
    }
}
