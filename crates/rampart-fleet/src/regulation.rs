//! Notification regimes: the `regulations/*.yaml` files shipped with Rampart.
//!
//! # File format
//! One regime per file:
//!
//! ```yaml
//! regime: eu-gdpr                      # unique id
//! name: EU GDPR, Articles 33 and 34
//! jurisdictions: [eu, de, fr]           # region tags it covers (see below)
//! trigger:
//!   personal_data_breach: true          # true: only incidents flagged as personal-data breaches
//!   requires_role: nis2-entity          # optional: only when the operator declared this role
//!   min_priority: critical              # optional: only incidents at least this severe
//!   description: ...
//! authority: ...
//! citation: {text: ..., url: https://...}
//! deadlines:
//!   - id: authority
//!     name: Notification to the supervisory authority
//!     article: Art. 33(1)
//!     within: 72
//!     clock: hours                      # hours | calendar_days | business_days | months | without_undue_delay
//!     from: awareness                   # awareness | determination | <id of an earlier deadline>
//!     when: malicious                   # optional: malicious | not_malicious | serious | not_serious
//!     requires_role: cn-ciio            # optional, as in trigger
//!     to: supervisory authority
//!     facts: [what the notification must contain, ...]
//! log_retention: {days: 180, article: ..., description: ...}   # or months: 6
//! notes: uncertainties and what Rampart does not model
//! ```
//!
//! A host's region tag (given at enrollment: `eu-de`, `us-ca`, `sg`) is in a regime's
//! jurisdiction when it equals one of the regime's `jurisdictions` or starts with one followed by
//! `-` (`eu-de` is in `eu`; `us-ca` is in `us-ca` but not in `ca`).
//!
//! Every error names the file and, where known, the line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rampart_event::Priority;
use serde::{Deserialize, Serialize};

use crate::deadline::Clock;

/// A regulation file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegulationError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `line` is 1-based; 0 when unknown.
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// When a regime applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// True: only incidents flagged as personal-data breaches. False: any incident (subject to
    /// `requires_role` and `min_priority`).
    pub personal_data_breach: bool,
    /// Only when the operator declared this role (`nis2-entity`, `cn-ciio`, `hk-ci-operator`).
    #[serde(default)]
    pub requires_role: Option<String>,
    /// Only incidents whose most severe alert is at least this severe (`critical`).
    #[serde(default)]
    pub min_priority: Option<String>,
    pub description: String,
}

/// The source text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    pub text: String,
    pub url: String,
}

/// A condition on the incident for one deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// The incident was caused by an attack (every incident Rampart's detections raise, unless
    /// marked otherwise).
    Malicious,
    NotMalicious,
    /// Critical priority or worse.
    Serious,
    NotSerious,
}

/// One notification duty of a regime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlineRule {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub article: Option<String>,
    /// The amount of `clock` units; absent for `without_undue_delay`.
    #[serde(default)]
    pub within: Option<u32>,
    pub clock: Clock,
    /// `awareness`, `determination` or the id of an earlier deadline of the same regime.
    #[serde(default = "awareness")]
    pub from: String,
    #[serde(default)]
    pub when: Option<When>,
    #[serde(default)]
    pub requires_role: Option<String>,
    pub to: String,
    #[serde(default)]
    pub citation_url: Option<String>,
    #[serde(default)]
    pub facts: Vec<String>,
}

fn awareness() -> String {
    "awareness".into()
}

/// A minimum log-retention period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRetention {
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub months: Option<u32>,
    #[serde(default)]
    pub article: Option<String>,
    pub description: String,
}

impl LogRetention {
    /// The minimum in days; a month counts as 31 days rounded down over the span (six months
    /// = 184 days, the longest six consecutive months), so a policy that passes holds whatever
    /// the start date.
    pub fn min_days(&self) -> u32 {
        let from_months = self.months.map_or(0, |m| (m * 184).div_ceil(6));
        self.days.unwrap_or(0).max(from_months)
    }
}

