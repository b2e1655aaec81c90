//! Policy files: per-container exec and network rules, validated and compiled before anything
//! touches the kernel.
//!
//! # Format (`docs/policy.md` is the user documentation)
//! ```yaml
//! name: shop                  # optional; default: the file name without extension
//! mode: enforce               # enforce (default) | audit: report what would be denied, deny nothing
//! selectors:                  # named container selectors; every key given must match
//!   frontend:
//!     name: "shop-frontend*"  # container name glob (or a list: any of them)
//!     image: "nginx:*"        # image reference glob (or a list)
//!     labels: {app: web}      # every label must match (values are globs)
//!     default: {egress: deny, ingress: allow, exec: allow}   # allow | deny | audit
//! network:                    # "SOURCE -> DESTINATION [PROTO[/PORTS]] allow|deny"
//!   - frontend -> backend tcp/8080 allow
//!   - backend -> 10.0.0.0/8 tcp/5432 allow
//!   - any -> frontend tcp/80,443 allow
//!   - frontend -> dns:*.stripe.com tcp/443 allow
//! exec:                       # "SUBJECT allow|deny name|path|sha256 VALUE"
//!   - "* deny name xmrig"
//!   - backend deny path /tmp/**
//!   - backend deny sha256 5f1c...e9
//! ```
//! An endpoint is a selector name, an address or CIDR, `any` (every address), or `dns:NAME`
//! (`dns:*.example.com` for a domain and everything below; destinations only), resolved from
//! the DNS answers the sensor saw. A network rule applies as an egress rule of its source when
//! the source is a selector and as an ingress rule of its destination when that is a selector.
//!
//! # Semantics
//! A container matched by several selectors gets all their rules, and for each default the
//! strictest (deny over audit over allow). For one connection, a matching `deny` wins over a
//! matching `allow`; when no rule matches, the default decides. Loopback is always allowed.
//! Containers no selector matches are not touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rampart_kernel::enforce::{Direction, NetPrefix, PortRule, Verdict};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::facts::ContainerFacts;

/// At most this many port rules can apply to one address range (the kernel's per-entry array).
pub const MAX_PORT_RULES_PER_PREFIX: usize = 24;

/// A policy file could not be used. Every variant names the file and, where the problem is in
/// one place, its line (and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: ReadError },
    /// YAML syntax, an unknown key, a value of the wrong type.
    #[error("{}{}: {message}", path.display(), at(*line, *column))]
    Syntax {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// A rule or selector that parses but makes no sense.
    #[error("{}{}: {what}: {message}", path.display(), at(*line, None))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        /// `network rule 3 "frontend -> backnd tcp/8080 allow"`, `selector "db"`.
        what: String,
        message: String,
    },
}

/// An I/O error, comparable (for tests) by its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// `enforce` or `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    /// Every denial is reported and none enforced.
    Audit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    name: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    selectors: BTreeMap<String, SelectorDef>,
    #[serde(default)]
    network: Vec<String>,
    #[serde(default)]
    exec: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectorDef {
    #[serde(default)]
    name: OneOrMany,
    #[serde(default)]
    image: OneOrMany,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    default: DefaultsDef,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsDef {
    egress: Option<VerdictDef>,
    ingress: Option<VerdictDef>,
    exec: Option<VerdictDef>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum VerdictDef {
    Allow,
    Deny,
    Audit,
}

impl From<VerdictDef> for Verdict {
    fn from(v: VerdictDef) -> Verdict {
        match v {
            VerdictDef::Allow => Verdict::Allow,
            VerdictDef::Deny => Verdict::Deny,
            VerdictDef::Audit => Verdict::Audit,
        }
    }
}

/// The defaults of a selector (allow when not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub egress: Verdict,
    pub ingress: Verdict,
    pub exec: Verdict,
}

/// A named container selector.
#[derive(Debug, Clone)]
pub struct Selector {
    pub name: String,
    names: Vec<glob::Pattern>,
    images: Vec<glob::Pattern>,
    labels: Vec<(String, glob::Pattern)>,
    pub defaults: Defaults,
}

impl Selector {
    /// Every criterion given matches `c` (a name or image list matches when any entry does).
    pub fn matches(&self, c: &ContainerFacts) -> bool {
        let name_ok = self.names.is_empty() || self.names.iter().any(|p| p.matches(&c.name));
        let image_ok = self.images.is_empty()
            || self
                .images
                .iter()
                .any(|p| p.matches(&c.image) || p.matches(image_repository(&c.image)));
        let labels_ok = self
            .labels
            .iter()
            .all(|(k, p)| c.labels.get(k).is_some_and(|v| p.matches(v)));
        name_ok && image_ok && labels_ok
    }
}

fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[slash..].rfind(':') {
        Some(c) => &no_digest[..slash + c],
        None => no_digest,
    }
}

