//! `db update` against a mirror of osv.dev's export bucket on loopback serving real OSV records
//! (tests/data/osv) as `<ecosystem>/all.zip`: conditional requests, verification, atomic swap,
//! and what a hostile or broken mirror can and cannot do to the database.
#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/osv_server.rs"]
mod osv_server;

use std::path::Path;
use std::time::Duration;

use osv_server::{fixtures, zip_dir, zip_of, Behaviour, OsvServer};
use rampart_scan::{update_db, UpdateOptions, UpdateOutcome, UpdateReport, VulnDb};

fn opts(base: &str, ecos: &[&str]) -> UpdateOptions {
    UpdateOptions {
        base_url: base.to_string(),
        ecosystems: ecos.iter().map(|e| e.to_string()).collect(),
        read_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        download_timeout: Duration::from_secs(20),
        ..UpdateOptions::default()
    }
}

fn outcome(r: &UpdateReport, eco: &str) -> UpdateOutcome {
    r.ecosystems
        .iter()
        .find(|e| e.ecosystem == eco)
        .unwrap()
        .outcome
}

fn error(r: &UpdateReport, eco: &str) -> String {
    r.ecosystems
        .iter()
        .find(|e| e.ecosystem == eco)
        .unwrap()
        .error
        .clone()
        .unwrap_or_default()
}

fn has(db: &Path, id: &str) -> bool {
    VulnDb::open(db).unwrap().vuln(id).unwrap().is_some()
}

fn records(db: &Path) -> u64 {
    VulnDb::open(db).unwrap().status().unwrap().records
}

/// The PyPI fixtures plus one more record: the mirror's next version of the export.
fn pypi_v2() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixtures("PyPI")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let extra = serde_json::json!({
        "schema_version": "1.6.0", "id": "GHSA-9wx4-h78v-vm56", "modified": "2024-06-10T21:50:00Z",
        "published": "2024-05-20T20:15:00Z", "aliases": ["CVE-2024-35195"],
        "summary": "Requests `Session` object does not verify requests after making first request with verify=False",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "requests", "purl": "pkg:pypi/requests"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.32.0"}]}]}],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:H/I:H/A:N"}]
    });
    std::fs::write(
        dir.path().join("GHSA-9wx4-h78v-vm56.json"),
        serde_json::to_vec_pretty(&extra).unwrap(),
    )
    .unwrap();
    zip_dir(dir.path())
}

#[test]
fn first_update_imports_every_record_and_the_second_is_a_304() {
    let srv = OsvServer::start();
    srv.put_zip("PyPI", zip_dir(&fixtures("PyPI")), "p1");
    srv.put_zip("npm", zip_dir(&fixtures("npm")), "n1");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    let r = update_db(&db, &opts(&srv.base, &["PyPI", "npm"])).unwrap();
    assert_eq!(r.failed(), 0, "{r:?}");
    assert!(r.swapped);
    assert_eq!(outcome(&r, "PyPI"), UpdateOutcome::Updated);
    let py = r.ecosystems.iter().find(|e| e.ecosystem == "PyPI").unwrap();
    assert_eq!(py.records, 4);
    assert_eq!(records(&db), 4 + 6);
    assert!(has(&db, "GHSA-35jh-r3h4-6jhm") && has(&db, "PYSEC-2023-74"));
    let status = VulnDb::open(&db).unwrap().status().unwrap();
    assert!(status.age_secs.unwrap() < 60, "{status:?}");
    assert_eq!(status.feeds.len(), 2);
    let py = status.feeds.iter().find(|f| f.ecosystem == "PyPI").unwrap();
    assert_eq!(py.etag.as_deref(), Some("\"p1\""));
    // Sources are recorded under their URL.
    assert!(status
        .sources
        .iter()
        .any(|s| s.path == format!("{}/npm/all.zip", srv.base)));

    srv.clear_log();
    let r2 = update_db(&db, &opts(&srv.base, &["PyPI", "npm"])).unwrap();
    assert_eq!(r2.failed(), 0, "{r2:?}");
    assert!(!r2.swapped, "nothing changed, the file is kept");
    assert_eq!(outcome(&r2, "PyPI"), UpdateOutcome::Unchanged);
    assert_eq!(outcome(&r2, "npm"), UpdateOutcome::Unchanged);
    let log = srv.log();
    assert_eq!(log.len(), 2);
    for req in &log {
        assert_eq!(req.status, 304);
        assert!(req.headers.contains_key("if-none-match"), "{req:?}");
        assert_eq!(
            req.headers.get("if-modified-since").map(String::as_str),
            Some("Mon, 01 Dec 2026 10:00:00 GMT")
        );
    }
    assert_eq!(records(&db), 10);

    // --force ignores the validators.
    srv.clear_log();
    let mut o = opts(&srv.base, &["PyPI"]);
    o.force = true;
    let r3 = update_db(&db, &o).unwrap();
    assert_eq!(outcome(&r3, "PyPI"), UpdateOutcome::Updated);
    assert!(!srv.log()[0].headers.contains_key("if-none-match"));
    assert_eq!(records(&db), 10);
}

