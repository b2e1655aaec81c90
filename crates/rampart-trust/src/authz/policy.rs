//! The admission policy applied to `POST /containers/create`.
//!
//! ```yaml
//! # admission.yaml
//! fail: closed             # closed (deny when rampart cannot decide) | open
//! trust: trust.yaml        # the trust policy (signers per repository), relative to this file
//! max_severity: high       # deny images with a vulnerability at or above this severity
//! scan_timeout: 20s        # an image without a cached scan is scanned within this bound
//! break_glass: true        # label rampart.break-glass=<reason> allows, with an audit event
//! rules: [signed, scanned, privileged, host-namespaces, sensitive-mounts, non-root,
//!         limits, seccomp, capabilities]    # the default: all of them
//! exceptions:              # per image pattern or container label: rules that do not apply
//!   - match: "127.0.0.1:*/tools/**"
//!     label: "com.example.role=debug"
//!     skip: [non-root, limits]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_event::Severity;
use serde::{Deserialize, Serialize};

use crate::error::TrustError;

/// Label that allows a denied create when `break_glass` is on; its value is the reason.
pub const BREAK_GLASS_LABEL: &str = "rampart.break-glass";

/// One admission rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The image is signed by a key the trust policy requires (digest pinned).
    Signed,
    /// The image's scan has no vulnerability at or above `max_severity`.
    Scanned,
    /// No `--privileged`.
    Privileged,
    /// No host PID, network, IPC, UTS or user namespace.
    HostNamespaces,
    /// No bind mount of `/`, the Docker socket or other host system paths.
    SensitiveMounts,
    /// A non-root user, or a user namespace (daemon with userns-remap).
    NonRoot,
    /// Memory, CPU and pids limits are set.
    Limits,
    /// seccomp is not `unconfined`.
    Seccomp,
    /// No dangerous added capabilities (SYS_ADMIN, ALL, ...).
    Capabilities,
    /// The create request itself is readable (a body is present and is JSON). Always applies:
    /// it is not in [`Rule::ALL`] and cannot be skipped.
    Request,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::Signed,
        Rule::Scanned,
        Rule::Privileged,
        Rule::HostNamespaces,
        Rule::SensitiveMounts,
        Rule::NonRoot,
        Rule::Limits,
        Rule::Seccomp,
        Rule::Capabilities,
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
    break_glass: bool,
    #[serde(default)]
    rules: Option<Vec<Rule>>,
    #[serde(default)]
    exceptions: Vec<ExceptionFile>,
}

fn closed() -> FailMode {
    FailMode::Closed
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionFile {
    #[serde(rename = "match", default)]
    pattern: Option<String>,
    #[serde(default)]
    label: Option<String>,
    skip: Vec<Rule>,
}

/// An exception: rules that do not apply to images matching `pattern` and/or containers
/// carrying `label` (`key=value` or `key`).
#[derive(Debug, Clone)]
pub struct Exception {
    pub pattern: Option<glob::Pattern>,
    pub label: Option<(String, Option<String>)>,
    pub skip: Vec<Rule>,
    pub line: usize,
}

/// A loaded admission policy.
#[derive(Debug, Clone)]
pub struct AdmissionPolicy {
    pub path: PathBuf,
    /// Allow when rampart cannot decide (registry down, scan timed out, ...).
    pub fail_open: bool,
    /// The trust policy file (required by the `signed` rule).
    pub trust: Option<PathBuf>,
    /// Threshold of the `scanned` rule (default high).
    pub max_severity: Severity,
    pub scan_timeout: Duration,
    pub break_glass: bool,
    pub rules: Vec<Rule>,
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
            break_glass: false,
            rules: Rule::ALL.to_vec(),
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
        let mut exceptions = Vec::new();
        for e in f.exceptions {
            let needle = e
                .pattern
                .as_deref()
                .or(e.label.as_deref())
                .unwrap_or("skip");
            let line = line_of(text, needle);
            if e.pattern.is_none() && e.label.is_none() {
                return Err(bad(line, "an exception needs `match` or `label`".into()));
            }
            let pattern = match &e.pattern {
                Some(p) => Some(
                    glob::Pattern::new(p)
                        .map_err(|err| bad(line, format!("match {p:?}: {err}")))?,
                ),
                None => None,
            };
            let label = e.label.map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (l, None),
            });
            exceptions.push(Exception {
                pattern,
                label,
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
            break_glass: f.break_glass,
            rules,
            exceptions,
        })
    }

    /// The rules that apply to a container of `image` (normalised `registry/repository`)
    /// with `labels`.
    pub fn rules_for(&self, image: &str, labels: &BTreeMap<String, String>) -> Vec<Rule> {
        let mut rules = self.rules.clone();
        for e in &self.exceptions {
            let image_ok = e.pattern.as_ref().is_none_or(|p| p.matches(image));
            let label_ok = e.label.as_ref().is_none_or(|(k, v)| match labels.get(k) {
                Some(actual) => v.as_ref().is_none_or(|v| v == actual),
                None => false,
            });
            if image_ok && label_ok {
                rules.retain(|r| !e.skip.contains(r));
            }
        }
        rules
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

/// The parts of a `POST /containers/create` body the policy reads (Engine API
/// `ContainerCreateRequest`: the container config with `HostConfig` inside).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRequest {
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub host_config: Option<HostConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub pid_mode: String,
    #[serde(default)]
    pub network_mode: String,
    #[serde(default)]
    pub ipc_mode: String,
    #[serde(default, rename = "UTSMode")]
    pub uts_mode: String,
    #[serde(default)]
    pub userns_mode: String,
    #[serde(default)]
    pub binds: Option<Vec<String>>,
    #[serde(default)]
    pub mounts: Option<Vec<Mount>>,
    #[serde(default)]
    pub memory: i64,
    #[serde(default)]
    pub nano_cpus: i64,
    #[serde(default)]
    pub cpu_quota: i64,
    #[serde(default)]
    pub pids_limit: Option<i64>,
    #[serde(default)]
    pub security_opt: Option<Vec<String>>,
    #[serde(default)]
    pub cap_add: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    #[serde(default, rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub source: String,
}

