//! The admission policy.
//!
//! ```yaml
//! # admission.yaml
//! fail: closed             # closed (deny when rampart cannot decide) | open
//! trust: trust.yaml        # the trust policy (signers per repository), relative to this file
//! max_severity: high       # deny images with a vulnerability at or above this severity
//! scan_timeout: 20s        # an image without a cached scan is scanned within this bound
//! scan_concurrency: 1      # scans on demand at once (others wait, within their timeout)
//! break_glass: [alice]     # authenticated users whose rampart.break-glass=<reason> label
//!                          # allows a create the rules deny (audited)
//! rules: [signed, scanned, privileged, host-namespaces, sensitive-mounts, non-root,
//!         limits, seccomp, capabilities, devices, confinement]    # the default
//!                          # (all but the optional `disk-io`, which is added by listing it)
//! allow: [plugins]         # gated endpoints to allow: plugins, swarm, buildkit, checkpoints,
//!                          # cluster-volumes (default: none; `services` is accepted, unused:
//!                          # services are judged by their spec)
//! allow_fields: []         # request keys the plugin does not know, allowed anyway
//! exceptions:              # rules that do not apply, per authenticated user and/or image
//!   - user: ci-deployer    # the TLS client certificate name dockerd forwards
//!     digest: "sha256:..." # image id or repository digest of the image that runs
//!     skip: [non-root, limits]
//! ```
//!
//! Exceptions and break glass match what the requester cannot choose: the user dockerd
//! authenticated (TLS client certificate) and the content digest of the image. Labels, names
//! and tags are the requester's to pick, so they never widen what is allowed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_event::Severity;
use serde::{Deserialize, Serialize};

use super::route::Gate;
use crate::error::TrustError;

/// Label whose value is the reason of a break glass (honoured only for the users listed in
/// `break_glass`).
pub const BREAK_GLASS_LABEL: &str = "rampart.break-glass";

/// One admission rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The image is signed by a key the trust policy requires (digest pinned).
    Signed,
    /// The image's scan has no vulnerability at or above `max_severity`.
    Scanned,
    /// No `--privileged` container or exec.
    Privileged,
    /// No host (or another container's) PID, network, IPC, UTS, user or cgroup namespace.
    HostNamespaces,
    /// No bind of a host system path or a parent of one, no shared propagation, no bind
    /// volumes of them, no mounts inherited from other containers.
    SensitiveMounts,
    /// A numeric non-root user, or a user namespace (daemon with userns-remap).
    NonRoot,
    /// Memory, CPU and pids limits are set and stay set; no cgroup of one's choosing.
    Limits,
    /// seccomp stays Docker's profile (no `unconfined`, no custom profile).
    Seccomp,
    /// No capability beyond Docker's default set.
    Capabilities,
    /// No host devices (`--device`, device cgroup rules, GPUs).
    Devices,
    /// A disk IO limit is set (`--device-read-bps`, `--device-write-bps`, `--device-read-iops`,
    /// `--device-write-iops`: a device path and a rate above 0) and is not lifted by an update;
    /// swarm services (whose spec has no IO limit) are refused. Off unless `rules:` lists it:
    /// not in [`Rule::ALL`].
    DiskIo,
    /// AppArmor, SELinux, masked and read-only paths, no-new-privileges, sysctls and the
    /// runtime stay Docker's defaults.
    Confinement,
    /// The request itself is readable the way dockerd reads it, on an endpoint the plugin
    /// knows. Always applies: it is not in [`Rule::ALL`] and cannot be skipped.
    Request,
}

impl Rule {
    pub const ALL: [Rule; 11] = [
        Rule::Signed,
        Rule::Scanned,
        Rule::Privileged,
        Rule::HostNamespaces,
        Rule::SensitiveMounts,
        Rule::NonRoot,
        Rule::Limits,
        Rule::Seccomp,
        Rule::Capabilities,
        Rule::Devices,
        Rule::Confinement,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Rule::Signed => "signed",
            Rule::Scanned => "scanned",
            Rule::Privileged => "privileged",
            Rule::HostNamespaces => "host-namespaces",
            Rule::SensitiveMounts => "sensitive-mounts",
            Rule::NonRoot => "non-root",
            Rule::Limits => "limits",
            Rule::Seccomp => "seccomp",
            Rule::Capabilities => "capabilities",
            Rule::Devices => "devices",
            Rule::DiskIo => "disk-io",
            Rule::Confinement => "confinement",
            Rule::Request => "request",
        }
    }
}

/// A rule a request breaks, with what in the request breaks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum FailMode {
    Closed,
    Open,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "closed")]
    fail: FailMode,
    #[serde(default)]
    trust: Option<PathBuf>,
    #[serde(default)]
    max_severity: Option<Severity>,
    #[serde(default)]
    scan_timeout: Option<String>,
    #[serde(default)]
    scan_concurrency: Option<usize>,
    #[serde(default)]
    break_glass: Option<serde_yaml::Value>,
    #[serde(default)]
    rules: Option<Vec<Rule>>,
    #[serde(default)]
    allow: Vec<Gate>,
    #[serde(default)]
    allow_fields: Vec<String>,
    #[serde(default)]
    exceptions: Vec<ExceptionFile>,
}