/// One regime (one file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regulation {
    pub regime: String,
    pub name: String,
    pub jurisdictions: Vec<String>,
    pub trigger: Trigger,
    pub authority: String,
    pub citation: Citation,
    #[serde(default)]
    pub deadlines: Vec<DeadlineRule>,
    #[serde(default)]
    pub log_retention: Option<LogRetention>,
    #[serde(default)]
    pub notes: Option<String>,
    /// The file it was loaded from.
    #[serde(skip)]
    pub source: String,
}

impl Regulation {
    /// True when the region tag `region` is in this regime's jurisdiction.
    pub fn covers(&self, region: &str) -> bool {
        let region = region.trim().to_ascii_lowercase();
        self.jurisdictions.iter().any(|j| {
            let j = j.to_ascii_lowercase();
            region == j
                || (region.len() > j.len()
                    && region.starts_with(&j)
                    && region.as_bytes()[j.len()] == b'-')
        })
    }

    /// The minimum priority of the trigger, parsed (validated at load time).
    pub fn min_priority(&self) -> Option<Priority> {
        self.trigger
            .min_priority
            .as_deref()
            .and_then(|p| p.parse().ok())
    }
}

/// The 1-based line of the first line containing `needle` (0 when none does).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

/// Parses and validates one regime from `text` (named `path` in errors).
pub fn parse_regulation(path: &Path, text: &str) -> Result<Regulation, RegulationError> {
    let invalid = |line: usize, message: String| RegulationError::Invalid {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut r: Regulation = serde_yaml::from_str(text).map_err(|e| {
        invalid(
            e.location().map_or(0, |l| l.line()),
            e.to_string()
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string(),
        )
    })?;
    r.source = path.display().to_string();
    let valid_id = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
    };
    if !valid_id(&r.regime) {
        return Err(invalid(
            line_of(text, "regime:"),
            format!(
                "regime {:?}: lower-case letters, digits, '-', '_' and '.' only",
                r.regime
            ),
        ));
    }
    if r.jurisdictions.is_empty() {
        return Err(invalid(
            line_of(text, "jurisdictions:"),
            "jurisdictions: at least one region tag".into(),
        ));
    }
    if !(r.citation.url.starts_with("https://") || r.citation.url.starts_with("http://")) {
        return Err(invalid(
            line_of(text, "url:"),
            format!(
                "citation.url {:?}: the URL of the official text",
                r.citation.url
            ),
        ));
    }
    if let Some(p) = &r.trigger.min_priority {
        if p.parse::<Priority>().is_err() {
            return Err(invalid(
                line_of(text, "min_priority:"),
                format!("trigger.min_priority {p:?}: not a priority"),
            ));
        }
    }
    if r.deadlines.is_empty() && r.log_retention.is_none() {
        return Err(invalid(
            0,
            "neither deadlines nor log_retention: the regime would do nothing".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for d in &r.deadlines {
        let line = line_of(text, &format!("id: {}", d.id));
        if !valid_id(&d.id) {
            return Err(invalid(line, format!("deadline id {:?}: invalid", d.id)));
        }
        if !seen.insert(d.id.clone()) {
            return Err(invalid(line, format!("deadline {:?} given twice", d.id)));
        }
        match (d.clock, d.within) {
            (Clock::WithoutUndueDelay, Some(_)) => {
                return Err(invalid(
                    line,
                    format!(
                        "deadline {:?}: clock without_undue_delay takes no `within`",
                        d.id
                    ),
                ))
            }
            (Clock::WithoutUndueDelay, None) => {}
            (_, None) | (_, Some(0)) => {
                return Err(invalid(
                    line,
                    format!(
                        "deadline {:?}: clock {} needs `within` (a positive number)",
                        d.id,
                        d.clock.as_str()
                    ),
                ))
            }
            _ => {}
        }
        // `from` names an anchor or an earlier deadline (so there are no cycles).
        if d.from != "awareness" && d.from != "determination" && !seen.contains(&d.from) {
            return Err(invalid(
                line,
                format!(
                    "deadline {:?}: from {:?} is neither awareness, determination nor an earlier deadline of this regime",
                    d.id, d.from
                ),
            ));
        }
        if d.from == d.id {
            return Err(invalid(
                line,
                format!("deadline {:?} counts from itself", d.id),
            ));
        }
    }
    if let Some(lr) = &r.log_retention {
        if lr.min_days() == 0 {
            return Err(invalid(
                line_of(text, "log_retention:"),
                "log_retention: give days or months".into(),
            ));
        }
    }
    Ok(r)
}

/// The regimes of one directory (`*.yaml`, `*.yml`), sorted by regime id. Regime ids must be
/// unique across the files.
pub fn load_dir(dir: &Path) -> Result<Vec<Regulation>, RegulationError> {
    let read = |p: &Path, source| RegulationError::Read {
        path: p.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out: Vec<Regulation> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| read(&f, e))?;
        let r = parse_regulation(&f, &text)?;
        if let Some(other) = out.iter().find(|o| o.regime == r.regime) {
            return Err(RegulationError::Invalid {
                line: line_of(&text, "regime:"),
                path: f,
                message: format!("regime {:?} is also defined in {}", r.regime, other.source),
            });
        }
        out.push(r);
    }
    out.sort_by(|a, b| a.regime.cmp(&b.regime));
    Ok(out)
}

/// The regulations shipped with Rampart (the repository's `regulations/` directory, compiled in).
pub fn builtin() -> Result<Vec<Regulation>, RegulationError> {
    let mut out = Vec::new();
    for (name, text) in BUILTIN {
        out.push(parse_regulation(Path::new(name), text)?);
    }
    out.sort_by(|a, b| a.regime.cmp(&b.regime));
    Ok(out)
}

/// The shipped files, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "regulations/au-ndb.yaml",
        include_str!("../../../regulations/au-ndb.yaml"),
    ),
    (
        "regulations/br-lgpd.yaml",
        include_str!("../../../regulations/br-lgpd.yaml"),
    ),
    (
        "regulations/cn-csl.yaml",
        include_str!("../../../regulations/cn-csl.yaml"),
    ),
    (
        "regulations/cn-incident-reporting.yaml",
        include_str!("../../../regulations/cn-incident-reporting.yaml"),
    ),
    (
        "regulations/cn-pipl.yaml",
        include_str!("../../../regulations/cn-pipl.yaml"),
    ),
    (
        "regulations/gdpr.yaml",
        include_str!("../../../regulations/gdpr.yaml"),
    ),
    (
        "regulations/hk-cap653.yaml",
        include_str!("../../../regulations/hk-cap653.yaml"),
    ),
    (
        "regulations/in-cert-in.yaml",
        include_str!("../../../regulations/in-cert-in.yaml"),
    ),
    (
        "regulations/jp-appi.yaml",
        include_str!("../../../regulations/jp-appi.yaml"),
    ),
    (
        "regulations/nis2.yaml",
        include_str!("../../../regulations/nis2.yaml"),
    ),
    (
        "regulations/sg-pdpa.yaml",
        include_str!("../../../regulations/sg-pdpa.yaml"),
    ),
    (
        "regulations/uk-gdpr.yaml",
        include_str!("../../../regulations/uk-gdpr.yaml"),
    ),
    (
        "regulations/us-ca-1798-82.yaml",
        include_str!("../../../regulations/us-ca-1798-82.yaml"),
    ),
];

/// A retention policy shorter than a regime's minimum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionShortfall {
    pub region: String,
    pub policy_days: u32,
    pub regime: String,
    pub min_days: u32,
    pub citation: String,
}

/// Checks retention policies (region tag, days kept; `None` = kept forever) against every
/// regime covering the region: each policy shorter than a regime's log-retention minimum is
/// reported.
pub fn check_retention(
    regulations: &[Regulation],
    policies: &[(String, Option<u32>)],
) -> Vec<RetentionShortfall> {
    let mut out = Vec::new();
    for (region, days) in policies {
        let Some(days) = days else { continue };
        for r in regulations {
            let Some(lr) = &r.log_retention else { continue };
            if r.covers(region) && *days < lr.min_days() {
                out.push(RetentionShortfall {
                    region: region.clone(),
                    policy_days: *days,
                    regime: r.regime.clone(),
                    min_days: lr.min_days(),
                    citation: format!(
                        "{}{}",
                        r.citation.text,
                        lr.article
                            .as_deref()
                            .map(|a| format!(", {a}"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
    }
    out
}
