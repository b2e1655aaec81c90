//! The vulnerability database and matching: OSV records written here (JSON, YAML, in
//! directories and zips) imported, re-imported incrementally, and matched against the Debian
//! test image and hand-made inventories, with the exact findings asserted.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::io::Write;
use std::path::Path;

use rampart_event::{Package, PackageKind, Severity};
use rampart_scan::{
    match_inventory, ImageInfo, ImageReader, Inventory, Limits, NoProgress, SourceKind, Target,
    VulnDb,
};
use serde_json::json;

fn write_json(dir: &Path, name: &str, v: &serde_json::Value) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn osv(id: &str, modified: &str, affected: serde_json::Value) -> serde_json::Value {
    json!({"schema_version": "1.6.0", "id": id, "modified": modified, "summary": format!("test record {id}"),
           "details": "A record written by rampart-scan's tests.", "affected": affected})
}

fn eco(ecosystem: &str, name: &str, events: serde_json::Value) -> serde_json::Value {
    json!([{"package": {"ecosystem": ecosystem, "name": name},
            "ranges": [{"type": "ECOSYSTEM", "events": events}]}])
}

/// Debian records against the versions in the locally built bookworm image (glibc
/// 2.36-9+deb12u*, zlib 1:1.2.13.dfsg-1, util-linux 2.38.1-5+deb12u*, bash 5.2.15-2+b*).
fn debian_records(dir: &Path) {
    let m = "2024-01-01T00:00:00Z";
    // Fixed in a version newer than any bookworm update: every libc6 is affected.
    write_json(
        dir,
        "DEBIAN-TEST-0001.json",
        &osv(
            "DEBIAN-TEST-0001",
            m,
            eco(
                "Debian:12",
                "glibc",
                json!([{"introduced": "0"}, {"fixed": "2.36-9+deb12u999"}]),
            ),
        ),
    );
    // Fixed by a backport the image already has: not a finding.
    write_json(
        dir,
        "DEBIAN-TEST-0002.json",
        &osv(
            "DEBIAN-TEST-0002",
            m,
            eco(
                "Debian:12",
                "glibc",
                json!([{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]),
            ),
        ),
    );
    // No fix published: reported as unfixed.
    write_json(
        dir,
        "DEBIAN-TEST-0003.json",
        &osv(
            "DEBIAN-TEST-0003",
            m,
            eco("Debian:12", "util-linux", json!([{"introduced": "0"}])),
        ),
    );
    // Epoch: upstream 1.3 without epoch is OLDER than 1:1.2.13: not a finding...
    write_json(
        dir,
        "DEBIAN-TEST-0004.json",
        &osv(
            "DEBIAN-TEST-0004",
            m,
            eco(
                "Debian:12",
                "zlib",
                json!([{"introduced": "0"}, {"fixed": "1.3-1"}]),
            ),
        ),
    );
    // ...while a fix with the epoch is newer: a finding.
    write_json(
        dir,
        "DEBIAN-TEST-0005.json",
        &osv(
            "DEBIAN-TEST-0005",
            m,
            eco(
                "Debian:12",
                "zlib",
                json!([{"introduced": "0"}, {"fixed": "1:1.2.13.dfsg-1+deb12u1"}]),
            ),
        ),
    );
    // Withdrawn: never a finding.
    let mut w = osv(
        "DEBIAN-TEST-0006",
        m,
        eco("Debian:12", "bash", json!([{"introduced": "0"}])),
    );
    w["withdrawn"] = json!("2024-02-01T00:00:00Z");
    write_json(dir, "DEBIAN-TEST-0006.json", &w);
    // Another release: not this image.
    write_json(
        dir,
        "DEBIAN-TEST-0007.json",
        &osv(
            "DEBIAN-TEST-0007",
            m,
            eco("Debian:11", "glibc", json!([{"introduced": "0"}])),
        ),
    );
    // The CVE the first record is about, with the severity the Debian record lacks.
    let mut cve = osv("CVE-2099-0001", m, json!([]));
    cve["severity"] =
        json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}]);
    write_json(dir, "CVE-2099-0001.json", &cve);
    let mut r1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("DEBIAN-TEST-0001.json")).unwrap()).unwrap();
    r1["upstream"] = json!(["CVE-2099-0001"]);
    write_json(dir, "DEBIAN-TEST-0001.json", &r1);
}

