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
    /// The database used; `None` when vulnerabilities were not matched.
    pub db: Option<DbInfo>,
    /// Why vulnerabilities were not matched when `db` is `None` and they were wanted (no
    /// database at the path, a database of another schema): reports say so in words, so an
    /// empty list of vulnerabilities is never mistaken for a clean image.
    pub not_matched: Option<String>,
}

/// The database a scan matched against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbInfo {
    pub path: String,
    /// Changes whenever the content changes.
    pub revision: String,
    /// Unix seconds of the last complete update ([`crate::VulnDb::updated_at`]).
    pub updated_at: Option<i64>,
    /// Seconds since `updated_at` at scan time.
    pub age_secs: Option<i64>,
    /// Older than the staleness threshold (default [`crate::DEFAULT_STALE_AFTER`]).
    pub stale: bool,
}

impl DbInfo {
    /// "database 9 days old", and a warning when stale.
    pub fn describe(&self) -> String {
        match self.age_secs {
            Some(age) if self.stale => format!(
                "WARNING: vulnerability database {} days old ({}); run `rampart db update`",
                age / 86_400,
                self.path
            ),
            Some(age) => format!("database {} old", crate::describe_age(age)),
            None => format!(
                "database {} holds no data; run `rampart db update`",
                self.path
            ),
        }
    }
}

impl ScanReport {
    /// Marks the database stale when it is `max_age` old or older (or holds no data); returns
    /// whether it is.
    pub fn mark_stale(&mut self, max_age: std::time::Duration) -> bool {
        let Some(info) = self.db.as_mut() else {
            return false;
        };
        info.stale = info
            .age_secs
            .is_none_or(|age| age >= max_age.as_secs() as i64);
        info.stale
    }

    /// The most severe finding of any kind (vulnerability, secret, malware, configuration).
    pub fn worst_severity(&self) -> Option<Severity> {
        self.matches
            .findings
            .iter()
            .map(|f| f.severity)
            .chain(self.inventory.findings.iter().map(|f| f.severity))
            .max()
    }
}

/// The database a scan matches against, when it can: `Ok(Err(why))` when it is missing or of
/// another schema (the scan still runs and its report says vulnerabilities were not matched,
/// `why` in words), `Err` for any other failure to open it.
pub fn open_for_scan(
    path: &std::path::Path,
) -> Result<Result<crate::VulnDb, String>, crate::DbError> {
    use crate::DbError;
    match crate::VulnDb::open(path) {
        Ok(db) => Ok(Ok(db)),
        Err(DbError::Missing { path }) => Ok(Err(format!(
            "no vulnerability database at {}; run `rampart db update`",
            path.display()
        ))),
        Err(e @ DbError::Schema { .. }) => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
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
    database: Option<&'a DbInfo>,
    /// False when vulnerabilities were not matched (`not_matched` says why).
    vulnerabilities_matched: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_matched: Option<&'a str>,
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
        database: r.db.as_ref(),
        vulnerabilities_matched: r.db.is_some(),
        not_matched: r.not_matched.as_deref(),
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
