//! Secrets in files: private keys, cloud and SaaS access keys and tokens, credentials in URLs,
//! registry auth in Docker/npm/PyPI configuration, and passwords in configuration files. Every
//! match is reported with its line and the secret masked ([`crate::finding::mask`]).
//!
//! What is read: text files up to [`MAX_SIZE`] outside system and package trees
//! (`usr/share`, `usr/lib`, `usr/include`, site-packages, `node_modules`, ...), plus the files
//! that exist only to hold credentials wherever they are (`.ssh/id_*`, `.aws/credentials`,
//! `.docker/config.json`, `.npmrc`, `.pypirc`, `.git-credentials`, `.netrc`, `*.pem`, `*.key`,
//! `.env`). Files with a NUL byte in their first 8 KiB are binary and skipped.

use std::sync::OnceLock;

use rampart_event::Severity;
use regex::Regex;

use super::{path_name, FileRef, FileResult};
use crate::finding::{mask, Finding, FindingKind};

/// Largest file searched for secrets.
pub(crate) const MAX_SIZE: u64 = 2 << 20;

const SKIP_PREFIXES: [&str; 14] = [
    "usr/share/",
    "usr/include/",
    "usr/lib/",
    "usr/libexec/",
    "usr/src/",
    "lib/",
    "lib64/",
    "proc/",
    "sys/",
    "dev/",
    "var/lib/dpkg/",
    "var/lib/apt/",
    "var/cache/",
    "usr/local/lib/",
];

const SKIP_CONTAINS: [&str; 5] = [
    "/node_modules/",
    "/site-packages/",
    "/dist-packages/",
    "/.cargo/registry/",
    "/go/pkg/mod/",
];

fn credential_file(path: &str) -> bool {
    let name = path_name(path);
    path.contains("/.ssh/id_")
        || path.ends_with("/.aws/credentials")
        || path.ends_with(".docker/config.json")
        || matches!(
            name,
            ".npmrc" | ".pypirc" | ".git-credentials" | ".netrc" | ".env" | ".htpasswd"
        )
        || name.ends_with(".pem")
        || name.ends_with(".key")
        || (path.starts_with("etc/ssh/") && name.starts_with("ssh_host_") && name.ends_with("_key"))
}

/// Configuration-like files where `password = ...` is a finding.
fn config_file(path: &str) -> bool {
    let name = path_name(path).to_ascii_lowercase();
    [
        ".env",
        ".ini",
        ".conf",
        ".cfg",
        ".config",
        ".properties",
        ".yml",
        ".yaml",
        ".json",
        ".toml",
        ".xml",
        ".tfvars",
    ]
    .iter()
    .any(|e| name.ends_with(e))
        || name == ".env"
        || name.starts_with(".env.")
}

pub(crate) fn wants(f: &FileRef<'_>) -> bool {
    if f.size == 0 || f.size > MAX_SIZE {
        return false;
    }
    if credential_file(f.path) {
        return true;
    }
    let p = f.path;
    if SKIP_PREFIXES.iter().any(|s| p.starts_with(s)) || SKIP_CONTAINS.iter().any(|s| p.contains(s))
    {
        return false;
    }
    // Executables are the miner analyser's; a script is text and read here.
    let name = path_name(p);
    !name.ends_with(".so") && !name.contains(".so.") && !name.ends_with(".a")
}

struct Rule {
    id: &'static str,
    title: &'static str,
    severity: Severity,
    /// Capture group 1 (or the whole match) is the secret.
    re: Regex,
    /// Only in configuration-like files.
    config_only: bool,
}

fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let r = |id, title, severity, pattern: &str, config_only| Rule {
            id,
            title,
            severity,
            // The patterns are constants of this file, covered by its tests.
            re: Regex::new(pattern).unwrap_or_else(|e| panic!("secret rule {id}: {e}")),
            config_only,
        };
        vec![
            r("secret/private-key", "private key", Severity::Critical,
              r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----", false),
            r("secret/aws-access-key-id", "AWS access key id", Severity::Critical,
              r"\b((?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b", false),
            r("secret/aws-secret-access-key", "AWS secret access key", Severity::Critical,
              r#"(?i)aws.?secret.?access.?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})\b"#, false),
            r("secret/github-token", "GitHub token", Severity::Critical,
              r"\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b", false),
            r("secret/gitlab-token", "GitLab token", Severity::Critical,
              r"\b(glpat-[A-Za-z0-9_\-]{20})\b", false),
            r("secret/slack-token", "Slack token", Severity::High,
              r"\b(xox[baprs]-[A-Za-z0-9-]{10,72})\b", false),
            r("secret/slack-webhook", "Slack webhook", Severity::High,
              r"(https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+)", false),
            r("secret/google-api-key", "Google API key", Severity::High,
              r"\b(AIza[0-9A-Za-z_\-]{35})\b", false),
            r("secret/stripe-key", "Stripe secret key", Severity::Critical,
              r"\b((?:sk|rk)_live_[0-9A-Za-z]{24,})\b", false),
            r("secret/npm-token", "npm token", Severity::High,
              r"(?:\b(npm_[A-Za-z0-9]{36})\b|_authToken\s*=\s*([A-Za-z0-9_\-]{20,}))", false),
            r("secret/pypi-token", "PyPI token", Severity::High,
              r"\b(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,})", false),
            r("secret/docker-registry-auth", "Docker registry credentials", Severity::High,
              r#""auth"\s*:\s*"([A-Za-z0-9+/=]{12,})""#, false),
            r("secret/url-credentials", "password in a URL", Severity::High,
              r"\b[a-z][a-z0-9+.\-]{1,15}://[^\s/:@]{1,64}:([^\s/:@]{3,128})@[A-Za-z0-9.\-]+", false),
            r("secret/password-in-config", "password in configuration", Severity::Medium,
              r#"(?i)\b(?:password|passwd|pwd|secret|api_?key|access_?token|auth_?token)\b["']?\s*[:=]\s*["']?([^\s"'#,;}{]{8,})"#, true),
        ]
    })
}

/// Values that are placeholders, not secrets.
fn placeholder(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    l.starts_with('$')
        || l.starts_with("${")
        || l.starts_with('<')
        || l.starts_with("%(")
        || l.starts_with("{{")
        || l.contains("example")
        || l.contains("changeme")
        || l.contains("placeholder")
        || l.contains("your_")
        || l.contains("xxxx")
        || l.contains("****")
        || l == "password"
        || l == "secret"
        || l.chars().all(|c| c == l.chars().next().unwrap_or(' '))
}

pub(crate) fn scan(path: &str, data: &[u8], out: &mut FileResult) {
    if data[..data.len().min(8192)].contains(&0) {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let config = config_file(path);
    for rule in rules() {
        if rule.config_only && !config {
            continue;
        }
        for caps in rule.re.captures_iter(&text) {
            let Some(m) = caps.iter().skip(1).flatten().next().or_else(|| caps.get(0)) else {
                continue;
            };
            let secret = m.as_str();
            let evidence = if rule.id == "secret/private-key" {
                format!("-----BEGIN {secret}----- (key material not shown)")
            } else {
                if placeholder(secret) {
                    continue;
                }
                mask(secret)
            };
            let line = text[..m.start()].matches('\n').count() + 1;
            out.findings.push(
                Finding::new(FindingKind::Secret, rule.id, rule.title, rule.severity)
                    .at("", Some(line))
                    .evidence(evidence),
            );
        }
    }
}

/// Secret-looking values anywhere (the environment and labels of an image config).
pub(crate) fn scan_value(value: &str) -> Option<(&'static str, &'static str, Severity, String)> {
    for rule in rules() {
        if rule.config_only || rule.id == "secret/private-key" {
            continue;
        }
        if let Some(c) = rule.re.captures(value) {
            let m = c.iter().skip(1).flatten().next().or_else(|| c.get(0))?;
            if !placeholder(m.as_str()) {
                return Some((rule.id, rule.title, rule.severity, mask(m.as_str())));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(path: &str, text: &str) -> Vec<(String, usize, String)> {
        let mut r = FileResult::default();
        scan(path, text.as_bytes(), &mut r);
        r.findings
            .into_iter()
            .map(|f| (f.rule, f.line.unwrap_or(0), f.evidence.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn finds_and_masks() {
        let f = found(
            "app/config.yml",
            "db:\n  url: postgres://app:s3cr3tPassw0rd@db:5432/app\n  password: Hunter2Hunter2\naws_access_key_id: AKIAQ3EGRBVN5L7XWZ6P\n",
        );
        assert_eq!(
            f,
            [
                (
                    "secret/aws-access-key-id".into(),
                    4,
                    "AKIA****************".into()
                ),
                ("secret/url-credentials".into(), 2, "s3cr**********".into()),
                (
                    "secret/password-in-config".into(),
                    3,
                    "Hunt**********".into()
                ),
            ]
        );
    }

    #[test]
    fn private_key_material_is_never_shown() {
        let f = found(
            "root/.ssh/id_rsa",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        );
        assert_eq!(f.len(), 1);
        assert!(!f[0].2.contains("b3BlbnNzaC1r"));
    }

    #[test]
    fn placeholders_and_code_are_not_findings() {
        assert!(found(
            "app/settings.yml",
            "password: ${DB_PASSWORD}\npassword: changeme123\n"
        )
        .is_empty());
        assert!(
            found("app/main.py", "password = get_password()\n").is_empty(),
            "not a config file"
        );
        assert!(!wants(&FileRef {
            path: "usr/share/doc/x/README",
            mode: 0o644,
            size: 10
        }));
        assert!(wants(&FileRef {
            path: "usr/lib/x/.aws/credentials",
            mode: 0o600,
            size: 10
        }));
    }
}
