//! SARIF 2.1.0 rendering of a report.
//!
//! One run, tool `Rampart`, one rule per check id (title, remediation as help, the CIS
//! standard as a tag, `security-severity` for code-scanning UIs). Every finding is a result:
//! failures are `kind: fail` with a level from the severity (critical/high `error`, medium
//! `warning`, low `note`), warnings are `kind: review`, passes `kind: pass` and not-applicable
//! checks `kind: notApplicable`, both with level `none`. The audited subject is a logical
//! location (`container/web`, `host/vps1`); findings carry their stable uid as a partial
//! fingerprint so uploads de-duplicate.

use std::collections::BTreeMap;

use rampart_event::{ComplianceStatus, ResourceKind, Severity};
use serde_json::{json, Value};

use crate::check::CIS_STANDARD;
use crate::report::Report;

/// The schema URI the log declares.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low | Severity::Unknown => "3.0",
    }
}

fn kind_name(k: ResourceKind) -> &'static str {
    k.as_str()
}

pub(crate) fn render(report: &Report) -> Value {
    // Rules: one per check id, in first-seen order.
    let mut rule_index: BTreeMap<String, usize> = BTreeMap::new();
    let mut rules: Vec<Value> = Vec::new();
    let mut results: Vec<Value> = Vec::new();
    let mut scores = serde_json::Map::new();
    for subject in &report.subjects {
        scores.insert(
            format!(
                "{}/{}",
                kind_name(subject.resource.kind),
                subject.resource.name
            ),
            json!(subject.score()),
        );
        for f in &subject.findings {
            let index = *rule_index.entry(f.check_id.clone()).or_insert_with(|| {
                let mut tags = vec![json!("security"), json!("hardening")];
                if let Some(s) = &f.standard {
                    tags.push(json!(s));
                }
                rules.push(json!({
                    "id": f.check_id,
                    "name": rule_name(&f.title),
                    "shortDescription": {"text": f.title},
                    "fullDescription": {"text": f.title},
                    "help": {"text": f.remediation},
                    "defaultConfiguration": {"level": level(f.severity)},
                    "properties": {
                        "tags": tags,
                        "security-severity": security_severity(f.severity),
                    },
                }));
                rules.len() - 1
            });
            let (kind, lvl) = match f.status {
                ComplianceStatus::Fail => ("fail", level(f.severity)),
                ComplianceStatus::Warning => ("review", "warning"),
                ComplianceStatus::Pass => ("pass", "none"),
                ComplianceStatus::NotApplicable => ("notApplicable", "none"),
            };
            let subject_name = &subject.resource.name;
            results.push(json!({
                "ruleId": f.check_id,
                "ruleIndex": index,
                "kind": kind,
                "level": lvl,
                "message": {"text": format!("{} ({}): {}", f.title, f.resource.name, f.evidence)},
                "locations": [{
                    "logicalLocations": [{
                        "name": f.resource.name,
                        "fullyQualifiedName": format!("{}/{}", kind_name(subject.resource.kind), subject_name),
                        "kind": "resource",
                    }],
                }],
                "partialFingerprints": {"rampartFindingUid/v1": f.uid()},
                "properties": {
                    "status": f.status.as_str(),
                    "severity": f.severity.as_str(),
                    "remediation": f.remediation,
                    "resourceType": f.resource.kind.ocsf_type(),
                    "resourceUid": f.resource.uid,
                },
            }));
        }
    }
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "Rampart",
                    "version": rampart_event::VERSION,
                    "informationUri": "https://github.com/rampart-sec/rampart",
                    "rules": rules,
                    "properties": {"standard": CIS_STANDARD},
                },
            },
            "results": results,
            "properties": {"scores": scores},
        }],
    })
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

/// A PascalCase rule name from a title ("Ensure that privileged containers are not used" ->
/// "EnsureThatPrivilegedContainersAreNotUsed").
fn rule_name(title: &str) -> String {
    title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|c| c.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_pascal_case() {
        assert_eq!(
            rule_name("Ensure that privileged containers are not used"),
            "EnsureThatPrivilegedContainersAreNotUsed"
        );
        assert_eq!(
            rule_name("ptrace is restricted (x >= 1)"),
            "PtraceIsRestrictedX1"
        );
    }
}
