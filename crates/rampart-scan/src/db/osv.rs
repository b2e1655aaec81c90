//! The OSV record format (<https://ossf.github.io/osv-schema/>), the parts the scanner uses, and
//! the evaluation of its `affected` ranges.

use std::cmp::Ordering;

use rampart_event::Severity;
use serde::{Deserialize, Serialize};

use crate::version::{Scheme, VersionError};

/// One OSV record.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    #[serde(default)]
    pub modified: String,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Schema 1.7: the upstream vulnerabilities a downstream record (DEBIAN-CVE-...) follows.
    #[serde(default)]
    pub upstream: Vec<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub details: String,
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SeverityEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Reference {
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Package {
    #[serde(default)]
    pub ecosystem: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Affected {
    pub package: Option<Package>,
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// A range of affected versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// A range event. In OSV it is an object with one key (`{"introduced": "1.0"}`); going
/// through [`RawEvent`] reads that from JSON and YAML alike (serde_yaml would want a YAML tag
/// for an enum).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawEvent", into = "RawEvent")]
pub(crate) enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RawEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<String>,
}

impl TryFrom<RawEvent> for Event {
    type Error = String;

    fn try_from(r: RawEvent) -> Result<Event, String> {
        match (r.introduced, r.fixed, r.last_affected, r.limit) {
            (Some(v), None, None, None) => Ok(Event::Introduced(v)),
            (None, Some(v), None, None) => Ok(Event::Fixed(v)),
            (None, None, Some(v), None) => Ok(Event::LastAffected(v)),
            (None, None, None, Some(v)) => Ok(Event::Limit(v)),
            _ => {
                Err("an event needs exactly one of introduced, fixed, last_affected, limit".into())
            }
        }
    }
}

impl From<Event> for RawEvent {
    fn from(e: Event) -> RawEvent {
        let mut r = RawEvent::default();
        match e {
            Event::Introduced(v) => r.introduced = Some(v),
            Event::Fixed(v) => r.fixed = Some(v),
            Event::LastAffected(v) => r.last_affected = Some(v),
            Event::Limit(v) => r.limit = Some(v),
        }
        r
    }
}

impl Event {
    fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }

    /// Ties at one version: introduced, then last_affected, fixed, limit.
    fn rank(&self) -> u8 {
        match self {
            Event::Introduced(_) => 0,
            Event::LastAffected(_) => 1,
            Event::Fixed(_) => 2,
            Event::Limit(_) => 3,
        }
    }
}

/// What the scanner stores per affected package: the ranges it can evaluate and, when there is
/// no such range, the enumerated versions (osv.dev enumerates versions from the ranges, so
/// keeping both would only double the database).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredAffected {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// A severity given for this package only (Ubuntu's priority, a distro urgency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

impl StoredAffected {
    pub(crate) fn from_affected(a: &Affected) -> StoredAffected {
        let ranges: Vec<Range> = a
            .ranges
            .iter()
            .filter(|r| r.kind == "ECOSYSTEM" || r.kind == "SEMVER")
            .cloned()
            .collect();
        let versions = if ranges.is_empty() {
            a.versions.clone()
        } else {
            Vec::new()
        };
        let severity = a
            .severity
            .iter()
            .find_map(|s| severity_of_entry(s).map(|(sev, _)| sev))
            .or_else(|| label_severity(a.ecosystem_specific.as_ref()))
            .or_else(|| label_severity(a.database_specific.as_ref()));
        StoredAffected {
            ranges,
            versions,
            severity,
        }
    }
}

/// Whether `version` is affected, and the first fixed version above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub affected: bool,
    pub fixed: Option<String>,
}