fn closed() -> FailMode {
    FailMode::Closed
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionFile {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(rename = "match", default)]
    pattern: Option<serde_yaml::Value>,
    #[serde(default)]
    label: Option<serde_yaml::Value>,
    skip: Vec<Rule>,
}

/// An exception: rules that do not apply to requests by `user` (the authenticated user)
/// and/or for the image with `digest` (its id or a repository digest).
#[derive(Debug, Clone)]
pub struct Exception {
    pub user: Option<String>,
    pub digest: Option<String>,
    pub skip: Vec<Rule>,
    pub line: usize,
}

/// A loaded admission policy.
#[derive(Debug, Clone)]
pub struct AdmissionPolicy {
    pub path: PathBuf,
    /// Allow when rampart cannot decide (registry down, scan timed out, ...). Never allows a
    /// request the rules deny.
    pub fail_open: bool,
    /// The trust policy file (required by the `signed` rule).
    pub trust: Option<PathBuf>,
    /// Threshold of the `scanned` rule (default high).
    pub max_severity: Severity,
    pub scan_timeout: Duration,
    /// Scans on demand running at once.
    pub scan_concurrency: usize,
    /// Authenticated users allowed to break glass.
    pub break_glass: Vec<String>,
    pub rules: Vec<Rule>,
    /// Gated endpoints the policy allows.
    pub allow: Vec<Gate>,
    /// Unknown request keys allowed anyway (`HostConfig.Foo`).
    pub allow_fields: Vec<String>,
    pub exceptions: Vec<Exception>,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        AdmissionPolicy {
            path: PathBuf::from("(default)"),
            fail_open: false,
            trust: None,
            max_severity: Severity::High,
            scan_timeout: Duration::from_secs(20),
            scan_concurrency: 1,
            break_glass: Vec::new(),
            rules: Rule::ALL.to_vec(),
            allow: Vec::new(),
            allow_fields: Vec::new(),
            exceptions: Vec::new(),
        }
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or(1)
}