#[test]
fn debian_image_findings_are_exact() {
    testkit::require!(Docker);
    testkit::debian_image();
    let rootfs = testkit::cache_dir().join("debian-bookworm");
    let inv = ImageReader::new(Limits::default())
        .read(&Target::Rootfs(rootfs), &NoProgress)
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    debian_records(data.path());
    let dbdir = tempfile::tempdir().unwrap();
    let mut db = VulnDb::open_or_create(&dbdir.path().join("vuln.db")).unwrap();
    let stats = db.import(data.path()).unwrap();
    assert_eq!(
        (stats.files, stats.added, stats.errors.len()),
        (8, 8, 0),
        "{stats:?}"
    );
    let report = match_inventory(&db, &inv, 1).unwrap();
    let mut got: Vec<(String, String, String, Option<String>, Severity)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.vulnerability_id.clone(),
                f.package.name.clone(),
                f.package.advisory_name().to_string(),
                f.fixed_version.clone(),
                f.severity,
            )
        })
        .collect();
    got.sort();
    let util_linux_pkgs: Vec<&Package> = inv
        .packages
        .iter()
        .filter(|p| p.advisory_name() == "util-linux")
        .collect();
    assert!(
        util_linux_pkgs.len() >= 5,
        "bsdutils, libblkid1, libmount1, mount, util-linux..."
    );
    let mut want = vec![];
    for glibc in ["libc-bin", "libc6"] {
        want.push((
            "DEBIAN-TEST-0001".to_string(),
            glibc.to_string(),
            "glibc".to_string(),
            Some("2.36-9+deb12u999".to_string()),
            Severity::High,
        ));
    }
    for p in &util_linux_pkgs {
        want.push((
            "DEBIAN-TEST-0003".to_string(),
            p.name.clone(),
            "util-linux".to_string(),
            None,
            Severity::Unknown,
        ));
    }
    want.push((
        "DEBIAN-TEST-0005".to_string(),
        "zlib1g".to_string(),
        "zlib".to_string(),
        Some("1:1.2.13.dfsg-1+deb12u1".to_string()),
        Severity::Unknown,
    ));
    want.sort();
    assert_eq!(got, want);
    let libc = report
        .findings
        .iter()
        .find(|f| f.package.name == "libc6")
        .unwrap();
    assert_eq!(libc.aliases, ["CVE-2099-0001"]);
    assert_eq!(libc.cvss_score, Some(7.8));
    assert_eq!(libc.status(), "fixed");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The OCSF form names id, package, installed and fixed version.
    let v = serde_json::to_value(libc).unwrap();
    assert_eq!(v["vulnerabilities"][0]["cve"]["uid"], "CVE-2099-0001");
    assert_eq!(
        v["vulnerabilities"][0]["affected_packages"][0]["fixed_in_version"],
        "2.36-9+deb12u999"
    );
    assert_eq!(v["installed_version"], libc.package.version.as_str());
}

fn pkg(kind: PackageKind, eco: &str, name: &str, version: &str) -> Package {
    Package {
        kind,
        name: name.into(),
        version: version.into(),
        ecosystem: eco.into(),
        source_name: None,
        source_version: None,
        arch: None,
        licenses: vec![],
        purl: String::new(),
        path: "app/requirements.txt".into(),
        layer: None,
        locations: Vec::new(),
    }
}

fn inventory(packages: Vec<Package>) -> Inventory {
    Inventory {
        format: 1,
        scanner_version: "test".into(),
        image: ImageInfo {
            target: "test".into(),
            source: SourceKind::Rootfs,
            id: None,
            repo_tags: vec![],
            repo_digests: vec![],
            config: None,
            layers: vec![],
        },
        os: None,
        packages,
        findings: vec![],
        warnings: vec![],
    }
}