#[test]
fn last_modified_alone_is_used_when_there_is_no_etag() {
    let srv = OsvServer::start();
    srv.put(
        "/Go/all.zip",
        osv_server::Resource {
            body: zip_dir(&fixtures("Go")),
            etag: None,
            last_modified: Some("Tue, 02 Dec 2026 08:00:00 GMT".into()),
            behaviour: Behaviour::Normal,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    assert_eq!(
        update_db(&db, &opts(&srv.base, &["Go"])).unwrap().failed(),
        0
    );
    srv.clear_log();
    let r = update_db(&db, &opts(&srv.base, &["Go"])).unwrap();
    assert_eq!(outcome(&r, "Go"), UpdateOutcome::Unchanged);
    let req = &srv.log()[0];
    assert!(!req.headers.contains_key("if-none-match"));
    assert_eq!(req.status, 304);
}

/// The mirror publishes a new PyPI export while the update is fetching npm: the stored ETag
/// must be the one of the PyPI body that was imported, so the next update fetches the new one
/// (an implementation that re-read the ETag later would store v2's and never import it).
#[test]
fn etag_changed_mid_update_is_fetched_next_time() {
    let srv = OsvServer::start();
    srv.put_zip("PyPI", zip_dir(&fixtures("PyPI")), "p1");
    srv.put_zip("npm", zip_dir(&fixtures("npm")), "n1");
    let v2 = pypi_v2();
    srv.after(move |path, res| {
        if path == "/npm/all.zip" {
            let r = res.get_mut("/PyPI/all.zip").unwrap();
            r.body = v2.clone();
            r.etag = Some("\"p2\"".into());
            r.last_modified = Some("Wed, 03 Dec 2026 10:00:00 GMT".into());
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    let r = update_db(&db, &opts(&srv.base, &["PyPI", "npm"])).unwrap();
    assert_eq!(r.failed(), 0);
    assert!(!has(&db, "GHSA-9wx4-h78v-vm56"));
    let feeds = VulnDb::open(&db).unwrap().status().unwrap().feeds;
    let py = feeds.iter().find(|f| f.ecosystem == "PyPI").unwrap();
    assert_eq!(py.etag.as_deref(), Some("\"p1\""));
    let r = update_db(&db, &opts(&srv.base, &["PyPI", "npm"])).unwrap();
    assert_eq!(outcome(&r, "PyPI"), UpdateOutcome::Updated);
    assert_eq!(outcome(&r, "npm"), UpdateOutcome::Unchanged);
    assert!(has(&db, "GHSA-9wx4-h78v-vm56"));
    let py = r.ecosystems.iter().find(|e| e.ecosystem == "PyPI").unwrap();
    assert_eq!((py.added, py.records), (1, 5));
}

/// Starts from a good database, then the mirror serves `bad` as the new PyPI export: the
/// update of PyPI fails naming the problem, its old data and validators stay, npm is still
/// updated, and the next update tries PyPI again.
fn refused(bad: Vec<u8>, o: impl Fn(&mut UpdateOptions)) -> String {
    let srv = OsvServer::start();
    srv.put_zip("PyPI", zip_dir(&fixtures("PyPI")), "p1");
    srv.put_zip("npm", zip_dir(&fixtures("npm")), "n1");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    let mut options = opts(&srv.base, &["PyPI", "npm"]);
    o(&mut options);
    assert_eq!(update_db(&db, &options).unwrap().failed(), 0);
    srv.put_zip("PyPI", bad, "p-bad");
    srv.put_zip("npm", zip_dir(&fixtures("Go")), "n2"); // any other valid export
    let r = update_db(&db, &options).unwrap();
    assert_eq!(outcome(&r, "PyPI"), UpdateOutcome::Failed, "{r:?}");
    assert_eq!(outcome(&r, "npm"), UpdateOutcome::Updated, "{r:?}");
    assert!(r.swapped);
    // Old PyPI records are all still there and still match.
    for id in [
        "GHSA-j8r2-6x86-q33q",
        "PYSEC-2023-74",
        "GHSA-v845-jxx5-vc9f",
        "GHSA-g4mx-q9vg-27p4",
    ] {
        assert!(has(&db, id), "{id} lost");
    }
    assert!(has(&db, "GO-2023-1571"));
    let status = VulnDb::open(&db).unwrap().status().unwrap();
    let py = status.feeds.iter().find(|f| f.ecosystem == "PyPI").unwrap();
    assert_eq!(
        py.etag.as_deref(),
        Some("\"p1\""),
        "validators of the kept data"
    );
    // A failed ecosystem does not count as a complete update.
    assert!(status.updated_at.unwrap() <= r.updated_at.unwrap());
    // Nothing of the download or the build is left beside the database.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The next update asks again (the refused ETag was not stored).
    srv.clear_log();
    let r = update_db(&db, &options).unwrap();
    assert_eq!(outcome(&r, "PyPI"), UpdateOutcome::Failed);
    assert_eq!(
        srv.log()[0]
            .headers
            .get("if-none-match")
            .map(String::as_str),
        Some("\"p1\"")
    );
    error(&r, "PyPI")
}

#[test]
fn truncated_zip_is_refused_and_the_old_data_kept() {
    let good = zip_dir(&fixtures("PyPI"));
    let cut = good[..good.len() * 2 / 3].to_vec();
    let e = refused(cut, |_| {});
    assert!(e.contains("zip"), "{e}");
}

#[test]
fn corrupted_member_fails_its_crc_and_is_refused() {
    let mut z = zip_dir(&fixtures("PyPI"));
    // Flip bytes inside the first member's compressed data (after its local header).
    for b in &mut z[80..120] {
        *b ^= 0x5a;
    }
    let e = refused(z, |_| {});
    assert!(!e.is_empty());
}

#[test]
fn zip_bomb_is_refused_by_the_size_cap() {
    // One record padded with 4 MiB of whitespace: deflates to a few KiB.
    let mut rec = std::fs::read(fixtures("PyPI").join("PYSEC-2023-74.json")).unwrap();
    rec.extend(std::iter::repeat_n(b' ', 4 << 20));
    let bomb = zip_of(&[("PYSEC-2023-74.json", &rec)]);
    assert!(bomb.len() < 64 << 10);
    let e = refused(bomb, |o| o.max_uncompressed = 1 << 20);
    assert!(e.contains("zip bomb") || e.contains("more than"), "{e}");
}

#[test]
fn download_over_the_cap_is_refused() {
    let e = refused(vec![b'x'; 3 << 20], |o| o.max_download = 2 << 20);
    assert!(e.contains("larger than"), "{e}");
}

#[test]
fn a_record_with_a_bad_schema_refuses_the_whole_export() {
    let good = std::fs::read(fixtures("PyPI").join("PYSEC-2023-74.json")).unwrap();
    // `affected` must be a list; osv.dev never exports this, a broken mirror might.
    let bad = br#"{"schema_version":"1.6.0","id":"PYSEC-2099-1","modified":"2024-01-01T00:00:00Z","affected":"requests"}"#;
    let e = refused(
        zip_of(&[("PYSEC-2023-74.json", &good), ("PYSEC-2099-1.json", bad)]),
        |_| {},
    );
    assert!(e.contains("PYSEC-2099-1.json"), "{e}");
    // And a record without `modified` (required by the schema).
    let e = refused(
        zip_of(&[("X-1.json", br#"{"id":"X-1","affected":[]}"#)]),
        |_| {},
    );
    assert!(e.contains("modified"), "{e}");
}

#[test]
fn path_traversal_member_names_are_refused() {
    let rec = std::fs::read(fixtures("PyPI").join("PYSEC-2023-74.json")).unwrap();
    let e = refused(zip_of(&[("../../PYSEC-2023-74.json", &rec)]), |_| {});
    assert!(e.contains("not a plain relative path"), "{e}");
    let e = refused(zip_of(&[("/etc/PYSEC-2023-74.json", &rec)]), |_| {});
    assert!(e.contains("not a plain relative path"), "{e}");
}

#[test]
fn an_empty_export_or_not_a_zip_is_refused() {
    let e = refused(zip_of(&[("README.txt", b"hello")]), |_| {});
    assert!(e.contains("no OSV records"), "{e}");
    let e = refused(
        std::fs::read(fixtures("PyPI").join("PYSEC-2023-74.json")).unwrap(),
        |_| {},
    );
    assert!(e.contains("not a zip"), "{e}");
}

#[test]
fn a_server_that_hangs_times_out() {
    let bad = zip_dir(&fixtures("PyPI"));
    // Silent before the headers.
    let srv = OsvServer::start();
    srv.put_zip("PyPI", bad.clone(), "p1");
    srv.set_behaviour("/PyPI/all.zip", Behaviour::HangBeforeHeaders);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    let r = update_db(&db, &opts(&srv.base, &["PyPI"])).unwrap();
    assert_eq!(outcome(&r, "PyPI"), UpdateOutcome::Failed);
    assert!(
        error(&r, "PyPI").contains("timeout"),
        "{}",
        error(&r, "PyPI")
    );
    assert!(!db.exists(), "no database is made from nothing");
    // Silent in the middle of the body.
    srv.set_behaviour("/PyPI/all.zip", Behaviour::HangMidBody);
    let r = update_db(&db, &opts(&srv.base, &["PyPI"])).unwrap();
    assert_eq!(outcome(&r, "PyPI"), UpdateOutcome::Failed);
    assert!(
        error(&r, "PyPI").contains("timeout"),
        "{}",
        error(&r, "PyPI")
    );
    // A body cut short with the connection closed.
    srv.set_behaviour("/PyPI/all.zip", Behaviour::CutBody);
    let r = update_db(&db, &opts(&srv.base, &["PyPI"])).unwrap();
    assert_eq!(outcome(&r, "PyPI"), UpdateOutcome::Failed);
    // A port nobody listens on.
    let r = update_db(&db, &opts("http://127.0.0.1:9", &["PyPI"])).unwrap();
    assert_eq!(outcome(&r, "PyPI"), UpdateOutcome::Failed);
    assert!(!db.exists());
}

#[test]
fn a_reader_of_the_old_database_keeps_reading_it_across_the_swap() {
    let srv = OsvServer::start();
    srv.put_zip("PyPI", zip_dir(&fixtures("PyPI")), "p1");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    update_db(&db, &opts(&srv.base, &["PyPI"])).unwrap();
    let old = VulnDb::open(&db).unwrap();
    srv.put_zip("PyPI", pypi_v2(), "p2");
    let r = update_db(&db, &opts(&srv.base, &["PyPI"])).unwrap();
    assert!(r.swapped);
    // The open handle still sees its (old) file, whole.
    assert!(old.vuln("PYSEC-2023-74").unwrap().is_some());
    assert!(old.vuln("GHSA-9wx4-h78v-vm56").unwrap().is_none());
    assert_eq!(old.status().unwrap().records, 4);
    assert!(has(&db, "GHSA-9wx4-h78v-vm56"));
    // The new file needs no -wal beside it.
    assert!(!tmp.path().join("vuln.db-wal").exists());
}

#[test]
fn a_second_writer_is_refused_while_one_holds_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    let _held = rampart_scan::lock_db(&db).unwrap();
    let e = update_db(&db, &opts("http://127.0.0.1:9", &["PyPI"])).unwrap_err();
    assert!(e.to_string().contains("another"), "{e}");
}

#[test]
fn checksum_files_are_checked_for_mirrors() {
    use sha2::{Digest, Sha256};
    let srv = OsvServer::start();
    let z = zip_dir(&fixtures("npm"));
    srv.put_zip("npm", z.clone(), "n1");
    let sum = format!("{}  all.zip\n", hex::encode(Sha256::digest(&z)));
    let put_sum = |s: &str| {
        srv.put(
            "/npm/all.zip.sha256",
            osv_server::Resource {
                body: s.as_bytes().to_vec(),
                etag: None,
                last_modified: None,
                behaviour: Behaviour::Normal,
            },
        )
    };
    put_sum(&sum);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    let mut o = opts(&srv.base, &["npm"]);
    o.checksum = true;
    let r = update_db(&db, &o).unwrap();
    assert_eq!(r.failed(), 0, "{r:?}");
    // A mirror whose zip does not match its checksum (tampered, or half-synced).
    put_sum(&format!("{}  all.zip\n", "0".repeat(64)));
    o.force = true;
    let r = update_db(&db, &o).unwrap();
    assert_eq!(outcome(&r, "npm"), UpdateOutcome::Failed);
    assert!(error(&r, "npm").contains("SHA-256"), "{}", error(&r, "npm"));
    assert!(has(&db, "GHSA-35jh-r3h4-6jhm"));
    // No checksum file at all.
    srv.put(
        "/npm/all.zip.sha256",
        osv_server::Resource {
            body: b"<html>not found</html>".to_vec(),
            etag: None,
            last_modified: None,
            behaviour: Behaviour::Normal,
        },
    );
    let r = update_db(&db, &o).unwrap();
    assert_eq!(outcome(&r, "npm"), UpdateOutcome::Failed);
}

#[test]
fn file_urls_serve_air_gapped_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let mirror = tmp.path().join("mirror");
    std::fs::create_dir_all(mirror.join("Maven")).unwrap();
    std::fs::write(mirror.join("Maven/all.zip"), zip_dir(&fixtures("Maven"))).unwrap();
    let db = tmp.path().join("vuln.db");
    let base = format!("file://{}", mirror.display());
    let r = update_db(&db, &opts(&base, &["Maven"])).unwrap();
    assert_eq!(outcome(&r, "Maven"), UpdateOutcome::Updated, "{r:?}");
    assert!(has(&db, "GHSA-jfh8-c2jp-5v3q"));
    let r = update_db(&db, &opts(&base, &["Maven"])).unwrap();
    assert_eq!(outcome(&r, "Maven"), UpdateOutcome::Unchanged);
}

#[test]
fn a_database_of_another_schema_is_rebuilt_from_scratch() {
    let srv = OsvServer::start();
    srv.put_zip("npm", zip_dir(&fixtures("npm")), "n1");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("vuln.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES('schema_version', '999');",
        )
        .unwrap();
    }
    assert!(VulnDb::open(&db).is_err());
    let r = update_db(&db, &opts(&srv.base, &["npm"])).unwrap();
    assert!(r.swapped, "{r:?}");
    assert_eq!(records(&db), 6);
    assert!(!srv.log()[0].headers.contains_key("if-none-match"));
}
