//! From layer scans to an [`Inventory`]: stack the layers into the merged tree, keep the
//! analysis results of the files that survive in it, and fill in what needs the whole image
//! (the OS decides the ecosystem of OS packages).

use std::collections::HashMap;

use crate::analyze::{OsRelease, Warning};
use crate::ecosystem::{lang_ecosystem, os_ecosystem};
use crate::finding::Finding;
use crate::inventory::{Inventory, INVENTORY_FORMAT};

use super::tree::{NodeKind, Tree, TreeError};
use super::{ImageError, Loaded};

/// A result of one file of one layer, placed in the tree.
struct Placed {
    layer: usize,
    /// Path in the layer's archive.
    origin: String,
    /// Path in the merged tree.
    path: String,
}

pub(crate) fn assemble(loaded: Loaded) -> Result<Inventory, ImageError> {
    let Loaded {
        info,
        mut scans,
        order,
    } = loaded;
    let mut tree = Tree::new();
    let mut placed: Vec<(Placed, usize, usize)> = Vec::new(); // (where, scan index, result index)
    let mut warnings = Vec::new();
    for (layer, &idx) in order.iter().enumerate() {
        let scan = &scans[idx];
        let moved = tree.apply(layer, &scan.changes).map_err(|e| match e {
            TreeError::HardLinkTarget { entry, target } => ImageError::HardLinkMissing {
                layer: info
                    .layers
                    .get(layer)
                    .map(|l| l.diff_id.clone())
                    .unwrap_or_else(|| format!("{}", layer + 1)),
                entry,
                target,
            },
        })?;
        for (ri, (path, _)) in scan.results.iter().enumerate() {
            let tree_path = moved.get(path).cloned().unwrap_or_else(|| path.clone());
            placed.push((
                Placed {
                    layer,
                    origin: path.clone(),
                    path: tree_path,
                },
                idx,
                ri,
            ));
        }
        for s in &scan.skipped {
            warnings.push(Warning {
                path: s.clone(),
                line: None,
                message: "larger than max_read_size; not inspected".into(),
            });
        }
    }
    // A result survives when the tree still holds that very file at that path.
    let alive = |p: &Placed| {
        tree.get(&p.path).is_some_and(|n| {
            n.layer == p.layer
                && n.origin == p.origin
                && !n.hard_link
                && matches!(n.kind, NodeKind::File { .. })
        })
    };
    let layer_id = |i: usize| {
        info.layers
            .get(i)
            .map(|l| l.diff_id.clone())
            .filter(|d| !d.is_empty())
    };
    let mut results = HashMap::new();
    let mut findings: Vec<Finding> = Vec::new();
    for (p, idx, ri) in placed {
        let r = std::mem::take(&mut scans[idx].results[ri].1);
        let live = alive(&p);
        // Content findings of every copy of a file count: a secret deleted by a later layer
        // still ships in the lower layer.
        for mut f in r.findings.iter().cloned() {
            f.path = Some(p.path.clone());
            f.layer = layer_id(p.layer);
            f.removed_in_later_layer = !live;
            findings.push(f);
        }
        if live {
            results.insert(p.path.clone(), (p, r));
        }
    }
    let os: Option<OsRelease> = crate::analyze::OS_RELEASE_PATHS
        .iter()
        .filter_map(|p| tree.resolve(p, true))
        .find_map(|p| results.get(&p).and_then(|(_, r)| r.os.clone()));
    let distro = os.as_ref().and_then(os_ecosystem);
    let mut packages = Vec::new();
    for (path, (p, r)) in results {
        for mut pkg in r.packages {
            pkg.path = path.clone();
            pkg.layer = layer_id(p.layer);
            pkg.ecosystem = if pkg.kind.is_os() {
                distro.clone().unwrap_or_default()
            } else {
                lang_ecosystem(pkg.kind).unwrap_or_default().to_string()
            };
            if pkg.kind.is_os() {
                pkg.purl = crate::purl::os_purl(&pkg, os.as_ref());
            }
            packages.push(pkg);
        }
        warnings.extend(r.warnings.into_iter().map(|mut w| {
            w.path = path.clone();
            w
        }));
    }
    if os.is_some() && distro.is_none() && packages.iter().any(|p| p.kind.is_os()) {
        warnings.push(Warning {
            path: "etc/os-release".into(),
            line: None,
            message: format!(
                "no vulnerability ecosystem known for {}; OS packages are listed but not matched",
                os.as_ref().map(|o| o.pretty_name.as_str()).unwrap_or("")
            ),
        });
    }
    packages.sort();
    packages.dedup();
    let packages = merge_locations(packages);
    findings.extend(crate::lint::config::check(
        info.config.as_ref(),
        &tree,
        &packages,
        &layer_id,
    ));
    // Secrets found in the environment and labels are masked in the config too, so no output
    // (report, cache, SBOM) repeats them.
    let mut info = info;
    if let Some(cfg) = info.config.as_mut() {
        for f in findings
            .iter()
            .filter(|f| f.kind == crate::finding::FindingKind::Config)
        {
            let Some((key, masked)) = f.evidence.as_deref().and_then(|e| e.split_once('=')) else {
                continue;
            };
            match f.rule.as_str() {
                "config/secret-env" => {
                    for e in cfg.config.env.iter_mut() {
                        if e.split_once('=').is_some_and(|(k, _)| k == key) {
                            *e = format!("{key}={masked}");
                        }
                    }
                }
                "config/secret-label" => {
                    if let Some(v) = cfg.config.labels.get_mut(key) {
                        *v = masked.to_string();
                    }
                }
                _ => {}
            }
        }
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.path.cmp(&b.path))
            .then_with(|| a.line.cmp(&b.line))
            .then_with(|| a.rule.cmp(&b.rule))
    });
    findings.dedup();
    warnings.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    Ok(Inventory {
        format: INVENTORY_FORMAT,
        scanner_version: env!("CARGO_PKG_VERSION").to_string(),
        image: info,
        os,
        packages,
        findings,
        warnings,
    })
}