#[test]
fn aliases_merge_into_one_finding_across_formats() {
    let data = tempfile::tempdir().unwrap();
    // The PyPA advisory database's YAML...
    std::fs::create_dir_all(data.path().join("vulns/jinja2")).unwrap();
    std::fs::write(
        data.path().join("vulns/jinja2/PYSEC-2099-1.yaml"),
        "id: PYSEC-2099-1\nmodified: '2024-03-01T00:00:00Z'\naliases:\n- CVE-2099-1000\n- GHSA-aaaa-bbbb-cccc\nsummary: ''\ndetails: Sandbox escape.\naffected:\n- package:\n    name: Jinja2\n    ecosystem: PyPI\n  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: '0'\n    - fixed: 2.10.1\n",
    )
    .unwrap();
    // ...and GitHub's JSON record of the same vulnerability, fixed later on another branch.
    let mut ghsa = osv(
        "GHSA-aaaa-bbbb-cccc",
        "2024-03-02T00:00:00Z",
        json!([
        {"package": {"ecosystem": "PyPI", "name": "jinja2"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.11.3"}]}]}]),
    );
    ghsa["aliases"] = json!(["CVE-2099-1000"]);
    ghsa["database_specific"] = json!({"severity": "MODERATE"});
    write_json(data.path(), "ghsa/GHSA-aaaa-bbbb-cccc.json", &ghsa);
    let dbdir = tempfile::tempdir().unwrap();
    let mut db = VulnDb::open_or_create(&dbdir.path().join("v.db")).unwrap();
    let s = db.import(data.path()).unwrap();
    assert_eq!(s.added, 2, "{s:?}");
    let inv = inventory(vec![
        pkg(PackageKind::Pypi, "PyPI", "jinja2", "2.10"),
        pkg(PackageKind::Pypi, "PyPI", "Jinja2", "3.1.2"),
    ]);
    let r = match_inventory(&db, &inv, 1).unwrap();
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    let f = &r.findings[0];
    assert_eq!(f.vulnerability_id, "GHSA-aaaa-bbbb-cccc");
    assert_eq!(f.aliases, ["CVE-2099-1000", "PYSEC-2099-1"]);
    assert_eq!(
        f.fixed_version.as_deref(),
        Some("2.11.3"),
        "the highest fix fixes both"
    );
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.package.version, "2.10");
}

#[test]
fn semver_ranges_versions_last_affected_and_limit() {
    let data = tempfile::tempdir().unwrap();
    let m = "2024-01-01T00:00:00Z";
    write_json(
        data.path(),
        "a.json",
        &osv(
            "RUSTSEC-2099-0001",
            m,
            json!([
        {"package": {"ecosystem": "crates.io", "name": "smallvec"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "0.6.3"}, {"last_affected": "1.6.0"}]}]}]),
        ),
    );
    write_json(
        data.path(),
        "b.json",
        &osv(
            "GHSA-npm-0001",
            m,
            json!([
        {"package": {"ecosystem": "npm", "name": "lodash"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "4.0.0"}, {"fixed": "4.17.21"}, {"limit": "5.0.0"}]}]}]),
        ),
    );
    write_json(
        data.path(),
        "c.json",
        &osv(
            "GO-2099-0001",
            m,
            json!([
        {"package": {"ecosystem": "Go", "name": "golang.org/x/net"}, "versions": [],
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "0.17.0"}]}]}]),
        ),
    );
    write_json(
        data.path(),
        "d.json",
        &osv(
            "OSV-ENUM-0001",
            m,
            json!([
        {"package": {"ecosystem": "RubyGems", "name": "rack"}, "versions": ["2.2.3", "2.2.4"]}]),
        ),
    );
    write_json(
        data.path(),
        "e.json",
        &osv(
            "GHSA-maven-0001",
            m,
            json!([
        {"package": {"ecosystem": "Maven", "name": "org.apache.logging.log4j:log4j-core"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}]}]}]),
        ),
    );
    let dbdir = tempfile::tempdir().unwrap();
    let mut db = VulnDb::open_or_create(&dbdir.path().join("v.db")).unwrap();
    db.import(data.path()).unwrap();
    let inv = inventory(vec![
        pkg(PackageKind::Cargo, "crates.io", "smallvec", "1.6.0"),
        pkg(PackageKind::Cargo, "crates.io", "smallvec", "1.6.1"),
        pkg(PackageKind::Npm, "npm", "lodash", "4.17.20"),
        pkg(PackageKind::Npm, "npm", "lodash", "4.17.21"),
        pkg(PackageKind::Go, "Go", "golang.org/x/net", "v0.10.0"),
        pkg(PackageKind::Go, "Go", "golang.org/x/net", "v0.17.0"),
        pkg(PackageKind::Gem, "RubyGems", "rack", "2.2.4"),
        pkg(PackageKind::Gem, "RubyGems", "rack", "2.2.5"),
        pkg(
            PackageKind::Maven,
            "Maven",
            "org.apache.logging.log4j:log4j-core",
            "2.14.1",
        ),
        pkg(
            PackageKind::Maven,
            "Maven",
            "org.apache.logging.log4j:log4j-core",
            "2.17.1",
        ),
    ]);
    let r = match_inventory(&db, &inv, 1).unwrap();
    let mut got: Vec<(&str, &str, Option<&str>)> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.vulnerability_id.as_str(),
                f.package.version.as_str(),
                f.fixed_version.as_deref(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("GHSA-maven-0001", "2.14.1", Some("2.15.0")),
            ("GHSA-npm-0001", "4.17.20", Some("4.17.21")),
            ("GO-2099-0001", "v0.10.0", Some("0.17.0")),
            ("OSV-ENUM-0001", "2.2.4", None),
            ("RUSTSEC-2099-0001", "1.6.0", None),
        ]
    );
}

