//! An audit report: findings grouped by subject (a host, a container, an image), a score per
//! subject, and the renderings: a table for people, JSON, OCSF JSON lines and SARIF 2.1.0.
//!
//! # Score
//! Each applicable check weighs by its severity (critical 10, high 5, medium 3, low 1). A
//! subject's score is the share of that weight it keeps: a failed check loses its weight, a
//! warning half of it, passes keep it, not-applicable checks do not count. 100 means every
//! applicable check passed; a subject with no applicable check scores 100.

use std::fmt::Write as _;

use rampart_event::{
    ComplianceFinding, ComplianceResource, ComplianceStatus, ResourceKind, Severity,
};
use serde::Serialize;

use crate::check::{weight, Outcome};
use crate::host::HostReport;

/// The findings of one subject.
#[derive(Debug, Clone, Serialize)]
pub struct Subject {
    /// The audited thing; daemon findings of a host subject name the daemon as their resource.
    pub resource: ComplianceResource,
    pub findings: Vec<ComplianceFinding>,
}

/// Counts of findings by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub pass: usize,
    pub fail: usize,
    pub warning: usize,
    pub not_applicable: usize,
}

impl Subject {
    /// A subject from outcomes: each outcome becomes a finding about `resource` (or, for
    /// outcomes of daemon checks, about `daemon` when given).
    pub fn new(
        resource: ComplianceResource,
        daemon: Option<&ComplianceResource>,
        outcomes: &[Outcome],
        time_ns: u64,
    ) -> Subject {
        let findings = outcomes
            .iter()
            .map(|o| {
                let r = match (o.def.subject, daemon) {
                    (ResourceKind::DockerDaemon, Some(d)) => d,
                    _ => &resource,
                };
                o.finding(r, time_ns)
            })
            .collect();
        Subject { resource, findings }
    }

    /// The score, 0 to 100 (see the module documentation).
    pub fn score(&self) -> u8 {
        let mut total = 0u32;
        let mut lost = 0u32;
        for f in &self.findings {
            let w = weight(f.severity) * 2;
            match f.status {
                ComplianceStatus::NotApplicable => continue,
                ComplianceStatus::Pass => {}
                ComplianceStatus::Warning => lost += w / 2,
                ComplianceStatus::Fail => lost += w,
            }
            total += w;
        }
        if total == 0 {
            return 100;
        }
        let kept = f64::from(total - lost) * 100.0 / f64::from(total);
        kept.round().clamp(0.0, 100.0) as u8
    }

    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for f in &self.findings {
            match f.status {
                ComplianceStatus::Pass => t.pass += 1,
                ComplianceStatus::Fail => t.fail += 1,
                ComplianceStatus::Warning => t.warning += 1,
                ComplianceStatus::NotApplicable => t.not_applicable += 1,
            }
        }
        t
    }

    /// The finding of check `id`, if the subject has one.
    pub fn finding(&self, id: &str) -> Option<&ComplianceFinding> {
        self.findings.iter().find(|f| f.check_id == id)
    }
}

/// The whole report of one `rampart audit` run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub subjects: Vec<Subject>,
    /// Host facts and the protections matrix, for `audit host`.
    pub host: Option<HostReport>,
    /// Things the audit could not do, said once (no Docker socket, securityfs mounted for the
    /// audit, ...).
    pub notes: Vec<String>,
}

/// How much to show in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// Failures and warnings with evidence and remediation; passes only counted.
    #[default]
    Problems,
    /// Every finding.
    All,
}

fn rank(f: &ComplianceFinding) -> (u8, std::cmp::Reverse<Severity>) {
    let s = match f.status {
        ComplianceStatus::Fail => 0,
        ComplianceStatus::Warning => 1,
        ComplianceStatus::Pass => 2,
        ComplianceStatus::NotApplicable => 3,
    };
    (s, std::cmp::Reverse(f.severity))
}

impl Report {
    /// True when some failed finding is at least as severe as `threshold` (`--fail-on`).
    pub fn fails_at(&self, threshold: Severity) -> bool {
        self.subjects.iter().any(|s| {
            s.findings
                .iter()
                .any(|f| f.status == ComplianceStatus::Fail && f.severity >= threshold)
        })
    }

