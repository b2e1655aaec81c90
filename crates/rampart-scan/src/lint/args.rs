//! `rampart dockerfile lint` as the user asks for it: which files, which form, which `--fail-on`
//! threshold, and the gate's answer.
//!
//! With the `clap` feature [`LintArgs`] is also the command's arguments: the field doc comments
//! are the help text. Only the binary turns it on.

use std::path::PathBuf;

use rampart_event::Severity;

use crate::finding::Finding;

/// The forms lint findings are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LintFormat {
    Text,
    Json,
}

/// Severities for `--fail-on` (a lint finding always has one: no `unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LintFailOn {
    Low,
    Medium,
    High,
    Critical,
}

impl LintFailOn {
    /// The least severe finding that fails the gate.
    pub fn severity(self) -> Severity {
        match self {
            LintFailOn::Low => Severity::Low,
            LintFailOn::Medium => Severity::Medium,
            LintFailOn::High => Severity::High,
            LintFailOn::Critical => Severity::Critical,
        }
    }
}

/// The options of `rampart dockerfile lint`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct LintArgs {
    /// Dockerfiles (default: ./Dockerfile).
    pub files: Vec<PathBuf>,
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = LintFormat::Text))]
    pub format: LintFormat,
    /// Exit 3 when a finding of this severity or higher is found.
    #[cfg_attr(feature = "clap", arg(long, value_enum))]
    pub fail_on: Option<LintFailOn>,
}

impl LintArgs {
    /// The files to lint: those given, else `Dockerfile` in the current directory.
    pub fn files(&self) -> Vec<PathBuf> {
        if self.files.is_empty() {
            vec![PathBuf::from("Dockerfile")]
        } else {
            self.files.clone()
        }
    }

    /// The findings in the form asked for: one `lint_line` each, or one pretty JSON array
    /// (fields in their declared order) and a newline.
    pub fn render(&self, findings: &[Finding]) -> Result<String, serde_json::Error> {
        Ok(match self.format {
            LintFormat::Json => serde_json::to_string_pretty(findings)? + "\n",
            LintFormat::Text => findings.iter().map(|f| f.lint_line() + "\n").collect(),
        })
    }

    /// Whether `--fail-on` is given and a finding reaches it (exit 3).
    pub fn fails(&self, findings: &[Finding]) -> bool {
        self.fail_on
            .is_some_and(|t| findings.iter().any(|f| f.severity >= t.severity()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(fail_on: Option<LintFailOn>, format: LintFormat) -> LintArgs {
        LintArgs {
            files: Vec::new(),
            format,
            fail_on,
        }
    }

    fn findings() -> Vec<Finding> {
        // DF002 (high): `latest`; DF003 (high): runs as root; DF015 (low): MAINTAINER.
        crate::lint::lint_dockerfile("Dockerfile", "FROM debian:latest\nMAINTAINER me\n")
    }

    #[test]
    fn no_files_means_the_dockerfile_here() {
        assert_eq!(
            args(None, LintFormat::Text).files(),
            [PathBuf::from("Dockerfile")]
        );
        let given = LintArgs {
            files: vec![PathBuf::from("a/Dockerfile")],
            ..args(None, LintFormat::Text)
        };
        assert_eq!(given.files(), [PathBuf::from("a/Dockerfile")]);
    }

    #[test]
    fn the_gate_fails_at_or_above_the_threshold_only() {
        let f = findings();
        let worst = f.iter().map(|f| f.severity).max().expect("findings");
        assert_eq!(worst, Severity::High);
        assert!(args(Some(LintFailOn::Low), LintFormat::Text).fails(&f));
        assert!(args(Some(LintFailOn::High), LintFormat::Text).fails(&f));
        assert!(!args(Some(LintFailOn::Critical), LintFormat::Text).fails(&f));
        assert!(!args(None, LintFormat::Text).fails(&f));
        assert!(!args(Some(LintFailOn::Low), LintFormat::Text).fails(&[]));
    }

    #[test]
    fn text_is_one_line_per_finding_and_json_the_pretty_array() {
        let f = findings();
        let text = args(None, LintFormat::Text).render(&f).expect("text");
        assert_eq!(text.lines().count(), f.len());
        assert!(text.starts_with("Dockerfile:1 "), "{text}");
        let json = args(None, LintFormat::Json).render(&f).expect("json");
        let back: Vec<Finding> = serde_json::from_str(&json).expect("parses back");
        assert_eq!(back, f);
        assert!(json.ends_with("]\n"));
        assert_eq!(args(None, LintFormat::Text).render(&[]).expect("text"), "");
        assert_eq!(
            args(None, LintFormat::Json).render(&[]).expect("json"),
            "[]\n"
        );
    }
}