#[test]
fn unparsable_versions_are_warnings() {
    let data = tempfile::tempdir().unwrap();
    write_json(
        data.path(),
        "a.json",
        &osv(
            "PYSEC-2099-2",
            "2024-01-01T00:00:00Z",
            eco(
                "PyPI",
                "weird",
                json!([{"introduced": "0"}, {"fixed": "2.0"}]),
            ),
        ),
    );
    let dbdir = tempfile::tempdir().unwrap();
    let mut db = VulnDb::open_or_create(&dbdir.path().join("v.db")).unwrap();
    db.import(data.path()).unwrap();
    let r = match_inventory(
        &db,
        &inventory(vec![pkg(
            PackageKind::Pypi,
            "PyPI",
            "weird",
            "not-a-version",
        )]),
        1,
    )
    .unwrap();
    assert!(r.findings.is_empty());
    assert_eq!(r.warnings.len(), 1);
    assert!(
        r.warnings[0].message.contains("not-a-version"),
        "{:?}",
        r.warnings
    );
}

fn zip_of(dir: &Path, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        z.start_file(p.file_name().unwrap().to_string_lossy(), opts)
            .unwrap();
        z.write_all(&std::fs::read(&p).unwrap()).unwrap();
    }
    z.finish().unwrap();
}

#[test]
fn reimport_is_incremental_for_dirs_and_zips() {
    let data = tempfile::tempdir().unwrap();
    for i in 0..50 {
        write_json(
            data.path(),
            &format!("R-{i}.json"),
            &osv(
                &format!("R-{i}"),
                "2024-01-01T00:00:00Z",
                eco(
                    "npm",
                    &format!("pkg{i}"),
                    json!([{"introduced": "0"}, {"fixed": "1.0.0"}]),
                ),
            ),
        );
    }
    let dbdir = tempfile::tempdir().unwrap();
    let path = dbdir.path().join("v.db");
    let mut db = VulnDb::open_or_create(&path).unwrap();
    let first = db.import(data.path()).unwrap();
    assert_eq!((first.files, first.added, first.unchanged), (50, 50, 0));
    let again = db.import(data.path()).unwrap();
    assert_eq!(
        (again.unchanged, again.added, again.updated, again.removed),
        (50, 0, 0, 0)
    );
    // Change one, delete one, add one.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_json(
        data.path(),
        "R-1.json",
        &osv(
            "R-1",
            "2024-02-01T00:00:00Z",
            eco(
                "npm",
                "pkg1",
                json!([{"introduced": "0"}, {"fixed": "2.0.0"}]),
            ),
        ),
    );
    std::fs::remove_file(data.path().join("R-2.json")).unwrap();
    write_json(
        data.path(),
        "R-new.json",
        &osv(
            "R-new",
            "2024-02-01T00:00:00Z",
            eco("npm", "pkgnew", json!([{"introduced": "0"}])),
        ),
    );
    let third = db.import(data.path()).unwrap();
    assert_eq!(
        (third.unchanged, third.added, third.updated, third.removed),
        (48, 1, 1, 1),
        "{third:?}"
    );
    let r = match_inventory(
        &db,
        &inventory(vec![
            pkg(PackageKind::Npm, "npm", "pkg1", "1.5.0"),
            pkg(PackageKind::Npm, "npm", "pkg2", "0.1.0"),
            pkg(PackageKind::Npm, "npm", "pkgnew", "9.9.9"),
        ]),
        1,
    )
    .unwrap();
    let ids: Vec<&str> = r
        .findings
        .iter()
        .map(|f| f.vulnerability_id.as_str())
        .collect();
    assert_eq!(ids, ["R-1", "R-new"], "R-2 is gone with its file");
    // A zip of the same records: a second import decompresses nothing.
    let zip = dbdir.path().join("all.zip");
    zip_of(data.path(), &zip);
    let z1 = db.import(&zip).unwrap();
    assert_eq!(
        (z1.kind.as_str(), z1.files, z1.errors.len()),
        ("zip", 50, 0)
    );
    assert_eq!(
        z1.updated, 50,
        "same ids, same modified: refreshed from the zip"
    );
    let z2 = db.import(&zip).unwrap();
    assert_eq!((z2.unchanged, z2.added, z2.updated), (50, 0, 0));
    let status = db.status().unwrap();
    assert_eq!(status.records, 50);
    assert_eq!(status.sources.len(), 2);
    assert_eq!(status.ecosystems, [("npm".to_string(), 50)]);
    drop(db);
    // Read-only reopening sees the same.
    let ro = VulnDb::open(&path).unwrap();
    assert_eq!(ro.status().unwrap().records, 50);
}

#[test]
fn bad_records_are_reported_with_file_and_line_and_the_rest_imported() {
    let data = tempfile::tempdir().unwrap();
    write_json(
        data.path(),
        "ok.json",
        &osv(
            "OK-1",
            "2024-01-01T00:00:00Z",
            eco("npm", "x", json!([{"introduced": "0"}])),
        ),
    );
    std::fs::write(
        data.path().join("bad.json"),
        "{\n  \"id\": \"BAD-1\",\n  \"affected\": [oops]\n}\n",
    )
    .unwrap();
    let dbdir = tempfile::tempdir().unwrap();
    let mut db = VulnDb::open_or_create(&dbdir.path().join("v.db")).unwrap();
    let s = db.import(data.path()).unwrap();
    assert_eq!(s.added, 1);
    assert_eq!(s.errors.len(), 1);
    assert!(s.errors[0].contains("bad.json:3:"), "{:?}", s.errors);
}

#[test]
fn missing_database_is_a_clear_error() {
    let err = VulnDb::open(Path::new("/nonexistent/rampart/vuln.db")).unwrap_err();
    assert!(err.to_string().contains("rampart db import"), "{err}");
}
