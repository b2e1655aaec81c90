//! Identity policy between hosts: which workload may reach which service on another host.
//!
//! # Grammar
//! One rule a line, in the same `SOURCE -> DESTINATION ... allow|deny` shape as a policy file's
//! `network:` rules (`docs/policy.md`):
//! ```text
//! frontend@vps1 -> backend@vps2:5432          # allow is the default verdict
//! frontend@vps1 -> backend@vps2:5432 allow
//! *@vps1 -> metrics@vps3:9100 allow           # every workload of vps1
//! batch@* -> backend@vps2:* deny              # any host, any port
//! ```
//! `NAME@HOST`, each part a workload / host name or `*`; the destination takes `:PORT` or `:*`
//! (omitted means every port). Rules compare exact names, no other globbing.
//!
//! # Semantics
//! For one connection a matching `deny` wins over a matching `allow`; when no rule matches, the
//! connection is denied (between hosts everything not allowed is denied). Every denial is
//! reported as `policy.net_denied` naming both identities.

use std::fmt;

use crate::identity::SpiffeId;
use crate::MeshError;

/// One side of a rule: `name@host`, either part `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub workload: Option<String>,
    pub host: Option<String>,
}

impl Pattern {
    fn matches(&self, workload: &str, host: &str) -> bool {
        self.workload.as_deref().is_none_or(|w| w == workload)
            && self.host.as_deref().is_none_or(|h| h == host)
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRule {
    /// As written (trimmed).
    pub text: String,
    pub src: Pattern,
    pub dst: Pattern,
    /// `None`: every port.
    pub port: Option<u16>,
    pub allow: bool,
}

/// The rules, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshPolicy {
    pub rules: Vec<EdgeRule>,
}

/// The outcome for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    /// The deciding rule's text, or `default` (no rule matched: denied).
    pub rule: String,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.allow { "allow" } else { "deny" };
        write!(f, "{v} ({})", self.rule)
    }
}

fn part(s: &str, what: &str) -> Result<Option<String>, String> {
    if s == "*" {
        return Ok(None);
    }
    let ok = !s.is_empty()
        && s.len() <= crate::identity::MAX_SEGMENT
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(Some(s.to_string()))
    } else {
        Err(format!(
            "{what} {s:?}: want a name (letters, digits, '.', '-', '_') or '*'"
        ))
    }
}

fn pattern(s: &str, side: &str) -> Result<Pattern, String> {
    let (w, h) = s
        .split_once('@')
        .ok_or_else(|| format!("{side} {s:?}: want NAME@HOST"))?;
    Ok(Pattern {
        workload: part(w, &format!("{side} workload"))?,
        host: part(h, &format!("{side} host"))?,
    })
}

impl EdgeRule {
    /// Parses one rule; the error says what is wrong with it.
    pub fn parse(line: &str) -> Result<EdgeRule, String> {
        let text = line.trim().to_string();
        let words: Vec<&str> = text.split_whitespace().collect();
        let (src, dst, verdict) = match words.as_slice() {
            [s, "->", d] => (*s, *d, "allow"),
            [s, "->", d, v] => (*s, *d, *v),
            _ => return Err("want \"NAME@HOST -> NAME@HOST[:PORT] [allow|deny]\"".into()),
        };
        let allow = match verdict {
            "allow" => true,
            "deny" => false,
            v => return Err(format!("verdict {v:?}: want allow or deny")),
        };
        let (dst, port) = match dst.rsplit_once(':') {
            Some((d, "*")) => (d, None),
            Some((d, p)) => {
                let n: u16 = p
                    .parse()
                    .ok()
                    .filter(|n| *n != 0)
                    .ok_or_else(|| format!("port {p:?}: want 1-65535 or *"))?;
                (d, Some(n))
            }
            None => (dst, None),
        };
        Ok(EdgeRule {
            src: pattern(src, "source")?,
            dst: pattern(dst, "destination")?,
            port,
            allow,
            text,
        })
    }
}

