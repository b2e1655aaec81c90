//! `rampart db` and `rampart image scan` end to end: the binary, a database imported from OSV
//! records written here, the locally built Debian image.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;
use std::process::{Command, Output};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .env_remove("RAMPART_DB")
        .env_remove("RAMPART_SCAN_CACHE")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = rampart(args);
    assert!(
        out.status.success(),
        "rampart {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn records(dir: &Path) {
    let glibc = serde_json::json!({
        "id": "DEBIAN-CLI-0001", "modified": "2024-01-01T00:00:00Z", "summary": "glibc: test",
        "upstream": ["CVE-2099-0002"],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u999"}]}]}]});
    let cve = serde_json::json!({
        "id": "CVE-2099-0002", "modified": "2024-01-01T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]});
    std::fs::write(dir.join("a.json"), glibc.to_string()).unwrap();
    std::fs::write(dir.join("b.json"), cve.to_string()).unwrap();
}

#[test]
fn db_import_status_and_scan_with_fail_on_and_cache() {
    testkit::require!(Docker);
    let image = testkit::debian_image();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("osv");
    std::fs::create_dir(&data).unwrap();
    records(&data);
    let db = tmp.path().join("db/vuln.db");
    let db = db.to_str().unwrap();
    let cache = tmp.path().join("cache");
    let cache = cache.to_str().unwrap();
    let out = ok(&["db", "import", data.to_str().unwrap(), "--db", db]);
    assert!(out.contains("2 added"), "{out}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["db", "status", "--db", db, "--format", "json"])).unwrap();
    assert_eq!(status["records"], 2);
    assert_eq!(status["sources"][0]["records"], 2);

    let scan = |extra: &[&str]| {
        let mut args = vec![
            "image",
            "scan",
            image.as_str(),
            "--db",
            db,
            "--cache-dir",
            cache,
        ];
        args.extend_from_slice(extra);
        rampart(&args)
    };
    let out = scan(&["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cached"], false);
    let findings = report["findings"].as_array().unwrap();
    let mut pkgs: Vec<&str> = findings
        .iter()
        .map(|f| f["package"]["name"].as_str().unwrap())
        .collect();
    pkgs.sort();
    assert_eq!(pkgs, ["libc-bin", "libc6"]);
    for f in findings {
        assert_eq!(f["vulnerability_id"], "DEBIAN-CLI-0001");
        assert_eq!(
            f["severity"], "critical",
            "from the upstream CVE's CVSS 9.8"
        );
        assert_eq!(f["fixed_version"], "2.36-9+deb12u999");
        assert!(f["installed_version"]
            .as_str()
            .unwrap()
            .starts_with("2.36-9+deb12u"));
        assert_eq!(f["class_uid"], 2002);
    }
    assert_eq!(report["summary"]["by_severity"]["critical"], 2);

    // A second scan of the unchanged image comes from the cache, with the same findings.
    let again: serde_json::Value =
        serde_json::from_slice(&scan(&["--format", "json"]).stdout).unwrap();
    assert_eq!(again["cached"], true);
    assert_eq!(again["findings"].as_array().unwrap().len(), 2);

    // --fail-on: critical findings fail `critical`, not when filtered out.
    assert_eq!(scan(&["--fail-on", "critical"]).status.code(), Some(3));
    assert_eq!(scan(&["--fail-on", "high"]).status.code(), Some(3));
    let table = scan(&[]);
    assert_eq!(table.status.code(), Some(0));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("DEBIAN-CLI-0001") && text.contains("CRITICAL"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour on a pipe");
    assert!(
        table.stderr.is_empty(),
        "no progress bar on a pipe: {:?}",
        String::from_utf8_lossy(&table.stderr)
    );

    // A database update is picked up without re-reading layers: the fix is now out.
    let fixed = serde_json::json!({
        "id": "DEBIAN-CLI-0001", "modified": "2024-02-01T00:00:00Z", "summary": "glibc: test",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u1"}]}]}]});
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(data.join("a.json"), fixed.to_string()).unwrap();
    ok(&["db", "import", data.to_str().unwrap(), "--db", db]);
    let after: serde_json::Value =
        serde_json::from_slice(&scan(&["--format", "json", "--fail-on", "low"]).stdout).unwrap();
    assert_eq!(after["cached"], true);
    assert_eq!(after["findings"].as_array().unwrap().len(), 0);
    // --fail-on also counts the image's own findings: this image runs as root (high).
    let root = after["image_findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "config/root-user")
        .unwrap();
    assert_eq!(root["severity"], "high");
    assert_eq!(scan(&["--fail-on", "high"]).status.code(), Some(3));
    assert_eq!(scan(&["--fail-on", "critical"]).status.code(), Some(0));
}

#[test]
fn dockerfile_lint_reports_lines_and_fails_on() {
    let tmp = tempfile::tempdir().unwrap();
    let df = tmp.path().join("Dockerfile");
    std::fs::write(
        &df,
        "FROM debian:12\nENV API_TOKEN=abcdef1234567890\nRUN apt-get update && apt-get install -y curl\n",
    )
    .unwrap();
    let out = rampart(&[
        "dockerfile",
        "lint",
        df.to_str().unwrap(),
        "--fail-on",
        "critical",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let p = df.display().to_string();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{p}:1 MEDIUM DF001"))),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{p}:2 CRITICAL DF010")) && l.contains("abcd")),
        "{text}"
    );
    assert!(!text.contains("abcdef1234567890"), "masked");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{p}:3 MEDIUM DF007"))),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{p}:3 HIGH DF003")))
            || lines
                .iter()
                .any(|l| l.starts_with(&format!("{p}:1 HIGH DF003"))),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "dockerfile",
        "lint",
        df.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert!(json.as_array().unwrap().len() >= 4);
}

#[test]
fn sbom_formats_need_no_database() {
    testkit::require!(Docker);
    let image = testkit::debian_image();
    let tmp = tempfile::tempdir().unwrap();
    let cdx: serde_json::Value = serde_json::from_str(&ok(&[
        "image",
        "scan",
        &image,
        "--format",
        "cyclonedx",
        "--db",
        "/nonexistent.db",
        "--no-cache",
    ]))
    .unwrap();
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert!(cdx["components"].as_array().unwrap().len() > 70);
    let out = tmp.path().join("sbom.spdx.json");
    ok(&[
        "image",
        "scan",
        &image,
        "--format",
        "spdx",
        "--no-cache",
        "-o",
        out.to_str().unwrap(),
    ]);
    let spdx: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("none.db");
    let out = rampart(&["db", "status", "--db", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rampart db import"));
    // A tarball with a path traversal is refused (exit 2) and names the entry.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o644);
    h.as_old_mut().name[..10].copy_from_slice(b"../../evil");
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let mut outer = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_path(name).unwrap();
        h.set_cksum();
        outer.append(&h, data).unwrap();
    };
    add("l/layer.tar", &layer);
    add(
        "c.json",
        br#"{"rootfs":{"type":"layers","diff_ids":["sha256:00"]}}"#,
    );
    add(
        "manifest.json",
        br#"[{"Config":"c.json","Layers":["l/layer.tar"]}]"#,
    );
    let archive = tmp.path().join("evil.tar");
    std::fs::write(&archive, outer.into_inner().unwrap()).unwrap();
    let out = rampart(&[
        "image",
        "scan",
        archive.to_str().unwrap(),
        "--skip-db",
        "--no-cache",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("path traversal") && err.contains("../../evil"),
        "{err}"
    );
}