/// Evaluates `a` for `version` in `scheme` (OSV's "evaluation" algorithm): affected when listed
/// in `versions` or inside any range; within a range events are swept in version order,
/// `introduced` opening, `fixed` closing at that version, `last_affected` closing just above
/// it; `limit` events bound the range from above. Invalid event versions are skipped.
pub(crate) fn evaluate(
    a: &StoredAffected,
    scheme: Scheme,
    version: &str,
) -> Result<Verdict, VersionError> {
    scheme.validate(version)?;
    if a.versions.iter().any(|v| v == version)
        || a.versions
            .iter()
            .any(|v| scheme.compare(v, version) == Ok(Ordering::Equal))
    {
        return Ok(Verdict {
            affected: true,
            fixed: None,
        });
    }
    let mut best: Option<Verdict> = None;
    for r in &a.ranges {
        let range_scheme = if r.kind == "SEMVER" {
            Scheme::Semver
        } else {
            scheme
        };
        let cmp = |x: &str, y: &str| -> Option<Ordering> {
            if x == "0" && y == "0" {
                return Some(Ordering::Equal);
            }
            if x == "0" {
                return Some(Ordering::Less);
            }
            if y == "0" {
                return Some(Ordering::Greater);
            }
            range_scheme.compare(x, y).ok()
        };
        // The package version may not parse in the SEMVER scheme of a range (`1.2`): skip it.
        if range_scheme != scheme && range_scheme.validate(version).is_err() {
            continue;
        }
        let mut events: Vec<&Event> = r
            .events
            .iter()
            .filter(|e| e.version() == "0" || range_scheme.validate(e.version()).is_ok())
            .collect();
        events.sort_by(|x, y| {
            cmp(x.version(), y.version())
                .unwrap_or(Ordering::Equal)
                .then(x.rank().cmp(&y.rank()))
        });
        let limits: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Limit(v) => Some(v.as_str()),
                _ => None,
            })
            .collect();
        if !limits.is_empty()
            && !limits
                .iter()
                .any(|l| cmp(version, l) == Some(Ordering::Less))
        {
            continue;
        }
        let mut vulnerable = false;
        for e in &events {
            let Some(o) = cmp(version, e.version()) else {
                continue;
            };
            match e {
                Event::Introduced(_) if o != Ordering::Less => vulnerable = true,
                Event::Fixed(_) if o != Ordering::Less => vulnerable = false,
                Event::LastAffected(_) if o == Ordering::Greater => vulnerable = false,
                _ => {}
            }
        }
        if vulnerable {
            let fixed = events.iter().find_map(|e| match e {
                Event::Fixed(f) if cmp(version, f) == Some(Ordering::Less) => Some(f.clone()),
                _ => None,
            });
            let v = Verdict {
                affected: true,
                fixed,
            };
            // A range with a known fix beats one without.
            if best
                .as_ref()
                .is_none_or(|b| b.fixed.is_none() && v.fixed.is_some())
            {
                best = Some(v);
            }
        }
    }
    Ok(best.unwrap_or(Verdict {
        affected: false,
        fixed: None,
    }))
}

/// A severity label in `ecosystem_specific` / `database_specific` (`severity`, `urgency`,
/// `priority`).
fn label_severity(v: Option<&serde_json::Value>) -> Option<Severity> {
    let v = v?;
    for key in ["severity", "urgency", "priority"] {
        if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
            if let Ok(sev) = s.parse::<Severity>() {
                if sev != Severity::Unknown {
                    return Some(sev);
                }
            }
        }
    }
    None
}

/// Severity and CVSS of one `severity[]` entry.
fn severity_of_entry(s: &SeverityEntry) -> Option<(Severity, Option<(f64, String)>)> {
    match s.kind.as_str() {
        "CVSS_V3" => {
            let score = cvss3_base_score(&s.score)?;
            Some((Severity::from_cvss(score), Some((score, s.score.clone()))))
        }
        // Ubuntu and others put a word in `score`.
        _ => s
            .score
            .parse::<Severity>()
            .ok()
            .filter(|s| *s != Severity::Unknown)
            .map(|sev| (sev, None)),
    }
}

/// The severity of a record: its CVSS v3 vector when it has one, else the database's label.
pub(crate) fn record_severity(r: &Record) -> (Severity, Option<f64>, Option<String>) {
    for s in &r.severity {
        if let Some((sev, cvss)) = severity_of_entry(s) {
            return match cvss {
                Some((score, vector)) => (sev, Some(score), Some(vector)),
                None => (sev, None, None),
            };
        }
    }
    let vector = r
        .severity
        .iter()
        .find(|s| s.kind.starts_with("CVSS"))
        .map(|s| s.score.clone());
    (
        label_severity(r.database_specific.as_ref()).unwrap_or_default(),
        None,
        vector,
    )
}