/// Capabilities that give a container the host (or most of it).
const DANGEROUS_CAPS: &[&str] = &[
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_PTRACE",
    "SYS_BOOT",
    "SYS_TIME",
    "NET_ADMIN",
    "DAC_READ_SEARCH",
    "BPF",
    "PERFMON",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
];

/// Host paths a container must not bind-mount (the path itself or anything under it, and `/`
/// only as itself).
const SENSITIVE_PATHS: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd",
    "/var/lib/docker",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/etc",
    "/root",
];

/// `a//b/./c/` -> `/a/b/c`; `..` pops.
fn normalise(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn sensitive(source: &str) -> bool {
    if !source.starts_with('/') {
        return false; // a named volume
    }
    let p = normalise(source);
    p == "/"
        || SENSITIVE_PATHS
            .iter()
            .any(|s| p == *s || p.starts_with(&format!("{s}/")))
}

fn is_root_user(user: &str) -> bool {
    let u = user.split(':').next().unwrap_or_default();
    u.is_empty() || u == "root" || u == "0"
}

/// Configuration rules (everything but `signed` and `scanned`, which need the image).
/// `image_user` is the image's configured user; `daemon_userns` whether the daemon remaps
/// users (userns-remap).
pub fn check_config(
    req: &CreateRequest,
    rules: &[Rule],
    image_user: &str,
    daemon_userns: bool,
) -> Vec<Violation> {
    let hc = req.host_config.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut v = |rule: Rule, message: String| {
        if rules.contains(&rule) {
            out.push(Violation { rule, message });
        }
    };
    if hc.privileged {
        v(
            Rule::Privileged,
            "privileged containers are not allowed".into(),
        );
    }
    for (name, mode) in [
        ("PID", &hc.pid_mode),
        ("network", &hc.network_mode),
        ("IPC", &hc.ipc_mode),
        ("UTS", &hc.uts_mode),
        ("user", &hc.userns_mode),
    ] {
        if mode == "host" {
            v(
                Rule::HostNamespaces,
                format!(
                    "the host {name} namespace is not allowed (--{}=host)",
                    match name {
                        "PID" => "pid",
                        "network" => "network",
                        "IPC" => "ipc",
                        "UTS" => "uts",
                        _ => "userns",
                    }
                ),
            );
        }
    }
    for b in hc.binds.iter().flatten() {
        let src = b.split(':').next().unwrap_or_default();
        if sensitive(src) {
            v(
                Rule::SensitiveMounts,
                format!("bind mount of host path {src} is not allowed"),
            );
        }
    }
    for m in hc.mounts.iter().flatten() {
        if m.kind == "bind" && sensitive(&m.source) {
            v(
                Rule::SensitiveMounts,
                format!("bind mount of host path {} is not allowed", m.source),
            );
        }
    }
    let effective_user = if req.user.is_empty() {
        image_user
    } else {
        &req.user
    };
    let userns = daemon_userns && hc.userns_mode != "host";
    if is_root_user(effective_user) && !userns {
        v(
            Rule::NonRoot,
            "the container would run as root without a user namespace: set --user (or run dockerd with userns-remap)".into(),
        );
    }
    let mut missing = Vec::new();
    if hc.memory <= 0 {
        missing.push("memory (--memory)");
    }
    if hc.nano_cpus <= 0 && hc.cpu_quota <= 0 {
        missing.push("CPU (--cpus)");
    }
    if hc.pids_limit.unwrap_or(0) <= 0 {
        missing.push("pids (--pids-limit)");
    }
    if !missing.is_empty() {
        v(
            Rule::Limits,
            format!("resource limits required: {}", missing.join(", ")),
        );
    }
    for o in hc.security_opt.iter().flatten() {
        let o = o.replace(':', "=");
        if o == "seccomp=unconfined" {
            v(Rule::Seccomp, "seccomp=unconfined is not allowed".into());
        }
    }
    for c in hc.cap_add.iter().flatten() {
        let c = c.to_ascii_uppercase();
        let c = c.trim_start_matches("CAP_");
        if DANGEROUS_CAPS.contains(&c) {
            v(Rule::Capabilities, format!("--cap-add {c} is not allowed"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> CreateRequest {
        serde_json::from_str(json).expect("json")
    }

    #[test]
    fn configuration_rules() {
        let all = Rule::ALL.to_vec();
        let bad = req(
            r#"{"Image":"x","HostConfig":{"Privileged":true,"PidMode":"host","NetworkMode":"host",
            "Binds":["/:/host","/var/run/docker.sock:/s:ro","data:/data"],
            "Mounts":[{"Type":"bind","Source":"//etc/../run/docker.sock"}],
            "SecurityOpt":["seccomp:unconfined"],"CapAdd":["cap_sys_admin","CHOWN"]}}"#,
        );
        let v = check_config(&bad, &all, "", false);
        let rules: Vec<Rule> = v.iter().map(|v| v.rule).collect();
        for r in [
            Rule::Privileged,
            Rule::HostNamespaces,
            Rule::SensitiveMounts,
            Rule::NonRoot,
            Rule::Limits,
            Rule::Seccomp,
            Rule::Capabilities,
        ] {
            assert!(rules.contains(&r), "{r:?} missing from {v:?}");
        }
        assert_eq!(
            rules
                .iter()
                .filter(|r| **r == Rule::SensitiveMounts)
                .count(),
            3,
            "{v:?}"
        );
        assert!(v.iter().any(|v| v.message.contains("SYS_ADMIN")));
        assert!(!v.iter().any(|v| v.message.contains("CHOWN")));
        let good = req(
            r#"{"Image":"x","User":"1000","HostConfig":{"Memory":67108864,"NanoCpus":500000000,"PidsLimit":64,"Binds":["vol:/data"]}}"#,
        );
        assert!(check_config(&good, &all, "", false).is_empty());
        // The image's own non-root user counts; a user namespace makes root acceptable.
        let no_user = req(r#"{"Image":"x","HostConfig":{"Memory":1,"NanoCpus":1,"PidsLimit":1}}"#);
        assert!(check_config(&no_user, &all, "app", false).is_empty());
        assert!(check_config(&no_user, &all, "", true).is_empty());
        assert_eq!(check_config(&no_user, &all, "0:0", false).len(), 1);
    }

    #[test]
    fn policy_file_and_exceptions() {
        let text = "fail: open\ntrust: t.yaml\nmax_severity: critical\nscan_timeout: 5s\nrules: [signed, limits, non-root]\nexceptions:\n  - label: role=debug\n    skip: [limits]\n";
        let p = AdmissionPolicy::parse(text, Path::new("/etc/rampart/admission.yaml")).expect("ok");
        assert!(p.fail_open);
        assert_eq!(p.max_severity, Severity::Critical);
        assert_eq!(p.trust.as_deref(), Some(Path::new("/etc/rampart/t.yaml")));
        let mut labels = BTreeMap::new();
        assert_eq!(p.rules_for("r/x", &labels).len(), 3);
        labels.insert("role".into(), "debug".into());
        assert_eq!(
            p.rules_for("r/x", &labels),
            vec![Rule::Signed, Rule::NonRoot]
        );
        let err =
            AdmissionPolicy::parse("rules: [signed]\n", Path::new("a.yaml")).expect_err("no trust");
        assert!(err.to_string().starts_with("a.yaml:1:"), "{err}");
        let err =
            AdmissionPolicy::parse("rules: [signed]\ntrust: t\nbogus: 1\n", Path::new("a.yaml"))
                .expect_err("unknown");
        assert!(err.to_string().contains("a.yaml:3"), "{err}");
    }
}