/// One end of a network rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Containers of a selector (index into [`Policy::selectors`]).
    Selector(usize),
    /// An address or CIDR.
    Net(NetPrefix),
    /// Every address.
    Any,
    /// Addresses DNS answers gave for a name (`*.example.com`: the domain and below).
    Dns(String),
}

/// A parsed network rule.
#[derive(Debug, Clone)]
pub struct NetRule {
    /// 1-based position in `network:`; events report it.
    pub id: u16,
    pub text: String,
    pub line: Option<usize>,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// `None`: every protocol.
    pub proto: Option<u8>,
    /// Inclusive ranges; `(0, 65535)` when no ports were given.
    pub ports: Vec<(u16, u16)>,
    pub verdict: Verdict,
}

/// What an exec rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecMatch {
    Name { name: String, prefix: bool },
    Path { path: String, prefix: bool },
    Sha256([u8; 32]),
}

/// A parsed exec rule.
#[derive(Debug, Clone)]
pub struct ExecRule {
    /// 1-based position in `exec:`.
    pub id: u32,
    pub text: String,
    pub line: Option<usize>,
    /// `None`: every selected container (`*`).
    pub subject: Option<usize>,
    pub verdict: Verdict,
    pub matcher: ExecMatch,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub mode: Mode,
    /// Where it was read from.
    pub source: PathBuf,
    /// The file's text, kept so that `rampart policy show` prints what is applied.
    pub text: String,
    /// SHA-256 of the text, hex.
    pub sha256: String,
    pub selectors: Vec<Selector>,
    pub network: Vec<NetRule>,
    pub exec: Vec<ExecRule>,
}