/// The CVSS v3.x base score of a vector (`CVSS:3.1/AV:N/AC:L/...`), with the 3.1 rounding.
pub(crate) fn cvss3_base_score(vector: &str) -> Option<f64> {
    let mut m = std::collections::HashMap::new();
    let mut parts = vector.split('/');
    if !parts.next()?.starts_with("CVSS:3") {
        return None;
    }
    for p in parts {
        let (k, v) = p.split_once(':')?;
        m.insert(k, v);
    }
    let scope_changed = *m.get("S")? == "C";
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, scope_changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        Some(match *m.get(k)? {
            "H" => 0.56,
            "L" => 0.22,
            "N" => 0.0,
            _ => return None,
        })
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if scope_changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    // CVSS 3.1 Roundup: avoids floating-point artefacts of a plain ceil.
    let int_input = (raw * 100_000.0).round() as i64;
    Some(if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affected(events: &[Event]) -> StoredAffected {
        StoredAffected {
            ranges: vec![Range {
                kind: "ECOSYSTEM".into(),
                events: events.to_vec(),
            }],
            ..StoredAffected::default()
        }
    }

    fn ev(a: &StoredAffected, s: Scheme, v: &str) -> Verdict {
        evaluate(a, s, v).expect("valid")
    }

    #[test]
    fn cvss_scores_match_the_calculator() {
        // Values from the FIRST CVSS v3.1 calculator.
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"),
            Some(7.8)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            Some(6.1)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:N"),
            Some(0.0)
        );
        assert_eq!(
            cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"),
            Some(10.0)
        );
        assert_eq!(cvss3_base_score("CVSS:2.0/AV:N"), None);
    }

    #[test]
    fn introduced_fixed() {
        let a = affected(&[
            Event::Introduced("0".into()),
            Event::Fixed("2.36-9+deb12u3".into()),
        ]);
        let v = ev(&a, Scheme::Dpkg, "2.36-9+deb12u1");
        assert!(v.affected);
        assert_eq!(v.fixed.as_deref(), Some("2.36-9+deb12u3"));
        assert!(!ev(&a, Scheme::Dpkg, "2.36-9+deb12u3").affected);
        assert!(
            !ev(&a, Scheme::Dpkg, "2.36-9+deb12u10").affected,
            "numeric, not string"
        );
        // A backported fix with an epoch bump is not vulnerable.
        assert!(!ev(&a, Scheme::Dpkg, "1:2.0-1").affected);
    }

    #[test]
    fn multiple_introduced_fixed_pairs() {
        let a = affected(&[
            Event::Introduced("1.0".into()),
            Event::Fixed("1.2".into()),
            Event::Introduced("2.0".into()),
            Event::Fixed("2.3".into()),
        ]);
        assert!(!ev(&a, Scheme::Pep440, "0.9").affected);
        assert_eq!(ev(&a, Scheme::Pep440, "1.1").fixed.as_deref(), Some("1.2"));
        assert!(!ev(&a, Scheme::Pep440, "1.5").affected);
        assert_eq!(
            ev(&a, Scheme::Pep440, "2.2.9").fixed.as_deref(),
            Some("2.3")
        );
        assert!(!ev(&a, Scheme::Pep440, "2.3").affected);
    }

    #[test]
    fn last_affected_and_limit() {
        let a = affected(&[
            Event::Introduced("0".into()),
            Event::LastAffected("1.4.2".into()),
        ]);
        let v = ev(&a, Scheme::Semver, "1.4.2");
        assert!(v.affected);
        assert_eq!(v.fixed, None);
        assert!(!ev(&a, Scheme::Semver, "1.4.3").affected);
        let l = affected(&[
            Event::Introduced("1.0.0".into()),
            Event::Limit("2.0.0".into()),
        ]);
        assert!(ev(&l, Scheme::Semver, "1.9.0").affected);
        assert!(!ev(&l, Scheme::Semver, "2.0.0").affected);
    }

    #[test]
    fn unfixed_and_enumerated_versions() {
        let a = affected(&[Event::Introduced("0".into())]);
        let v = ev(&a, Scheme::Dpkg, "5.0-1");
        assert!(v.affected && v.fixed.is_none());
        let e = StoredAffected {
            versions: vec!["1.0".into(), "1.1".into()],
            ..StoredAffected::default()
        };
        assert!(ev(&e, Scheme::Pep440, "1.1").affected);
        assert!(
            ev(&e, Scheme::Pep440, "1.1.0").affected,
            "equal in the scheme"
        );
        assert!(!ev(&e, Scheme::Pep440, "1.2").affected);
    }

    #[test]
    fn invalid_package_version_is_an_error() {
        let a = affected(&[Event::Introduced("0".into())]);
        assert!(evaluate(&a, Scheme::Pep440, "not a version").is_err());
    }
}
