//! Findings that are not vulnerabilities: secrets, malware, risky file modes, image
//! configuration, minimality, Dockerfile lint.

use rampart_event::Severity;
use serde::{Deserialize, Serialize};

/// What a [`Finding`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A credential in a file, the environment or a label.
    Secret,
    /// Malicious content (crypto-miners), matched by YARA rules.
    Malware,
    /// A setuid or setgid file.
    Setuid,
    /// A world-writable file or directory (without the sticky bit).
    WorldWritable,
    /// The image configuration (user, ports, healthcheck, environment).
    Config,
    /// Tools an application image does not need (shells, compilers, package managers).
    Minimality,
    /// A Dockerfile instruction.
    Dockerfile,
}

impl FindingKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            FindingKind::Secret => "secret",
            FindingKind::Malware => "malware",
            FindingKind::Setuid => "setuid",
            FindingKind::WorldWritable => "world-writable",
            FindingKind::Config => "config",
            FindingKind::Minimality => "minimality",
            FindingKind::Dockerfile => "dockerfile",
        }
    }
}

/// One finding. Evidence is always masked: a secret never appears in full in any output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// Stable rule id (`secret/aws-access-key-id`, `config/root-user`, `DF001`, YARA rule name).
    pub rule: String,
    pub title: String,
    pub severity: Severity,
    /// File in the image (or the Dockerfile), when the finding has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Diff id of the layer holding the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// What matched, masked (`AKIA************MPLE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The file is deleted by a later layer but still ships in the image's layers: anyone who
    /// pulls the image can read it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed_in_later_layer: bool,
}

impl Finding {
    /// `PATH:LINE SEVERITY RULE TITLE (EVIDENCE)`, the line `rampart dockerfile lint` prints.
    pub fn lint_line(&self) -> String {
        format!(
            "{}:{} {} {} {}{}",
            self.path.as_deref().unwrap_or(""),
            self.line.unwrap_or(0),
            self.severity.as_str().to_uppercase(),
            self.rule,
            self.title,
            self.evidence
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )
    }

    pub(crate) fn new(
        kind: FindingKind,
        rule: &str,
        title: impl Into<String>,
        severity: Severity,
    ) -> Finding {
        Finding {
            kind,
            rule: rule.to_string(),
            title: title.into(),
            severity,
            path: None,
            line: None,
            layer: None,
            evidence: None,
            removed_in_later_layer: false,
        }
    }

    pub(crate) fn at(mut self, path: &str, line: Option<usize>) -> Finding {
        self.path = Some(path.to_string());
        self.line = line;
        self
    }

    pub(crate) fn evidence(mut self, e: impl Into<String>) -> Finding {
        self.evidence = Some(e.into());
        self
    }
}

/// Masks a secret: the first four characters stay (enough to tell which key it is), the rest
/// becomes `*`, at most 16 of them.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let keep = if chars.len() > 8 { 4 } else { 0 };
    let shown: String = chars[..keep].iter().collect();
    format!("{shown}{}", "*".repeat((chars.len() - keep).clamp(4, 16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_hides_all_but_a_prefix() {
        assert_eq!(mask("AKIAIOSFODNN7EXAMPLE"), "AKIA****************");
        assert_eq!(mask("short"), "*****");
        assert_eq!(mask("ab"), "****");
        assert!(!mask("ghp_abcdefghijklmnopqrstuvwxyz0123456789").contains("abcdef"));
    }
}