impl AdmissionPolicy {
    pub fn load(path: &Path) -> Result<AdmissionPolicy, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrustError::io(path, e))?;
        AdmissionPolicy::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AdmissionPolicy, TrustError> {
        let bad = |line: usize, message: String| TrustError::Policy {
            path: path.to_path_buf(),
            line,
            message,
        };
        let f: PolicyFile = serde_yaml::from_str(text)
            .map_err(|e| bad(e.location().map(|l| l.line()).unwrap_or(1), e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rules = f.rules.unwrap_or_else(|| Rule::ALL.to_vec());
        if rules.contains(&Rule::Request) {
            return Err(bad(
                line_of(text, "request"),
                "`request` always applies; it is not listed".into(),
            ));
        }
        let trust = f.trust.map(|t| base.join(t));
        if rules.contains(&Rule::Signed) && trust.is_none() {
            return Err(bad(
                line_of(text, "rules"),
                "the `signed` rule needs `trust:` (a trust policy file naming the signers)".into(),
            ));
        }
        let scan_timeout = match &f.scan_timeout {
            Some(s) => humantime_secs(s).ok_or_else(|| {
                bad(
                    line_of(text, "scan_timeout"),
                    format!("scan_timeout {s:?}: use 20s, 2m, 500ms"),
                )
            })?,
            None => Duration::from_secs(20),
        };
        let scan_concurrency = f.scan_concurrency.unwrap_or(1);
        if scan_concurrency == 0 {
            return Err(bad(
                line_of(text, "scan_concurrency"),
                "scan_concurrency must be at least 1".into(),
            ));
        }
        let break_glass = match f.break_glass {
            None | Some(serde_yaml::Value::Null) => Vec::new(),
            Some(serde_yaml::Value::Sequence(s)) => s
                .into_iter()
                .map(|u| match u {
                    serde_yaml::Value::String(u) if !u.is_empty() => Ok(u),
                    _ => Err(bad(
                        line_of(text, "break_glass"),
                        "break_glass lists user names (strings)".into(),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(bad(
                    line_of(text, "break_glass"),
                    "break_glass is a list of the authenticated users (TLS client certificate names) allowed to break glass; `true` (anyone who can set a label) is no longer accepted".into(),
                ))
            }
        };
        let mut exceptions = Vec::new();
        for e in f.exceptions {
            let needle = e.user.as_deref().or(e.digest.as_deref()).unwrap_or("skip");
            let line = line_of(text, needle);
            if e.pattern.is_some() || e.label.is_some() {
                return Err(bad(
                    line_of(text, if e.pattern.is_some() { "match" } else { "label" }),
                    "exceptions match on `user` (the authenticated user) and/or `digest` (the image's id or repository digest): `match` and `label` name what the requester chooses and are not accepted".into(),
                ));
            }
            if e.user.is_none() && e.digest.is_none() {
                return Err(bad(line, "an exception needs `user` or `digest`".into()));
            }
            if let Some(d) = &e.digest {
                let ok = d.strip_prefix("sha256:").is_some_and(|h| {
                    h.len() == 64
                        && h.bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                });
                if !ok {
                    return Err(bad(
                        line,
                        format!("digest {d:?}: use sha256:<64 hex digits>"),
                    ));
                }
            }
            if e.skip.contains(&Rule::Request) {
                return Err(bad(line, "`request` cannot be skipped".into()));
            }
            exceptions.push(Exception {
                user: e.user,
                digest: e.digest,
                skip: e.skip,
                line,
            });
        }
        Ok(AdmissionPolicy {
            path: path.to_path_buf(),
            fail_open: f.fail == FailMode::Open,
            trust,
            max_severity: f.max_severity.unwrap_or(Severity::High),
            scan_timeout,
            scan_concurrency,
            break_glass,
            rules,
            allow: f.allow,
            allow_fields: f.allow_fields,
            exceptions,
        })
    }

    /// The rules that apply to a request by `user` (authenticated; empty when dockerd has no
    /// authentication) for an image with `digests` (its id and repository digests; empty when
    /// the request runs no image). [`Rule::Request`] always applies.
    pub fn rules_for(&self, user: &str, digests: &[String]) -> Vec<Rule> {
        let mut rules = self.rules.clone();
        for e in &self.exceptions {
            let user_ok = e
                .user
                .as_ref()
                .is_none_or(|u| !user.is_empty() && u == user);
            let digest_ok = e.digest.as_ref().is_none_or(|d| digests.contains(d));
            if user_ok && digest_ok {
                rules.retain(|r| !e.skip.contains(r));
            }
        }
        rules.push(Rule::Request);
        rules
    }

    /// Whether `user` may break glass.
    pub fn may_break_glass(&self, user: &str) -> bool {
        !user.is_empty() && self.break_glass.iter().any(|u| u == user)
    }
}

fn humantime_secs(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_file_and_exceptions() {
        let d = format!("sha256:{}", "a".repeat(64));
        let text = format!("fail: open\ntrust: t.yaml\nmax_severity: critical\nscan_timeout: 5s\nrules: [signed, limits, non-root]\nbreak_glass: [alice]\nallow: [plugins]\nexceptions:\n  - user: ci\n    skip: [limits]\n  - digest: \"{d}\"\n    skip: [non-root]\n");
        let p =
            AdmissionPolicy::parse(&text, Path::new("/etc/rampart/admission.yaml")).expect("ok");
        assert!(p.fail_open);
        assert_eq!(p.max_severity, Severity::Critical);
        assert_eq!(p.trust.as_deref(), Some(Path::new("/etc/rampart/t.yaml")));
        assert_eq!(p.allow, vec![Gate::Plugins]);
        assert_eq!(p.rules_for("", &[]).len(), 4);
        assert_eq!(
            p.rules_for("ci", &[]),
            vec![Rule::Signed, Rule::NonRoot, Rule::Request]
        );
        assert_eq!(
            p.rules_for("bob", std::slice::from_ref(&d)),
            vec![Rule::Signed, Rule::Limits, Rule::Request]
        );
        // `disk-io` is optional: off by default, on when listed, skippable per exception.
        assert!(!AdmissionPolicy::default().rules.contains(&Rule::DiskIo));
        let p2 = AdmissionPolicy::parse("trust: t.yaml\n", Path::new("a.yaml")).expect("ok");
        assert!(!p2.rules.contains(&Rule::DiskIo));
        let p2 = AdmissionPolicy::parse(
            "rules: [limits, disk-io]\nexceptions:\n  - user: ci\n    skip: [disk-io]\n",
            Path::new("a.yaml"),
        )
        .expect("ok");
        assert_eq!(
            p2.rules_for("bob", &[]),
            vec![Rule::Limits, Rule::DiskIo, Rule::Request]
        );
        assert_eq!(p2.rules_for("ci", &[]), vec![Rule::Limits, Rule::Request]);
        assert!(p.may_break_glass("alice"));
        assert!(!p.may_break_glass("") && !p.may_break_glass("bob"));
        let err =
            AdmissionPolicy::parse("rules: [signed]\n", Path::new("a.yaml")).expect_err("no trust");
        assert!(err.to_string().starts_with("a.yaml:1:"), "{err}");
        let err =
            AdmissionPolicy::parse("rules: [signed]\ntrust: t\nbogus: 1\n", Path::new("a.yaml"))
                .expect_err("unknown");
        assert!(err.to_string().contains("a.yaml:3"), "{err}");
        // Self-service exceptions are refused, naming the line.
        for (t, line) in [
            (
                "rules: []\nexceptions:\n  - label: role=debug\n    skip: [limits]\n",
                3,
            ),
            (
                "rules: []\nexceptions:\n  - match: \"r/*\"\n    skip: [limits]\n",
                3,
            ),
            ("rules: []\nbreak_glass: true\n", 2),
            (
                "rules: []\nexceptions:\n  - user: deployer\n    skip: [request]\n",
                3,
            ),
        ] {
            let err = AdmissionPolicy::parse(t, Path::new("a.yaml")).expect_err(t);
            assert!(
                err.to_string().starts_with(&format!("a.yaml:{line}:")),
                "{err}"
            );
        }
    }
}