impl MeshPolicy {
    /// Parses rules; `place` names where they come from (file and key) in errors, which also
    /// give the rule's number and text.
    pub fn parse(place: &str, lines: &[String]) -> Result<MeshPolicy, MeshError> {
        let mut rules = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            let r = EdgeRule::parse(l).map_err(|message| MeshError::Policy {
                place: place.to_string(),
                rule: format!("rule {} {:?}", i + 1, l.trim()),
                message,
            })?;
            rules.push(r);
        }
        Ok(MeshPolicy { rules })
    }

    /// May `src` open a connection to the service `service` on host `host`, port `port`?
    pub fn decide(&self, src: &SpiffeId, service: &str, host: &str, port: u16) -> Decision {
        let Some(src_w) = src.workload.as_deref() else {
            return Decision {
                allow: false,
                rule: "no workload in the client identity".into(),
            };
        };
        let mut allowed = None;
        for r in &self.rules {
            if r.src.matches(src_w, &src.host)
                && r.dst.matches(service, host)
                && r.port.is_none_or(|p| p == port)
            {
                if !r.allow {
                    return Decision {
                        allow: false,
                        rule: r.text.clone(),
                    };
                }
                allowed.get_or_insert_with(|| r.text.clone());
            }
        }
        match allowed {
            Some(rule) => Decision { allow: true, rule },
            None => Decision {
                allow: false,
                rule: "default".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lines: &[&str]) -> MeshPolicy {
        MeshPolicy::parse(
            "test",
            &lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .expect("parse")
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).expect("id")
    }

    #[test]
    fn only_the_declared_edge_is_allowed() {
        let pol = p(&["frontend@vps1 -> backend@vps2:5432"]);
        let fe = id("spiffe://acme/vps1/frontend");
        assert!(pol.decide(&fe, "backend", "vps2", 5432).allow);
        assert!(!pol.decide(&fe, "backend", "vps2", 5433).allow);
        assert!(!pol.decide(&fe, "backend", "vps3", 5432).allow);
        assert!(
            !pol.decide(&id("spiffe://acme/vps3/frontend"), "backend", "vps2", 5432)
                .allow
        );
        assert!(
            !pol.decide(&id("spiffe://acme/vps1/rogue"), "backend", "vps2", 5432)
                .allow
        );
        assert!(
            !pol.decide(&id("spiffe://acme/vps1"), "backend", "vps2", 5432)
                .allow
        );
        assert_eq!(pol.decide(&fe, "backend", "vps2", 1).rule, "default");
    }

    #[test]
    fn deny_wins_and_wildcards_match_any() {
        let pol = p(&[
            "*@vps1 -> backend@vps2:*",
            "batch@* -> backend@vps2:5432 deny",
        ]);
        assert!(
            pol.decide(&id("spiffe://acme/vps1/x"), "backend", "vps2", 1)
                .allow
        );
        let d = pol.decide(&id("spiffe://acme/vps1/batch"), "backend", "vps2", 5432);
        assert!(!d.allow);
        assert_eq!(d.rule, "batch@* -> backend@vps2:5432 deny");
        assert!(
            pol.decide(&id("spiffe://acme/vps1/batch"), "backend", "vps2", 80)
                .allow
        );
    }

    #[test]
    fn bad_rules_are_named() {
        for (bad, want) in [
            ("frontend -> backend@vps2:5432", "NAME@HOST"),
            ("frontend@vps1 => backend@vps2", "want"),
            ("frontend@vps1 -> backend@vps2:0", "port"),
            ("frontend@vps1 -> backend@vps2:65536", "port"),
            ("frontend@vps1 -> backend@vps2:5432 permit", "verdict"),
            ("front*@vps1 -> backend@vps2:5432", "source workload"),
            ("frontend@vps1 -> backend@vps2:5432 allow extra", "want"),
            ("", "want"),
        ] {
            let e = MeshPolicy::parse("mesh.yaml: policy", &[bad.to_string()])
                .expect_err(bad)
                .to_string();
            assert!(e.contains("mesh.yaml: policy: rule 1"), "{e}");
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