    /// The table for a terminal.
    pub fn table(&self, detail: Detail) -> String {
        let mut out = String::new();
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        if let Some(h) = &self.host {
            out.push_str(&h.facts_table());
            out.push('\n');
        }
        for s in &self.subjects {
            let kind = match s.resource.kind {
                ResourceKind::Host => "Host",
                ResourceKind::DockerDaemon => "Docker daemon",
                ResourceKind::Container => "Container",
                ResourceKind::Image => "Image",
                _ => "Subject",
            };
            let t = s.tally();
            let _ = writeln!(
                out,
                "{kind} {}  score {}/100  ({} failed, {} warnings, {} passed, {} not applicable)",
                s.resource.name,
                s.score(),
                t.fail,
                t.warning,
                t.pass,
                t.not_applicable
            );
            let mut fs: Vec<&ComplianceFinding> = s.findings.iter().collect();
            fs.sort_by_key(|f| rank(f));
            for f in fs {
                let problem =
                    matches!(f.status, ComplianceStatus::Fail | ComplianceStatus::Warning);
                if !problem && detail == Detail::Problems {
                    continue;
                }
                let status = match f.status {
                    ComplianceStatus::Pass => "PASS",
                    ComplianceStatus::Fail => "FAIL",
                    ComplianceStatus::Warning => "WARN",
                    ComplianceStatus::NotApplicable => "N/A ",
                };
                let _ = writeln!(
                    out,
                    "  {status} {:<8} {:<22} {}",
                    f.severity.as_str(),
                    f.check_id,
                    f.title
                );
                let _ = writeln!(out, "       evidence: {}", f.evidence);
                if problem {
                    let _ = writeln!(out, "       fix:      {}", f.remediation);
                }
            }
            out.push('\n');
        }
        if let Some(h) = &self.host {
            out.push_str(&h.matrix_table());
        }
        out
    }

    /// The report as one JSON document: subjects with score, tally and OCSF findings; the host
    /// facts and protections matrix when present.
    pub fn json(&self) -> serde_json::Value {
        let subjects: Vec<serde_json::Value> = self
            .subjects
            .iter()
            .map(|s| {
                serde_json::json!({
                    "kind": s.resource.kind,
                    "name": s.resource.name,
                    "uid": s.resource.uid,
                    "score": s.score(),
                    "summary": s.tally(),
                    "findings": s.findings,
                })
            })
            .collect();
        let mut v = serde_json::json!({
            "rampart_version": rampart_event::VERSION,
            "standard": crate::check::CIS_STANDARD,
            "subjects": subjects,
            "notes": self.notes,
        });
        if let Some(h) = &self.host {
            v["host"] = h.json();
        }
        v
    }

    /// Every finding as one OCSF Compliance Finding JSON object per line, for the server.
    pub fn ocsf_lines(&self) -> String {
        let mut out = String::new();
        for s in &self.subjects {
            for f in &s.findings {
                if let Ok(line) = serde_json::to_string(f) {
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The report as a SARIF 2.1.0 log.
    pub fn sarif(&self) -> serde_json::Value {
        crate::sarif::render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{C_5_26, C_5_32, C_5_5, C_ROOT};

    fn resource() -> ComplianceResource {
        ComplianceResource {
            kind: ResourceKind::Container,
            uid: "id".into(),
            name: "web".into(),
        }
    }

    #[test]
    fn score_weighs_failures_by_severity() {
        let all_pass = Subject::new(
            resource(),
            None,
            &[C_5_5.pass("p"), C_5_32.pass("p"), C_ROOT.pass("p")],
            0,
        );
        assert_eq!(all_pass.score(), 100);
        // critical 10 + critical 10 + medium 3 = 23; the medium fails.
        let one_medium = Subject::new(
            resource(),
            None,
            &[C_5_5.pass("p"), C_5_32.pass("p"), C_ROOT.fail("root")],
            0,
        );
        assert_eq!(one_medium.score(), 87);
        let critical = Subject::new(
            resource(),
            None,
            &[C_5_5.fail("priv"), C_5_32.pass("p"), C_ROOT.pass("p")],
            0,
        );
        assert_eq!(critical.score(), 57);
        let warn = Subject::new(resource(), None, &[C_5_26.warn("?")], 0);
        assert_eq!(warn.score(), 50);
        let na = Subject::new(resource(), None, &[C_5_26.not_applicable("n/a")], 0);
        assert_eq!(na.score(), 100);
    }

    #[test]
    fn fail_on_compares_failed_severities() {
        let r = Report {
            subjects: vec![Subject::new(
                resource(),
                None,
                &[C_ROOT.fail("root"), C_5_5.pass("p")],
                0,
            )],
            ..Report::default()
        };
        assert!(r.fails_at(Severity::Medium));
        assert!(r.fails_at(Severity::Low));
        assert!(!r.fails_at(Severity::High));
    }

    #[test]
    fn table_shows_problems_with_fix_and_hides_passes() {
        let r = Report {
            subjects: vec![Subject::new(
                resource(),
                None,
                &[C_ROOT.fail("uid 0"), C_5_5.pass("not privileged")],
                0,
            )],
            ..Report::default()
        };
        let t = r.table(Detail::Problems);
        assert!(t.contains("FAIL medium   RAMPART-C-ROOT"), "{t}");
        assert!(t.contains("fix:      Run with --user"), "{t}");
        assert!(!t.contains("not privileged"), "{t}");
        assert!(r.table(Detail::All).contains("PASS critical 5.5"));
    }
}
