//! Rendering a scan: a table for people, JSON (OCSF findings) for machines, SARIF for code
//! scanning dashboards, CycloneDX and SPDX for SBOM consumers.

use std::collections::BTreeMap;

use rampart_event::{Severity, VulnFinding};
use serde::Serialize;

use crate::analyze::Warning;
use crate::inventory::Inventory;
use crate::matcher::MatchReport;

mod sarif;
mod sbom;
mod table;

pub use sarif::render_sarif;
pub use sbom::{render_cyclonedx, render_spdx};
pub use table::render_table;

/// Everything a rendered report says about one scan.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub inventory: Inventory,
    pub matches: MatchReport,
    /// Where the inventory came from: read now, or the cache.
    pub cached: bool,
    /// The database used, and its revision.
    pub db: Option<(String, String)>,
}

/// Findings counted by severity, most severe first.
pub fn severity_counts(findings: &[VulnFinding]) -> BTreeMap<Severity, usize> {
    let mut m = BTreeMap::new();
    for f in findings {
        *m.entry(f.severity).or_insert(0) += 1;
    }
    m
}

#[derive(Serialize)]
struct JsonSummary {
    packages: usize,
    findings: usize,
    fixable: usize,
    by_severity: BTreeMap<&'static str, usize>,
    /// Secrets, malware, file modes, configuration and minimality findings.
    image_findings: usize,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    image: &'a crate::image::ImageInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<&'a crate::analyze::OsRelease>,
    cached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<serde_json::Value>,
    summary: JsonSummary,
    findings: &'a [VulnFinding],
    image_findings: &'a [crate::finding::Finding],
    packages: &'a [rampart_event::Package],
    warnings: Vec<&'a Warning>,
}

/// The JSON report: image, summary, vulnerabilities as OCSF Vulnerability Findings (`findings`),
/// secrets/malware/configuration findings (`image_findings`), the package inventory and
/// warnings.
pub fn render_json(r: &ScanReport) -> String {
    let by_severity = severity_counts(&r.matches.findings)
        .into_iter()
        .map(|(s, n)| (s.as_str(), n))
        .collect();
    let report = JsonReport {
        image: &r.inventory.image,
        os: r.inventory.os.as_ref(),
        cached: r.cached,
        database: r
            .db
            .as_ref()
            .map(|(p, rev)| serde_json::json!({"path": p, "revision": rev})),
        summary: JsonSummary {
            packages: r.inventory.packages.len(),
            findings: r.matches.findings.len(),
            fixable: r.matches.stats.fixable,
            by_severity,
            image_findings: r.inventory.findings.len(),
        },
        findings: &r.matches.findings,
        image_findings: &r.inventory.findings,
        packages: &r.inventory.packages,
        warnings: r
            .inventory
            .warnings
            .iter()
            .chain(&r.matches.warnings)
            .collect(),
    };
    serde_json::to_string_pretty(&report).unwrap_or_default()
}
