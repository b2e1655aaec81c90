//! `rampart db update` and scans without a database, end to end: the binary against a mirror
//! of osv.dev's export bucket on loopback serving real OSV records.
#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "../../rampart-scan/tests/support/osv_server.rs"]
mod osv_server;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use osv_server::{fixtures, zip_dir, Behaviour, OsvServer};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .env_remove("RAMPART_DB")
        .env_remove("RAMPART_SCAN_CACHE")
        .env_remove("RAMPART_OSV_URL")
        .env_remove("RAMPART_OSV_ECOSYSTEMS")
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

fn status(db: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["db", "status", "--db", db, "--format", "json"])).unwrap()
}

/// A root filesystem with a Node app (lodash 4.17.20 locked) and a leaked AWS key.
fn app_rootfs(root: &Path) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(
        root.join("app/package-lock.json"),
        r#"{"name":"app","lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/lodash":{"version":"4.17.20"}}}"#,
    )
    .unwrap();
    std::fs::write(
        root.join("app/config.yaml"),
        "aws_access_key_id: AKIAQ3EGRBVN5L7XWZ6P\naws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    )
    .unwrap();
}

#[test]
fn update_status_and_scan_report_the_database_age() {
    let srv = OsvServer::start();
    srv.put_zip("npm", zip_dir(&fixtures("npm")), "n1");
    srv.put_zip("PyPI", zip_dir(&fixtures("PyPI")), "p1");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/vuln.db");
    let db = db.to_str().unwrap();
    let out = ok(&[
        "db",
        "update",
        "--db",
        db,
        "--base-url",
        &srv.base,
        "--ecosystem",
        "npm,PyPI",
    ]);
    assert!(
        out.contains("npm: updated") && out.contains("new database in place"),
        "{out}"
    );
    let out = ok(&[
        "db",
        "update",
        "--db",
        db,
        "--base-url",
        &srv.base,
        "--ecosystem",
        "npm",
        "--ecosystem",
        "PyPI",
    ]);
    assert!(
        out.contains("npm: unchanged") && out.contains("database unchanged"),
        "{out}"
    );
    let s = status(db);
    assert_eq!(s["records"], 10);
    assert!(s["age_secs"].as_i64().unwrap() < 120, "{s}");
    let text = ok(&["db", "status", "--db", db]);
    assert!(
        text.contains("updated ") && text.contains("FEEDS"),
        "{text}"
    );

    let root = tmp.path().join("rootfs");
    app_rootfs(&root);
    let target = format!("dir:{}", root.display());
    let out = ok(&["image", "scan", &target, "--db", db, "--no-cache"]);
    assert!(
        out.contains("GHSA-35jh-r3h4-6jhm") || out.contains("CVE-2021-23337"),
        "{out}"
    );
    assert!(out.contains("database ") && out.contains(" old"), "{out}");
    // Past the threshold the scan warns (on stderr and in the report).
    let o = rampart(&[
        "image",
        "scan",
        &target,
        "--db",
        db,
        "--no-cache",
        "--max-db-age",
        "0s",
    ]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("WARNING: vulnerability database 0 days old"),
        "{err}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &rampart(&[
            "image",
            "scan",
            &target,
            "--db",
            db,
            "--no-cache",
            "--format",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(json["vulnerabilities_matched"], true);
    assert!(json["database"]["age_secs"].as_i64().unwrap() < 120);
    assert_eq!(json["database"]["stale"], false);

    // A failed ecosystem exits 1 and names it; the database stays as it was.
    srv.put_zip("npm", b"not a zip".to_vec(), "n2");
    let o = rampart(&[
        "db",
        "update",
        "--db",
        db,
        "--base-url",
        &srv.base,
        "--ecosystem",
        "npm",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("npm: FAILED, previous data kept"), "{out}");
    assert_eq!(status(db)["records"], 10);
}

/// `rampart db update` killed (SIGKILL) in the middle of a download: the old database is
/// still there and usable, and the next update cleans up and succeeds.
#[test]
fn an_update_killed_midway_leaves_the_old_database_in_service() {
    let srv = OsvServer::start();
    srv.put_zip("npm", zip_dir(&fixtures("npm")), "n1");
    let tmp = tempfile::tempdir().unwrap();
    let db_path = tmp.path().join("vuln.db");
    let db = db_path.to_str().unwrap();
    ok(&[
        "db",
        "update",
        "--db",
        db,
        "--base-url",
        &srv.base,
        "--ecosystem",
        "npm",
    ]);
    // The next export is big enough to be caught mid-way, and the mirror stalls half-way.
    let mut big = vec![];
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixtures("npm")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    for i in 0..300 {
        let rec = serde_json::json!({"schema_version": "1.6.0", "id": format!("GHSA-test-{i:04}"),
            "modified": "2026-12-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "npm", "name": format!("pkg{i}")},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.0"}]}]}]});
        std::fs::write(
            dir.path().join(format!("GHSA-test-{i:04}.json")),
            rec.to_string(),
        )
        .unwrap();
    }
    big.extend(zip_dir(dir.path()));
    srv.put_zip("npm", big, "n2");
    srv.set_behaviour("/npm/all.zip", Behaviour::HangMidBody);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "db",
            "update",
            "--db",
            db,
            "--base-url",
            &srv.base,
            "--ecosystem",
            "npm",
        ])
        .args(["--read-timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = tmp.path().join(".vuln.db.update-0.zip");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::metadata(&part).is_ok_and(|m| m.len() > 0) {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Not yet reaped: the pid is still this child's.
    child.kill().unwrap();
    child.wait().unwrap();
    // The old database answers, whole.
    let s = status(db);
    assert_eq!(s["records"], 6, "{s}");
    assert_eq!(s["feeds"][0]["etag"], "\"n1\"");
    // The next update removes the leftovers and installs the new export.
    srv.set_behaviour("/npm/all.zip", Behaviour::Normal);
    ok(&[
        "db",
        "update",
        "--db",
        db,
        "--base-url",
        &srv.base,
        "--ecosystem",
        "npm",
    ]);
    assert_eq!(status(db)["records"], 306);
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".vuln.db.update"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_scan_without_a_database_still_reports_and_says_vulnerabilities_were_not_matched() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rootfs");
    app_rootfs(&root);
    let target = format!("dir:{}", root.display());
    let missing = tmp.path().join("none/vuln.db");
    let missing = missing.to_str().unwrap();
    let o = rampart(&["image", "scan", &target, "--db", missing, "--no-cache"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("VULNERABILITIES NOT MATCHED"), "{out}");
    assert!(out.contains("rampart db update"), "{out}");
    // The inventory and the secret are still reported.
    assert!(out.contains("AKIA"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("vulnerabilities not matched"));
    let json: serde_json::Value = serde_json::from_slice(
        &rampart(&[
            "image",
            "scan",
            &target,
            "--db",
            missing,
            "--no-cache",
            "--format",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(json["vulnerabilities_matched"], false);
    assert!(json["not_matched"]
        .as_str()
        .unwrap()
        .contains("no vulnerability database"));
    assert!(json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "lodash"));
    assert!(!json["image_findings"].as_array().unwrap().is_empty());
    // Only --fail-on makes it fail: 3 for the secret found, 4 when nothing found reaches the
    // threshold but vulnerabilities could not be checked.
    let o = rampart(&[
        "image",
        "scan",
        &target,
        "--db",
        missing,
        "--no-cache",
        "--fail-on",
        "low",
    ]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    std::fs::remove_file(root.join("app/config.yaml")).unwrap();
    let o = rampart(&[
        "image",
        "scan",
        &target,
        "--db",
        missing,
        "--no-cache",
        "--fail-on",
        "critical",
    ]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let o = rampart(&["image", "scan", &target, "--db", missing, "--no-cache"]);
    assert_eq!(o.status.code(), Some(0));
}
