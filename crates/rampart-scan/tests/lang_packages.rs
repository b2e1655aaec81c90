//! Language packages in a real image built from real artefacts (pip-installed PyPI packages, an
//! npm project, a cargo-auditable Rust binary, a Go binary, Debian's log4j jar, a gemspec, a
//! composer.lock), the exact inventory and the exact findings against OSV records written here.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::collections::BTreeSet;

use rampart_event::PackageKind;
use rampart_scan::{match_inventory, ImageReader, Limits, NoProgress, Target, VulnDb};
use serde_json::json;
use support::fixtures;

#[test]
fn language_packages_of_a_real_image_are_exact() {
    testkit::require!(Docker);
    let tag = fixtures::lang_image();
    let inv = ImageReader::new(Limits::default())
        .read(&Target::Daemon(tag), &NoProgress)
        .unwrap();
    let site = "usr/local/lib/python3.11/site-packages";
    let go = format!("v{}", fixtures::go_version());
    let mut want: BTreeSet<(PackageKind, String, String, String)> = BTreeSet::new();
    let mut add = |k: PackageKind, n: &str, v: &str, p: &str| {
        want.insert((k, n.to_string(), v.to_string(), p.to_string()));
    };
    for (n, v) in fixtures::PYTHON_PINS {
        add(
            PackageKind::Pypi,
            n,
            v,
            &format!("{site}/{n}-{v}.dist-info/METADATA"),
        );
        add(PackageKind::Pypi, n, v, "app/requirements.txt");
    }
    for (n, v) in [("lodash", "4.17.20"), ("minimist", "1.2.0")] {
        add(PackageKind::Npm, n, v, "app/web/package-lock.json");
        add(
            PackageKind::Npm,
            n,
            v,
            &format!("app/web/node_modules/{n}/package.json"),
        );
    }
    add(
        PackageKind::Cargo,
        "smallvec",
        "1.6.0",
        "usr/local/bin/auditable-fixture",
    );
    add(PackageKind::Go, "stdlib", &go, "usr/local/bin/gofixture");
    add(
        PackageKind::Maven,
        "org.apache.logging.log4j:log4j-core",
        "2.19.0",
        "opt/lib/log4j-core-2.19.0.jar",
    );
    add(
        PackageKind::Gem,
        "rack",
        "2.2.4",
        "usr/local/bundle/specifications/rack-2.2.4.gemspec",
    );
    add(
        PackageKind::Composer,
        "guzzlehttp/guzzle",
        "7.4.0",
        "srv/php/composer.lock",
    );
    // Every place a package was found, as its primary location or one of its others.
    let got: BTreeSet<(PackageKind, String, String, String)> = inv
        .packages
        .iter()
        .flat_map(|p| {
            std::iter::once(p.path.clone())
                .chain(p.locations.iter().map(|l| l.path.clone()))
                .map(move |path| (p.kind, p.name.clone(), p.version.clone(), path))
        })
        .collect();
    assert_eq!(got, want);
    // One package found in several places is one package (issue 20 item 6): the Python pins
    // and the npm lock entries are locations of the installed packages.
    let distinct: BTreeSet<_> = want
        .iter()
        .map(|(k, n, v, _)| (*k, n.to_lowercase(), v))
        .collect();
    assert_eq!(inv.packages.len(), distinct.len(), "{:#?}", inv.packages);
    let lodash = inv.packages.iter().find(|p| p.name == "lodash").unwrap();
    assert_eq!(lodash.path, "app/web/node_modules/lodash/package.json");
    assert_eq!(lodash.locations[0].path, "app/web/package-lock.json");
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
    // Each package names the layer that holds its file: the layer of its COPY step.
    let layer_of = |path_prefix: &str| {
        let ids: BTreeSet<&str> = inv
            .packages
            .iter()
            .flat_map(|p| {
                std::iter::once((p.path.as_str(), p.layer.as_deref())).chain(
                    p.locations
                        .iter()
                        .map(|l| (l.path.as_str(), l.layer.as_deref())),
                )
            })
            .filter(|(path, _)| path.starts_with(path_prefix))
            .map(|(_, layer)| layer.unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "{path_prefix}");
        ids.into_iter().next().unwrap().to_string()
    };
    let layers: BTreeSet<String> = [
        "usr/local/lib",
        "app/requirements",
        "app/web",
        "usr/local/bin",
        "opt",
        "usr/local/bundle",
        "srv",
    ]
    .iter()
    .map(|p| layer_of(p))
    .collect();
    assert_eq!(layers.len(), 7, "one layer per COPY");
    let purls: Vec<&str> = inv
        .packages
        .iter()
        .filter(|p| p.name == "org.apache.logging.log4j:log4j-core" || p.name == "Jinja2")
        .map(|p| p.purl.as_str())
        .collect();
    assert!(purls.contains(&"pkg:maven/org.apache.logging.log4j/log4j-core@2.19.0"));
    assert!(purls.contains(&"pkg:pypi/jinja2@2.10"));

    // Findings against small OSV records, one per ecosystem, plus a second Jinja2 record that
    // is an alias of the first.
    let data = tempfile::tempdir().unwrap();
    let rec = |id: &str, eco: &str, name: &str, kind: &str, fixed: &str, aliases: &[&str]| {
        let r = json!({"id": id, "modified": "2024-01-01T00:00:00Z", "aliases": aliases,
            "affected": [{"package": {"ecosystem": eco, "name": name},
                "ranges": [{"type": kind, "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]});
        std::fs::write(data.path().join(format!("{id}.json")), r.to_string()).unwrap();
    };
    rec(
        "PYSEC-2019-217",
        "PyPI",
        "jinja2",
        "ECOSYSTEM",
        "2.10.1",
        &["CVE-2019-10906", "GHSA-462w-v97r-4m45"],
    );
    rec(
        "GHSA-462w-v97r-4m45",
        "PyPI",
        "Jinja2",
        "ECOSYSTEM",
        "2.10.1",
        &["CVE-2019-10906"],
    );
    rec(
        "GHSA-35jh-r3h4-6jhm",
        "npm",
        "lodash",
        "SEMVER",
        "4.17.21",
        &["CVE-2021-23337"],
    );
    rec(
        "RUSTSEC-2021-0003",
        "crates.io",
        "smallvec",
        "SEMVER",
        "1.6.1",
        &[],
    );
    rec("GO-2099-0001", "Go", "stdlib", "SEMVER", "1.99.0", &[]);
    rec(
        "GHSA-test-log4j",
        "Maven",
        "org.apache.logging.log4j:log4j-core",
        "ECOSYSTEM",
        "2.20.0",
        &[],
    );
    rec(
        "GHSA-test-rack",
        "RubyGems",
        "rack",
        "ECOSYSTEM",
        "2.2.6.4",
        &[],
    );
    rec(
        "GHSA-test-guzzle",
        "Packagist",
        "guzzlehttp/guzzle",
        "ECOSYSTEM",
        "7.4.5",
        &[],
    );
    // Not affecting the installed versions.
    rec(
        "GHSA-test-old-django",
        "PyPI",
        "django",
        "ECOSYSTEM",
        "1.11.29",
        &[],
    );
    let dbdir = tempfile::tempdir().unwrap();
    let mut db = VulnDb::open_or_create(&dbdir.path().join("v.db")).unwrap();
    db.import(data.path()).unwrap();
    let report = match_inventory(&db, &inv, 1).unwrap();
    let got: BTreeSet<(String, String, String, Option<String>)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.vulnerability_id.clone(),
                f.package.name.clone(),
                f.package.path.clone(),
                f.fixed_version.clone(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    let want: BTreeSet<(String, String, String, Option<String>)> = [
        (
            s("GHSA-462w-v97r-4m45"),
            s("Jinja2"),
            format!("{site}/Jinja2-2.10.dist-info/METADATA"),
            Some(s("2.10.1")),
        ),
        (
            s("GHSA-35jh-r3h4-6jhm"),
            s("lodash"),
            s("app/web/node_modules/lodash/package.json"),
            Some(s("4.17.21")),
        ),
        (
            s("RUSTSEC-2021-0003"),
            s("smallvec"),
            s("usr/local/bin/auditable-fixture"),
            Some(s("1.6.1")),
        ),
        (
            s("GO-2099-0001"),
            s("stdlib"),
            s("usr/local/bin/gofixture"),
            Some(s("1.99.0")),
        ),
        (
            s("GHSA-test-log4j"),
            s("org.apache.logging.log4j:log4j-core"),
            s("opt/lib/log4j-core-2.19.0.jar"),
            Some(s("2.20.0")),
        ),
        (
            s("GHSA-test-rack"),
            s("rack"),
            s("usr/local/bundle/specifications/rack-2.2.4.gemspec"),
            Some(s("2.2.6.4")),
        ),
        (
            s("GHSA-test-guzzle"),
            s("guzzlehttp/guzzle"),
            s("srv/php/composer.lock"),
            Some(s("7.4.5")),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        report.findings.len(),
        want.len(),
        "each vulnerability counted once"
    );
    let jinja = report
        .findings
        .iter()
        .find(|f| f.package.name == "Jinja2")
        .unwrap();
    assert_eq!(jinja.aliases, ["CVE-2019-10906", "PYSEC-2019-217"]);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}
