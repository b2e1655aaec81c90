//! SARIF 2.1.0 (<https://docs.oasis-open.org/sarif/sarif/v2.1.0/>): one rule per vulnerability
//! id, one result per finding located at the package's file; `security-severity` carries the
//! CVSS score (or a score for the severity) so GitHub code scanning ranks them.

use std::collections::BTreeMap;

use rampart_event::Severity;
use serde_json::{json, Value};

use super::ScanReport;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

fn score(s: Severity, cvss: Option<f64>) -> String {
    let v = cvss.unwrap_or(match s {
        Severity::Critical => 9.5,
        Severity::High => 8.0,
        Severity::Medium => 5.5,
        Severity::Low => 2.0,
        Severity::Unknown => 0.0,
    });
    format!("{v:.1}")
}

/// Renders the findings of `r` as a SARIF log.
pub fn render_sarif(r: &ScanReport) -> String {
    let mut rules: BTreeMap<&str, Value> = BTreeMap::new();
    let mut results = Vec::new();
    for f in &r.matches.findings {
        rules.entry(f.vulnerability_id.as_str()).or_insert_with(|| {
            let mut rule = json!({
                "id": f.vulnerability_id,
                "name": f.vulnerability_id,
                "shortDescription": {"text": if f.summary.is_empty() { f.vulnerability_id.clone() } else { f.summary.clone() }},
                "fullDescription": {"text": if f.details.is_empty() { f.summary.clone() } else { f.details.clone() }},
                "defaultConfiguration": {"level": level(f.severity)},
                "properties": {
                    "security-severity": score(f.severity, f.cvss_score),
                    "tags": ["security", "vulnerability", f.severity.as_str()],
                    "aliases": f.aliases,
                },
            });
            if let Some(u) = f.references.first() {
                rule["helpUri"] = json!(u);
            }
            rule
        });
        let fix = f
            .fixed_version
            .as_deref()
            .map(|v| format!("; fixed in {v}"))
            .unwrap_or_else(|| "; no fix published".into());
        results.push(json!({
            "ruleId": f.vulnerability_id,
            "level": level(f.severity),
            "message": {"text": format!("{} {} {} is affected by {} ({}){fix}",
                f.package.kind, f.package.name, f.package.version, f.vulnerability_id, f.severity)},
            // Every file the package was found in (one package, one result).
            "locations": std::iter::once(&f.package.path)
                .chain(f.package.locations.iter().map(|l| &l.path))
                .map(|uri| json!({
                    "physicalLocation": {"artifactLocation": {"uri": uri}},
                    "logicalLocations": [{"name": format!("{}@{}", f.package.name, f.package.version), "kind": "package"}],
                }))
                .collect::<Vec<_>>(),
            "partialFingerprints": {"rampart/v1": f.uid()},
            "properties": {
                "package": f.package.name,
                "installedVersion": f.package.version,
                "fixedVersion": f.fixed_version,
                "purl": f.package.purl,
                "image": r.inventory.image.target,
            },
        }));
    }
    for f in &r.inventory.findings {
        rules.entry(f.rule.as_str()).or_insert_with(|| {
            json!({
                "id": f.rule,
                "name": f.rule,
                "shortDescription": {"text": f.title},
                "defaultConfiguration": {"level": level(f.severity)},
                "properties": {
                    "security-severity": score(f.severity, None),
                    "tags": ["security", f.kind.as_str(), f.severity.as_str()],
                },
            })
        });
        let mut location = json!({});
        if let Some(p) = &f.path {
            location = json!({"physicalLocation": {"artifactLocation": {"uri": p}}});
            if let Some(l) = f.line {
                location["physicalLocation"]["region"] = json!({"startLine": l});
            }
        }
        let mut text = f.title.clone();
        if let Some(e) = &f.evidence {
            text.push_str(&format!(": {e}"));
        }
        if f.removed_in_later_layer {
            text.push_str(" (deleted by a later layer, still in the image)");
        }
        let mut result = json!({
            "ruleId": f.rule,
            "level": level(f.severity),
            "message": {"text": text},
            "properties": {"kind": f.kind.as_str(), "layer": f.layer, "image": r.inventory.image.target},
        });
        if f.path.is_some() {
            result["locations"] = json!([location]);
        }
        results.push(result);
    }
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "rampart",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/rampart-sec/rampart",
                "rules": rules.into_values().collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&log).unwrap_or_default()
}
