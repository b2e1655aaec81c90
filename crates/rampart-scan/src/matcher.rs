//! Matching an inventory against the vulnerability database.
//!
//! * Each package is looked up by its OSV ecosystem and advisory name: OS packages by source
//!   package name (`libc6` -> `glibc`) and source version, so a distribution's backported fix
//!   (`2.36-9+deb12u3`) is compared with the distribution's fixed version, never with upstream
//!   releases; language packages by name (PyPI names normalised).
//! * Versions are compared with the ecosystem's own ordering ([`crate::version::Scheme`]); a
//!   version that does not parse is reported as a warning, not silently skipped.
//! * Records about the same vulnerability (ids linked by `aliases`, such as a PYSEC and a GHSA
//!   record of one CVE) become one finding: the id from a CVE record if there is one, else a GHSA,
//!   else the first; every other id in `aliases`; the highest severity; the highest fixed
//!   version among them (upgrading to it fixes all). Withdrawn records never match.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use rampart_event::{ImageRef, Package, Severity, VulnFinding};
use serde::Serialize;

use crate::analyze::Warning;
use crate::db::osv::{evaluate, StoredAffected};
use crate::db::{DbError, StoredVuln, VulnDb};
use crate::inventory::Inventory;
use crate::version::Scheme;

/// Findings of one inventory, and what could not be matched.
#[derive(Debug, Clone, Default)]
pub struct MatchReport {
    /// Sorted by severity (highest first), package, vulnerability id.
    pub findings: Vec<VulnFinding>,
    pub warnings: Vec<Warning>,
    /// Packages whose ecosystem has no advisories in the database or no known ordering.
    pub unmatched_packages: usize,
    pub stats: MatchStats,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MatchStats {
    pub packages: usize,
    pub vulnerable_packages: usize,
    pub findings: usize,
    pub fixable: usize,
}

fn rank(id: &str) -> u8 {
    if id.starts_with("CVE-") {
        0
    } else if id.starts_with("GHSA-") {
        1
    } else {
        2
    }
}

struct Hit {
    id: String,
    fixed: Option<String>,
    severity: Option<Severity>,
}

/// Matches every package of `inv` against `db`.
pub fn match_inventory(db: &VulnDb, inv: &Inventory, time_ns: u64) -> Result<MatchReport, DbError> {
    let image = ImageRef {
        name: inv.image.target.clone(),
        id: inv.image.id.clone(),
    };
    let mut report = MatchReport::default();
    let mut advisories: HashMap<(String, String), Vec<(String, StoredAffected)>> = HashMap::new();
    let mut vulns: HashMap<String, Option<StoredVuln>> = HashMap::new();
    let mut warned_ecosystems = BTreeSet::new();
    for pkg in &inv.packages {
        report.stats.packages += 1;
        if pkg.ecosystem.is_empty() {
            report.unmatched_packages += 1;
            continue;
        }
        let Some(scheme) = Scheme::for_ecosystem(&pkg.ecosystem) else {
            report.unmatched_packages += 1;
            if warned_ecosystems.insert(pkg.ecosystem.clone()) {
                report.warnings.push(Warning {
                    path: pkg.path.clone(),
                    line: None,
                    message: format!(
                        "no version ordering for ecosystem {}; its packages are not matched",
                        pkg.ecosystem
                    ),
                });
            }
            continue;
        };
        let name = pkg.advisory_name().to_string();
        let version = if pkg.kind.is_os() {
            pkg.source_version.as_deref().unwrap_or(&pkg.version)
        } else {
            &pkg.version
        };
        let key = (pkg.ecosystem.clone(), name.clone());
        if !advisories.contains_key(&key) {
            let found = db.advisories(&pkg.ecosystem, &name)?;
            advisories.insert(key.clone(), found);
        }
        let mut hits: Vec<Hit> = Vec::new();
        for (id, affected) in advisories.get(&key).map(Vec::as_slice).unwrap_or_default() {
            match evaluate(affected, scheme, version) {
                Ok(v) if v.affected => {
                    if let Some(h) = hits.iter_mut().find(|h| h.id == *id) {
                        if h.fixed.is_none() {
                            h.fixed = v.fixed;
                        }
                    } else {
                        hits.push(Hit {
                            id: id.clone(),
                            fixed: v.fixed,
                            severity: affected.severity,
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    report.warnings.push(Warning {
                        path: pkg.path.clone(),
                        line: None,
                        message: format!("{} {}: {e}; not matched", pkg.name, pkg.version),
                    });
                    break;
                }
            }
        }
        if hits.is_empty() {
            continue;
        }
        report.stats.vulnerable_packages += 1;
        for id in hits.iter().map(|h| h.id.clone()) {
            if let std::collections::hash_map::Entry::Vacant(e) = vulns.entry(id) {
                let v = db.vuln(e.key())?;
                e.insert(v);
            }
        }
        for group in group_by_alias(&hits, &vulns) {
            let finding = merge(
                db,
                &group,
                &vulns,
                pkg,
                scheme,
                &image,
                time_ns,
                &mut report,
            )?;
            report.findings.push(finding);
        }
    }
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.package.name.cmp(&b.package.name))
            .then_with(|| a.package.path.cmp(&b.package.path))
            .then_with(|| a.vulnerability_id.cmp(&b.vulnerability_id))
    });
    report.stats.findings = report.findings.len();
    report.stats.fixable = report
        .findings
        .iter()
        .filter(|f| f.fixed_version.is_some())
        .count();
    Ok(report)
}

/// Matches a stored package list (an agent's `inventory.image`) against `db`, as
/// [`match_inventory`] would match the image it came from.
pub fn match_packages(
    db: &VulnDb,
    image: &str,
    image_id: &str,
    packages: &[Package],
    time_ns: u64,
) -> Result<MatchReport, DbError> {
    let inv = Inventory {
        format: crate::inventory::INVENTORY_FORMAT,
        scanner_version: env!("CARGO_PKG_VERSION").to_string(),
        image: crate::image::ImageInfo {
            target: image.to_string(),
            source: crate::image::SourceKind::Daemon,
            id: (!image_id.is_empty()).then(|| image_id.to_string()),
            repo_tags: Vec::new(),
            repo_digests: Vec::new(),
            config: None,
            layers: Vec::new(),
        },
        os: None,
        packages: packages.to_vec(),
        findings: Vec::new(),
        warnings: Vec::new(),
    };
    match_inventory(db, &inv, time_ns)
}

/// Groups hits whose records share an id or alias (union-find over the hits).
fn group_by_alias<'a>(
    hits: &'a [Hit],
    vulns: &HashMap<String, Option<StoredVuln>>,
) -> Vec<Vec<&'a Hit>> {
    let names: Vec<BTreeSet<&str>> = hits
        .iter()
        .map(|h| {
            let mut s = BTreeSet::from([h.id.as_str()]);
            if let Some(Some(v)) = vulns.get(&h.id) {
                s.extend(v.aliases.iter().map(String::as_str));
            }
            s
        })
        .collect();
    let mut parent: Vec<usize> = (0..hits.len()).collect();
    fn find(p: &mut [usize], i: usize) -> usize {
        let mut r = i;
        while p[r] != r {
            r = p[r];
        }
        p[i] = r;
        r
    }
    for i in 0..hits.len() {
        for j in i + 1..hits.len() {
            if !names[i].is_disjoint(&names[j]) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[b] = a;
            }
        }
    }
    let mut groups: Vec<Vec<&Hit>> = Vec::new();
    let mut index: HashMap<usize, usize> = HashMap::new();
    for (i, h) in hits.iter().enumerate() {
        let root = find(&mut parent, i);
        let g = *index.entry(root).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(h);
    }
    groups
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; the pieces of one finding"
)]
fn merge(
    db: &VulnDb,
    group: &[&Hit],
    vulns: &HashMap<String, Option<StoredVuln>>,
    pkg: &Package,
    scheme: Scheme,
    image: &ImageRef,
    time_ns: u64,
    report: &mut MatchReport,
) -> Result<VulnFinding, DbError> {
    let mut ids: Vec<&str> = group.iter().map(|h| h.id.as_str()).collect();
    ids.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    let primary = ids[0].to_string();
    let records: Vec<&StoredVuln> = group
        .iter()
        .filter_map(|h| vulns.get(&h.id).and_then(Option::as_ref))
        .collect();
    let mut aliases: BTreeSet<String> = BTreeSet::new();
    for r in &records {
        aliases.insert(r.id.clone());
        aliases.extend(r.aliases.iter().cloned());
        aliases.extend(r.upstream.iter().cloned());
    }
    aliases.remove(&primary);
    let mut severity = group
        .iter()
        .filter_map(|h| h.severity)
        .chain(records.iter().map(|r| r.severity))
        .max()
        .unwrap_or_default();
    let best_cvss = records
        .iter()
        .filter_map(|r| r.cvss_score.map(|s| (s, r.cvss_vector.clone())))
        .max_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    let (mut cvss_score, mut cvss_vector) = match best_cvss {
        Some((s, v)) => (Some(s), v),
        None => (None, None),
    };
    if severity == Severity::Unknown {
        // Distribution records often carry no severity; the CVE or GHSA record they name may.
        for alias in &aliases {
            if let Some(v) = db.vuln(alias)? {
                if v.severity > severity {
                    severity = v.severity;
                }
                if cvss_score.is_none() && v.cvss_score.is_some() {
                    cvss_score = v.cvss_score;
                    cvss_vector = v.cvss_vector.clone();
                }
            }
        }
    }
    let mut fixed: Option<String> = None;
    for f in group.iter().filter_map(|h| h.fixed.as_deref()) {
        fixed = match fixed {
            None => Some(f.to_string()),
            Some(cur) => match scheme.compare(f, &cur) {
                Ok(Ordering::Greater) => Some(f.to_string()),
                Ok(_) => Some(cur),
                Err(e) => {
                    report.warnings.push(Warning {
                        path: pkg.path.clone(),
                        line: None,
                        message: format!("{primary}: {e}"),
                    });
                    Some(cur)
                }
            },
        };
    }
    let main = records
        .iter()
        .find(|r| r.id == primary)
        .or_else(|| records.first());
    let summary = main
        .map(|r| r.summary.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            records
                .iter()
                .map(|r| r.summary.clone())
                .find(|s| !s.is_empty())
        })
        .unwrap_or_default();
    let mut references: Vec<String> = records
        .iter()
        .flat_map(|r| r.references.iter().cloned())
        .collect();
    references.sort();
    references.dedup();
    Ok(VulnFinding {
        vulnerability_id: primary,
        aliases: aliases.into_iter().collect(),
        summary,
        details: main.map(|r| r.details.clone()).unwrap_or_default(),
        severity,
        cvss_score,
        cvss_vector,
        package: pkg.clone(),
        fixed_version: fixed,
        references,
        image: image.clone(),
        time_ns,
    })
}