impl Policy {
    /// Reads and validates the policy at `path`. Nothing is applied.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            path: path.to_path_buf(),
            source: ReadError(e.to_string()),
        })?;
        Policy::parse(path, &text)
    }

    /// Validates policy `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        let def: FileDef = if text.trim().is_empty() {
            FileDef {
                name: None,
                mode: Mode::Enforce,
                selectors: BTreeMap::new(),
                network: Vec::new(),
                exec: Vec::new(),
            }
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                let loc = e.location();
                PolicyError::Syntax {
                    path: path.to_path_buf(),
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    message: e.to_string(),
                }
            })?
        };
        let ctx = Ctx { path, text };
        let name = def.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "policy".into())
        });
        let mut selectors = Vec::new();
        for (sname, s) in def.selectors {
            selectors.push(ctx.selector(sname, s)?);
        }
        let index: BTreeMap<String, usize> = selectors
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let mut network = Vec::new();
        for (i, text) in def.network.iter().enumerate() {
            let id = u16::try_from(i + 1).map_err(|_| {
                ctx.invalid(
                    text,
                    format!("network rule {}", i + 1),
                    "more than 65535 rules",
                )
            })?;
            network.push(ctx.net_rule(id, text, &index)?);
        }
        let mut exec = Vec::new();
        for (i, text) in def.exec.iter().enumerate() {
            exec.push(ctx.exec_rule((i + 1) as u32, text, &index)?);
        }
        let policy = Policy {
            name,
            mode: def.mode,
            source: path.to_path_buf(),
            text: text.to_string(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            selectors,
            network,
            exec,
        };
        // Catch the per-address limit now, for the worst case of every selector's rules
        // together (containers of several selectors), with selector endpoints as one address.
        policy.check_rule_density(&ctx)?;
        Ok(policy)
    }

    /// The indices of the selectors that match `c`.
    pub fn selectors_of(&self, c: &ContainerFacts) -> Vec<usize> {
        self.selectors
            .iter()
            .enumerate()
            .filter(|(_, s)| s.matches(c))
            .map(|(i, _)| i)
            .collect()
    }

    fn check_rule_density(&self, ctx: &Ctx<'_>) -> Result<(), PolicyError> {
        for dir in [Direction::Egress, Direction::Ingress] {
            for (si, _) in self.selectors.iter().enumerate() {
                let sel = BTreeSet::from([si]);
                let mut entries: Vec<(NetPrefix, PortRule, usize)> = Vec::new();
                for (ri, r) in self.network.iter().enumerate() {
                    let (me, peer) = match dir {
                        Direction::Egress => (&r.src, &r.dst),
                        Direction::Ingress => (&r.dst, &r.src),
                    };
                    if !matches!(me, Endpoint::Selector(s) if sel.contains(s)) {
                        continue;
                    }
                    let peers = match peer {
                        // One placeholder address per selector, distinct from real ones.
                        Endpoint::Selector(s) => vec![NetPrefix {
                            addr: IpAddr::V6(std::net::Ipv6Addr::new(
                                0xfd00, 0, 0, 0, 0, 0, 0, *s as u16,
                            )),
                            len: 128,
                        }],
                        Endpoint::Dns(_) => vec![NetPrefix {
                            addr: IpAddr::V6(std::net::Ipv6Addr::new(
                                0xfd00, 1, 0, 0, 0, 0, 0, ri as u16,
                            )),
                            len: 128,
                        }],
                        Endpoint::Net(p) => vec![*p],
                        Endpoint::Any => any_prefixes().to_vec(),
                    };
                    for p in peers {
                        for pr in r.port_rules() {
                            entries.push((p, pr, ri));
                        }
                    }
                }
                if let Err((prefix, rules)) = merge(&entries) {
                    let r = &self.network[rules[0]];
                    return Err(ctx.invalid(
                        &r.text,
                        format!("selector \"{}\"", self.selectors[si].name),
                        &format!(
                            "{} port rules apply to {prefix} ({}); at most {MAX_PORT_RULES_PER_PREFIX} can: merge ports into ranges or split the selector",
                            rules.len(),
                            rules.iter().map(|i| format!("rule {}", i + 1)).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl NetRule {
    /// The kernel form of this rule's protocol, ports and verdict.
    pub fn port_rules(&self) -> Vec<PortRule> {
        self.ports
            .iter()
            .map(|&ports| PortRule {
                ports,
                proto: self.proto,
                verdict: self.verdict,
                rule_id: self.id,
            })
            .collect()
    }
}

fn any_prefixes() -> [NetPrefix; 2] {
    [
        NetPrefix {
            addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            len: 0,
        },
        NetPrefix {
            addr: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            len: 0,
        },
    ]
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    /// The line of the first occurrence of `needle` in the file (1-based).
    fn line_of(&self, needle: &str) -> Option<usize> {
        let idx = self.text.find(needle)?;
        Some(self.text[..idx].matches('\n').count() + 1)
    }

    fn invalid(&self, needle: &str, what: String, message: &str) -> PolicyError {
        PolicyError::Invalid {
            path: self.path.to_path_buf(),
            line: self.line_of(needle),
            what,
            message: message.to_string(),
        }
    }

    fn selector(&self, name: String, s: SelectorDef) -> Result<Selector, PolicyError> {
        let what = format!("selector \"{name}\"");
        let needle = format!("{name}:");
        if name.is_empty()
            || name == "any"
            || name == "*"
            || name.starts_with("dns:")
            || name.contains(char::is_whitespace)
            || name.parse::<IpAddr>().is_ok()
            || name.contains('/')
        {
            return Err(self.invalid(
                &needle,
                what,
                "a selector name must be one word and not `any`, `*`, an address or `dns:...`",
            ));
        }
        let pattern = |p: &str| {
            glob::Pattern::new(p).map_err(|e| {
                self.invalid(&needle, what.clone(), &format!("bad pattern {p:?}: {e}"))
            })
        };
        let names = s
            .name
            .into_vec()
            .iter()
            .map(|p| pattern(p.trim_start_matches('/')))
            .collect::<Result<Vec<_>, _>>()?;
        let images = s
            .image
            .into_vec()
            .iter()
            .map(|p| pattern(p))
            .collect::<Result<Vec<_>, _>>()?;
        let labels = s
            .labels
            .iter()
            .map(|(k, v)| Ok((k.clone(), pattern(v)?)))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        if names.is_empty() && images.is_empty() && labels.is_empty() {
            return Err(self.invalid(
                &needle,
                what,
                "matches every container: give `name`, `image` or `labels`",
            ));
        }
        Ok(Selector {
            name,
            names,
            images,
            labels,
            defaults: Defaults {
                egress: s.default.egress.map_or(Verdict::Allow, Verdict::from),
                ingress: s.default.ingress.map_or(Verdict::Allow, Verdict::from),
                exec: s.default.exec.map_or(Verdict::Allow, Verdict::from),
            },
        })
    }

    fn net_rule(
        &self,
        id: u16,
        text: &str,
        index: &BTreeMap<String, usize>,
    ) -> Result<NetRule, PolicyError> {
        let what = format!("network rule {id} \"{text}\"");
        let bad = |m: &str| self.invalid(text, what.clone(), m);
        let toks: Vec<&str> = text.split_whitespace().collect();
        let (src, dst, rest) = match toks.as_slice() {
            [src, "->", dst, rest @ ..] => (*src, *dst, rest),
            _ => {
                return Err(bad(
                    "expected `SOURCE -> DESTINATION [PROTO[/PORTS]] allow|deny`",
                ))
            }
        };
        let (proto_tok, action) = match rest {
            [action] => (None, *action),
            [proto, action] => (Some(*proto), *action),
            _ => {
                return Err(bad(
                    "expected `[PROTO[/PORTS]] allow|deny` after the destination",
                ))
            }
        };
        let verdict = match action {
            "allow" => Verdict::Allow,
            "deny" => Verdict::Deny,
            other => {
                return Err(bad(&format!(
                    "the action must be `allow` or `deny`, not `{other}`"
                )))
            }
        };
        let endpoint = |t: &str, is_dst: bool| -> Result<Endpoint, PolicyError> {
            if let Some(&i) = index.get(t) {
                return Ok(Endpoint::Selector(i));
            }
            if t == "any" {
                return Ok(Endpoint::Any);
            }
            if let Some(name) = t.strip_prefix("dns:") {
                if !is_dst {
                    return Err(bad("`dns:` names can only be destinations (the sensor learns the addresses a container looked up)"));
                }
                let bare = name.strip_prefix("*.").unwrap_or(name);
                if bare.is_empty() || bare.contains('*') || !bare.contains('.') {
                    return Err(bad(&format!(
                        "bad DNS name `{name}` (a name, or `*.domain` for a domain and below)"
                    )));
                }
                return Ok(Endpoint::Dns(
                    name.trim_end_matches('.').to_ascii_lowercase(),
                ));
            }
            if let Some(p) = parse_prefix(t) {
                return Ok(Endpoint::Net(p));
            }
            let known: Vec<&str> = index.keys().map(String::as_str).collect();
            Err(bad(&format!(
                "`{t}` is not a selector ({}), an address, a CIDR, `any` or `dns:NAME`",
                if known.is_empty() {
                    "none defined".to_string()
                } else {
                    known.join(", ")
                }
            )))
        };
        let src = endpoint(src, false)?;
        let dst = endpoint(dst, true)?;
        if !matches!(src, Endpoint::Selector(_)) && !matches!(dst, Endpoint::Selector(_)) {
            return Err(bad(
                "one side must be a selector: a rule applies to the containers it selects",
            ));
        }
        let (proto, ports) = match proto_tok {
            None | Some("any") => (None, vec![(0, 65535)]),
            Some(p) => parse_proto_ports(p).map_err(|m| bad(&m))?,
        };
        Ok(NetRule {
            id,
            text: text.to_string(),
            line: self.line_of(text),
            src,
            dst,
            proto,
            ports,
            verdict,
        })
    }

    fn exec_rule(
        &self,
        id: u32,
        text: &str,
        index: &BTreeMap<String, usize>,
    ) -> Result<ExecRule, PolicyError> {
        let what = format!("exec rule {id} \"{text}\"");
        let bad = |m: &str| self.invalid(text, what.clone(), m);
        let toks: Vec<&str> = text.split_whitespace().collect();
        let [subject, action, kind, value] = toks.as_slice() else {
            return Err(bad("expected `SUBJECT allow|deny name|path|sha256 VALUE`"));
        };
        let subject = if *subject == "*" {
            None
        } else {
            Some(*index.get(*subject).ok_or_else(|| {
                bad(&format!(
                    "`{subject}` is not a selector ({}) or `*`",
                    index.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?)
        };
        let verdict = match *action {
            "allow" => Verdict::Allow,
            "deny" => Verdict::Deny,
            other => {
                return Err(bad(&format!(
                    "the action must be `allow` or `deny`, not `{other}`"
                )))
            }
        };
        let value = value.trim_matches('"');
        let matcher = match *kind {
            "name" => {
                let (name, prefix) = split_prefix(value);
                if name.is_empty() && !prefix || name.contains(['/', '*', '?', '[']) {
                    return Err(bad("a name is a file name, optionally ending in `*`"));
                }
                if name.len() > 57 {
                    return Err(bad(
                        "names longer than 57 bytes cannot be matched in the kernel",
                    ));
                }
                ExecMatch::Name {
                    name: name.to_string(),
                    prefix,
                }
            }
            "path" => {
                let (path, prefix) = split_prefix(value);
                if !path.starts_with('/') || path.contains(['*', '?', '[']) {
                    return Err(bad(
                        "a path is absolute, optionally ending in `*` or `/**` (everything below)",
                    ));
                }
                if path.len() > 250 {
                    return Err(bad(
                        "paths longer than 250 bytes cannot be matched in the kernel",
                    ));
                }
                ExecMatch::Path {
                    path: path.to_string(),
                    prefix,
                }
            }
            "sha256" => {
                let mut h = [0u8; 32];
                hex::decode_to_slice(value.to_ascii_lowercase(), &mut h)
                    .map_err(|_| bad("a sha256 is 64 hex digits"))?;
                ExecMatch::Sha256(h)
            }
            other => {
                return Err(bad(&format!(
                    "the kind must be `name`, `path` or `sha256`, not `{other}`"
                )))
            }
        };
        Ok(ExecRule {
            id,
            text: text.to_string(),
            line: self.line_of(text),
            subject,
            verdict,
            matcher,
        })
    }
}

/// `xmr*` -> ("xmr", true); `/tmp/**` -> ("/tmp/", true); `/usr/bin/nc` -> (.., false).
fn split_prefix(v: &str) -> (&str, bool) {
    if let Some(p) = v.strip_suffix("**") {
        (p, true)
    } else if let Some(p) = v.strip_suffix('*') {
        (p, true)
    } else {
        (v, false)
    }
}

/// An address (`10.0.0.1`, `fd00::1`) or CIDR (`10.0.0.0/8`); host bits must be zero.
pub fn parse_prefix(t: &str) -> Option<NetPrefix> {
    let (addr, len) = match t.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a: IpAddr = t.parse().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return None;
    }
    Some(NetPrefix { addr, len })
}

/// A protocol (`None`: any) and its port ranges.
type ProtoPorts = (Option<u8>, Vec<(u16, u16)>);

fn parse_proto_ports(t: &str) -> Result<ProtoPorts, String> {
    let (proto, ports) = match t.split_once('/') {
        Some((p, ports)) => (p, Some(ports)),
        None => (t, None),
    };
    let proto = match proto {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        other => {
            return Err(format!(
                "unknown protocol `{other}` (tcp, udp, icmp or any)"
            ))
        }
    };
    let Some(ports) = ports else {
        return Ok((Some(proto), vec![(0, 65535)]));
    };
    if proto == 1 {
        return Err("icmp has no ports".into());
    }
    let mut out = Vec::new();
    for part in ports.split(',') {
        let r = match part.split_once('-') {
            Some((a, b)) => (parse_port(a)?, parse_port(b)?),
            None => {
                let p = parse_port(part)?;
                (p, p)
            }
        };
        if r.0 > r.1 {
            return Err(format!("port range `{part}` runs backwards"));
        }
        out.push(r);
    }
    Ok((Some(proto), out))
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("`{s}` is not a port (0-65535)"))
}

/// Merges (prefix, rule) pairs so that each prefix carries the rules of every prefix that
/// contains it (the kernel uses the longest match only). On overflow returns the prefix and
/// the indices of the rules (third tuple field) that apply to it.
#[allow(clippy::type_complexity, reason = "one private helper")]
fn merge(
    entries: &[(NetPrefix, PortRule, usize)],
) -> Result<BTreeMap<NetPrefix, Vec<PortRule>>, (NetPrefix, Vec<usize>)> {
    let prefixes: BTreeSet<NetPrefix> = entries.iter().map(|e| e.0).collect();
    let mut out = BTreeMap::new();
    for p in prefixes {
        let mut rules: Vec<PortRule> = Vec::new();
        let mut from: BTreeSet<usize> = BTreeSet::new();
        for (q, r, ri) in entries {
            if contains(q, &p) && !rules.contains(r) {
                rules.push(*r);
                from.insert(*ri);
            }
        }
        if rules.len() > MAX_PORT_RULES_PER_PREFIX {
            return Err((p, from.into_iter().collect()));
        }
        out.insert(p, rules);
    }
    Ok(out)
}

/// `outer` contains `inner` (same family, shorter or equal prefix, same leading bits).
pub fn contains(outer: &NetPrefix, inner: &NetPrefix) -> bool {
    if outer.len > inner.len {
        return false;
    }
    match (outer.addr, inner.addr) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = if outer.len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(outer.len))
            };
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = if outer.len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(outer.len))
            };
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

fn host_prefix(ip: IpAddr) -> NetPrefix {
    NetPrefix {
        addr: ip,
        len: if ip.is_ipv4() { 32 } else { 128 },
    }
}

/// Names the sensor saw resolved, with the addresses they resolved to.
pub trait DnsView {
    /// The addresses seen for names matching `pattern` (`name` or `*.domain`).
    fn addresses(&self, pattern: &str) -> Vec<IpAddr>;
}

impl DnsView for () {
    fn addresses(&self, _: &str) -> Vec<IpAddr> {
        Vec::new()
    }
}

/// `name` matches `pattern` (`example.com`, or `*.example.com` for it and every name below).
pub fn dns_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(domain) => name == domain || name.ends_with(&format!(".{domain}")),
        None => name == pattern,
    }
}

/// What one group of containers (those matched by the same set of selectors) gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    /// Indices into [`Policy::selectors`], sorted.
    pub selectors: Vec<usize>,
    /// The containers (ids) in the group.
    pub containers: Vec<String>,
    pub egress_default: Verdict,
    pub ingress_default: Verdict,
    pub exec_default: Verdict,
    /// Egress rules or a non-allow default: outbound traffic is checked.
    pub egress: bool,
    pub ingress: bool,
    pub exec: bool,
    /// Merged port rules per direction and address prefix.
    pub net: BTreeMap<(Direction, NetPrefix), Vec<PortRule>>,
    /// Exec rules that apply (indices into [`Policy::exec`]).
    pub exec_rules: Vec<usize>,
}

impl GroupPlan {
    pub fn has_names(&self, p: &Policy) -> bool {
        self.exec_rules
            .iter()
            .any(|&i| matches!(p.exec[i].matcher, ExecMatch::Name { .. }))
    }

    pub fn has_paths(&self, p: &Policy) -> bool {
        self.exec_rules
            .iter()
            .any(|&i| matches!(p.exec[i].matcher, ExecMatch::Path { .. }))
    }

    pub fn has_hashes(&self, p: &Policy) -> bool {
        self.exec_rules
            .iter()
            .any(|&i| matches!(p.exec[i].matcher, ExecMatch::Sha256(_)))
    }

    /// The hash rules that apply, by hash.
    pub fn hashes(&self, p: &Policy) -> BTreeMap<[u8; 32], (Verdict, u32)> {
        let mut out: BTreeMap<[u8; 32], (Verdict, u32)> = BTreeMap::new();
        for &i in &self.exec_rules {
            if let ExecMatch::Sha256(h) = p.exec[i].matcher {
                let e = out.entry(h).or_insert((p.exec[i].verdict, p.exec[i].id));
                if p.exec[i].verdict > e.0 {
                    *e = (p.exec[i].verdict, p.exec[i].id);
                }
            }
        }
        out
    }

    /// How the kernel decides traffic `dir` with `peer`:`port` over `proto`, not counting
    /// loopback and isolation: the verdict and the rule that gave it (`None`: the default).
    pub fn decide(
        &self,
        dir: Direction,
        peer: IpAddr,
        port: u16,
        proto: u8,
    ) -> (Verdict, Option<u16>) {
        let checked = match dir {
            Direction::Egress => self.egress,
            Direction::Ingress => self.ingress,
        };
        if !checked {
            return (Verdict::Allow, None);
        }
        let host = host_prefix(peer);
        let best = self
            .net
            .iter()
            .filter(|((d, p), _)| *d == dir && contains(p, &host))
            .max_by_key(|((_, p), _)| p.len);
        let mut verdict: Option<(Verdict, u16)> = None;
        if let Some((_, rules)) = best {
            for r in rules {
                if r.proto.is_some_and(|p| p != proto) || port < r.ports.0 || port > r.ports.1 {
                    continue;
                }
                if verdict.is_none_or(|(v, _)| r.verdict > v) {
                    verdict = Some((r.verdict, r.rule_id));
                }
            }
        }
        match verdict {
            Some((v, id)) => (v, Some(id)),
            None => (
                match dir {
                    Direction::Egress => self.egress_default,
                    Direction::Ingress => self.ingress_default,
                },
                None,
            ),
        }
    }
}

/// What applying a policy to a set of containers means: one group per distinct set of
/// matching selectors. Containers no selector matches are in no group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub groups: Vec<GroupPlan>,
}

impl Plan {
    /// The group of container `id`, if a selector matches it.
    pub fn group_of(&self, id: &str) -> Option<&GroupPlan> {
        self.groups
            .iter()
            .find(|g| g.containers.iter().any(|c| c == id))
    }
}

impl Policy {
    /// Plans the policy for `containers` (with their addresses) and the DNS answers seen.
    /// Fails only when an address range would carry more port rules than the kernel holds.
    pub fn plan(
        &self,
        containers: &[ContainerFacts],
        dns: &dyn DnsView,
    ) -> Result<Plan, PolicyError> {
        let mut by_set: BTreeMap<Vec<usize>, Vec<String>> = BTreeMap::new();
        for c in containers {
            let set = self.selectors_of(c);
            if !set.is_empty() {
                by_set.entry(set).or_default().push(c.id.clone());
            }
        }
        let ips_of = |sel: usize| -> Vec<NetPrefix> {
            containers
                .iter()
                .filter(|c| self.selectors[sel].matches(c))
                .flat_map(|c| c.ips.iter().map(|ip| host_prefix(*ip)))
                .collect()
        };
        let mut groups = Vec::new();
        for (set, ids) in by_set {
            let strictest = |f: fn(&Defaults) -> Verdict| {
                set.iter()
                    .map(|&i| f(&self.selectors[i].defaults))
                    .max()
                    .unwrap_or(Verdict::Allow)
            };
            let mut g = GroupPlan {
                egress_default: strictest(|d| d.egress),
                ingress_default: strictest(|d| d.ingress),
                exec_default: strictest(|d| d.exec),
                selectors: set.clone(),
                containers: ids,
                egress: false,
                ingress: false,
                exec: false,
                net: BTreeMap::new(),
                exec_rules: Vec::new(),
            };
            for dir in [Direction::Egress, Direction::Ingress] {
                let mut entries = Vec::new();
                for (ri, r) in self.network.iter().enumerate() {
                    let (me, peer) = match dir {
                        Direction::Egress => (&r.src, &r.dst),
                        Direction::Ingress => (&r.dst, &r.src),
                    };
                    if !matches!(me, Endpoint::Selector(s) if set.contains(s)) {
                        continue;
                    }
                    match dir {
                        Direction::Egress => g.egress = true,
                        Direction::Ingress => g.ingress = true,
                    }
                    let peers: Vec<NetPrefix> = match peer {
                        Endpoint::Selector(s) => ips_of(*s),
                        Endpoint::Net(p) => vec![*p],
                        Endpoint::Any => any_prefixes().to_vec(),
                        Endpoint::Dns(pat) => {
                            dns.addresses(pat).into_iter().map(host_prefix).collect()
                        }
                    };
                    for p in peers {
                        for pr in r.port_rules() {
                            entries.push((p, pr, ri));
                        }
                    }
                }
                let merged = merge(&entries).map_err(|(prefix, rules)| {
                    let r = &self.network[rules[0]];
                    PolicyError::Invalid {
                        path: self.source.clone(),
                        line: r.line,
                        what: format!("{} rules", dir.as_str()),
                        message: format!(
                            "{} port rules apply to {prefix} ({}); at most {MAX_PORT_RULES_PER_PREFIX} can",
                            rules.len(),
                            rules.iter().map(|i| format!("rule {}", i + 1)).collect::<Vec<_>>().join(", ")
                        ),
                    }
                })?;
                for (p, rules) in merged {
                    g.net.insert((dir, p), rules);
                }
            }
            g.egress |= g.egress_default != Verdict::Allow;
            g.ingress |= g.ingress_default != Verdict::Allow;
            g.exec_rules = self
                .exec
                .iter()
                .enumerate()
                .filter(|(_, r)| r.subject.is_none_or(|s| set.contains(&s)))
                .map(|(i, _)| i)
                .collect();
            g.exec = !g.exec_rules.is_empty() || g.exec_default != Verdict::Allow;
            groups.push(g);
        }
        Ok(Plan { groups })
    }

    /// The text of network rule `id` (1-based), or `default`.
    pub fn net_rule_text(&self, id: u32) -> String {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.network.get(i))
            .map_or_else(|| "default".to_string(), |r| r.text.clone())
    }

    /// The text of exec rule `id` (1-based), or `default`.
    pub fn exec_rule_text(&self, id: u32) -> String {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.exec.get(i))
            .map_or_else(|| "default".to_string(), |r| r.text.clone())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn facts(id: &str, name: &str, ip: &str) -> ContainerFacts {
        ContainerFacts {
            id: id.into(),
            name: name.into(),
            image: "rampart-test/busybox:1".into(),
            ips: vec![ip.parse().unwrap()],
            ..ContainerFacts::default()
        }
    }

    const SHOP: &str = "\
name: shop
selectors:
  frontend:
    name: front*
    default: {egress: deny}
  backend:
    labels: {app: backend}
    default: {ingress: deny, exec: allow}
network:
  - frontend -> backend tcp/8080 allow
  - any -> backend tcp/9000-9010 allow
  - frontend -> 10.0.0.0/8 udp/53 allow
  - frontend -> 10.1.0.0/16 tcp deny
exec:
  - \"* deny name xmr*\"
  - backend deny path /tmp/**
";

    #[test]
    fn plans_groups_rules_and_defaults() {
        let p = Policy::parse(Path::new("shop.yaml"), SHOP).unwrap();
        assert_eq!(p.name, "shop");
        let mut back = facts("b", "db1", "172.20.0.3");
        back.labels.insert("app".into(), "backend".into());
        let front = facts("f", "frontend", "172.20.0.2");
        let other = facts("o", "other", "172.20.0.4");
        let plan = p.plan(&[back, front, other], &()).unwrap();
        assert_eq!(plan.groups.len(), 2);
        assert!(
            plan.group_of("o").is_none(),
            "unselected containers get nothing"
        );
        let f = plan.group_of("f").unwrap();
        let b = plan.group_of("b").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            f.decide(Direction::Egress, ip("172.20.0.3"), 8080, 6),
            (Verdict::Allow, Some(1))
        );
        assert_eq!(
            f.decide(Direction::Egress, ip("172.20.0.3"), 22, 6),
            (Verdict::Deny, None)
        );
        assert_eq!(
            f.decide(Direction::Egress, ip("172.20.0.4"), 8080, 6),
            (Verdict::Deny, None)
        );
        assert_eq!(
            f.decide(Direction::Egress, ip("10.9.9.9"), 53, 17),
            (Verdict::Allow, Some(3))
        );
        // The /16 deny and the /8 allow both apply inside the /16; deny wins.
        assert_eq!(
            f.decide(Direction::Ingress, ip("1.1.1.1"), 80, 6),
            (Verdict::Allow, None)
        );
        assert_eq!(
            f.decide(Direction::Egress, ip("10.1.2.3"), 53, 17),
            (Verdict::Allow, Some(3))
        );
        assert_eq!(
            f.decide(Direction::Egress, ip("10.1.2.3"), 443, 6),
            (Verdict::Deny, Some(4))
        );
        assert_eq!(
            b.decide(Direction::Ingress, ip("172.20.0.2"), 8080, 6),
            (Verdict::Allow, Some(1))
        );
        assert_eq!(
            b.decide(Direction::Ingress, ip("172.20.0.4"), 8080, 6),
            (Verdict::Deny, None)
        );
        assert_eq!(
            b.decide(Direction::Ingress, ip("8.8.8.8"), 9005, 6),
            (Verdict::Allow, Some(2))
        );
        assert_eq!(
            b.decide(Direction::Egress, ip("8.8.8.8"), 9005, 6),
            (Verdict::Allow, None)
        );
        assert!(b.exec && f.exec, "`*` exec rules select every group");
        assert!(b.has_paths(&p) && !f.has_paths(&p));
    }

    #[test]
    fn a_container_in_two_selectors_gets_both_and_the_strictest_default() {
        let text = "\
selectors:
  web: {name: web, default: {egress: audit}}
  pci: {labels: {pci: \"true\"}, default: {egress: deny}}
network:
  - web -> 10.0.0.1 tcp/443 allow
  - pci -> 10.0.0.2 tcp/443 allow
";
        let p = Policy::parse(Path::new("two.yaml"), text).unwrap();
        let mut c = facts("w", "web", "172.20.0.9");
        c.labels.insert("pci".into(), "true".into());
        let plan = p.plan(&[c], &()).unwrap();
        let g = plan.group_of("w").unwrap();
        assert_eq!(g.egress_default, Verdict::Deny);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            g.decide(Direction::Egress, ip("10.0.0.1"), 443, 6).0,
            Verdict::Allow
        );
        assert_eq!(
            g.decide(Direction::Egress, ip("10.0.0.2"), 443, 6).0,
            Verdict::Allow
        );
        assert_eq!(
            g.decide(Direction::Egress, ip("10.0.0.3"), 443, 6).0,
            Verdict::Deny
        );
    }

    #[test]
    fn dns_rules_use_the_addresses_seen() {
        struct Seen;
        impl DnsView for Seen {
            fn addresses(&self, pattern: &str) -> Vec<IpAddr> {
                if dns_matches(pattern, "api.stripe.com") {
                    vec!["54.1.2.3".parse().unwrap()]
                } else {
                    vec![]
                }
            }
        }
        let text = "\
selectors:
  app: {name: app, default: {egress: deny}}
network:
  - app -> dns:*.stripe.com tcp/443 allow
";
        let p = Policy::parse(Path::new("d.yaml"), text).unwrap();
        let plan = p.plan(&[facts("a", "app", "172.20.0.5")], &Seen).unwrap();
        let g = plan.group_of("a").unwrap();
        assert_eq!(
            g.decide(Direction::Egress, "54.1.2.3".parse().unwrap(), 443, 6),
            (Verdict::Allow, Some(1))
        );
        assert!(dns_matches("*.stripe.com", "stripe.com."));
        assert!(!dns_matches("*.stripe.com", "evilstripe.com"));
    }

    fn err(text: &str) -> String {
        Policy::parse(Path::new("p.yaml"), text)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn errors_name_the_file_line_and_the_offending_token() {
        let e = err("selectors:\n  a: {name: a}\nnetwork:\n  - a -> backnd tcp/8080 allow\n");
        assert!(e.starts_with("p.yaml:4: network rule 1"), "{e}");
        assert!(e.contains("`backnd` is not a selector (a)"), "{e}");
        let e = err("selectors:\n  a: {name: a}\nnetwork:\n  - a -> 10.0.0.1 tcp/80 permit\n");
        assert!(e.contains("p.yaml:4") && e.contains("not `permit`"), "{e}");
        let e = err("selectors:\n  a: {name: a}\nnetwork:\n  - a -> 10.0.0.1 sctp/80 allow\n");
        assert!(e.contains("unknown protocol `sctp`"), "{e}");
        let e = err("selectors:\n  a: {name: a}\nnetwork:\n  - a -> 10.0.0.1 tcp/90-80 allow\n");
        assert!(e.contains("runs backwards"), "{e}");
        let e = err("selectors:\n  a: {name: a}\nnetwork:\n  - 10.0.0.1 -> any tcp allow\n");
        assert!(e.contains("one side must be a selector"), "{e}");
        let e = err("selectors:\n  a: {name: a}\nexec:\n  - a deny sha256 abc\n");
        assert!(e.contains("p.yaml:4") && e.contains("64 hex digits"), "{e}");
        let e = err("selectors:\n  a: {name: a}\nexec:\n  - a deny path /tmp/*/x\n");
        assert!(e.contains("absolute"), "{e}");
        let e = err("selectors:\n  a: {nmae: a}\n");
        assert!(e.starts_with("p.yaml:2:"), "{e}");
        assert!(e.contains("unknown field `nmae`"), "{e}");
        let e = err("selectors:\n  a: {}\n");
        assert!(e.contains("matches every container"), "{e}");
        let e = err("mode: strict\n");
        assert!(e.starts_with("p.yaml:1:"), "{e}");
    }

    #[test]
    fn too_many_port_rules_for_one_address_is_refused_at_parse_time() {
        let mut text = String::from("selectors:\n  a: {name: a}\nnetwork:\n");
        for port in 0..30 {
            text.push_str(&format!(
                "  - a -> 10.0.0.1 tcp/{} allow\n",
                1000 + port * 2
            ));
        }
        let e = err(&text);
        assert!(e.contains("30 port rules apply to 10.0.0.1/32"), "{e}");
    }
}