/// Lock files and manifests: where a package is declared rather than installed.
fn is_declaration(path: &str) -> bool {
    let name = crate::analyze::path_name(path);
    matches!(
        name,
        "package-lock.json"
            | ".package-lock.json"
            | "npm-shrinkwrap.json"
            | "yarn.lock"
            | "pnpm-lock.yaml"
            | "poetry.lock"
            | "Pipfile.lock"
            | "Gemfile.lock"
            | "composer.lock"
            | "Cargo.lock"
            | "go.mod"
            | "go.sum"
    ) || (name.starts_with("requirements") && name.ends_with(".txt"))
}

/// One package found in several places (a lock file and the installed metadata, two copies of
/// one module) becomes one package with all its locations, so its vulnerabilities count once.
/// Language packages are the same package when ecosystem, name (as the ecosystem compares
/// names: PEP 503 for PyPI) and version are equal; OS packages come from one database and are
/// never merged. The primary location is installed metadata before a declaration, then the
/// first path; licences are merged. `packages` is sorted; so is the result.
pub(crate) fn merge_locations(
    packages: Vec<rampart_event::Package>,
) -> Vec<rampart_event::Package> {
    use std::collections::BTreeMap;
    #[allow(clippy::type_complexity, reason = "a local grouping key")]
    let mut groups: BTreeMap<(String, String, String, String), Vec<rampart_event::Package>> =
        BTreeMap::new();
    let mut out = Vec::with_capacity(packages.len());
    for p in packages {
        if p.kind.is_os() || p.ecosystem.is_empty() {
            out.push(p);
            continue;
        }
        let key = (
            p.kind.as_str().to_string(),
            p.ecosystem.clone(),
            crate::db::normalize_name(&p.ecosystem, &p.name),
            p.version.clone(),
        );
        groups.entry(key).or_default().push(p);
    }
    for (_, mut group) in groups {
        group.sort_by(|a, b| {
            (is_declaration(&a.path), &a.path, &a.layer).cmp(&(
                is_declaration(&b.path),
                &b.path,
                &b.layer,
            ))
        });
        let mut iter = group.into_iter();
        let Some(mut primary) = iter.next() else {
            continue;
        };
        for other in iter {
            for l in other.licenses {
                if !primary.licenses.contains(&l) {
                    primary.licenses.push(l);
                }
            }
            let loc = rampart_event::PackageLocation {
                path: other.path,
                layer: other.layer,
            };
            let is_primary = loc.path == primary.path && loc.layer == primary.layer;
            if !is_primary && !primary.locations.contains(&loc) {
                primary.locations.push(loc);
            }
        }
        out.push(primary);
    }
    out.sort();
    out
}
