//! The bundle client against a server on loopback that serves what a hostile or stale server
//! would: another CA's signature, a manifest edited after signing, an older bundle, a payload
//! truncated, padded or swapped. The assertions are the decisions and what was fetched and
//! installed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rampart_server::ca::Ca;
use rampart_server::vulndb::{Manifest, SignedManifest, MANIFEST_FORMAT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// What the loopback server answers per path: status, headers, body.
type Routes = HashMap<String, (u16, Vec<(String, String)>, Vec<u8>)>;

/// A minimal HTTP/1.1 server on 127.0.0.1 that answers GETs from `routes` (404 otherwise),
/// keeps connections alive and records every request line with its `if-none-match`.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn serve(routes: Routes) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let routes = Arc::new(routes);
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let routes = routes.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    buf.drain(..head_end);
                    let mut it = head.lines();
                    let path = it
                        .next()
                        .and_then(|l| l.split(' ').nth(1))
                        .unwrap_or("")
                        .to_string();
                    let inm = it
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("if-none-match"))
                        .map(|(_, v)| v.trim().to_string());
                    log.lock().expect("log").push(match inm {
                        Some(v) => format!("{path} if-none-match={v}"),
                        None => path.clone(),
                    });
                    let (status, headers, body) = routes.get(&path).cloned().unwrap_or((
                        404,
                        Vec::new(),
                        b"not found".to_vec(),
                    ));
                    let mut resp =
                        format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                    for (k, v) in headers {
                        resp.push_str(&format!("{k}: {v}\r\n"));
                    }
                    resp.push_str("\r\n");
                    let mut out = resp.into_bytes();
                    out.extend_from_slice(&body);
                    if sock.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Server { url, seen }
}

impl Server {
    fn client(&self) -> HttpClient {
        HttpClient::new(&self.url, None)
            .expect("loopback url")
            .with_timeout(Duration::from_secs(10))
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("log").clone()
    }
    fn fetched_payload(&self) -> bool {
        self.seen()
            .iter()
            .any(|l| l.starts_with("/api/v1/vulndb/bundle/"))
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A bundle of `db` published at `created_ns`, signed by `ca`: (signed manifest, manifest,
/// payload).
fn bundle(ca: &Ca, db: &[u8], created_ns: u64) -> (SignedManifest, Manifest, Vec<u8>) {
    let payload = zstd::bulk::compress(db, 3).expect("compress");
    let sha = sha256_hex(&payload);
    let m = Manifest {
        format: MANIFEST_FORMAT,
        version: format!("{}-{}", created_ns / 1_000_000_000, &sha[..12]),
        sha256: sha,
        size: payload.len() as u64,
        db_size: db.len() as u64,
        created_ns,
    };
    let text = serde_json::to_string(&m).expect("manifest json");
    let signed = SignedManifest {
        signature: hex::encode(ca.sign(text.as_bytes()).expect("sign")),
        manifest: text,
    };
    (signed, m, payload)
}

fn routes(signed: &SignedManifest, m: &Manifest, payload: &[u8]) -> Routes {
    let mut r = Routes::new();
    r.insert(
        "/api/v1/vulndb/manifest".into(),
        (
            200,
            vec![(rampart_server::vulndb::RESEND_HEADER.into(), "tok-1".into())],
            serde_json::to_vec(signed).expect("json"),
        ),
    );
    r.insert(
        format!("/api/v1/vulndb/bundle/{}", m.sha256),
        (200, Vec::new(), payload.to_vec()),
    );
    r
}

struct Fixture {
    _dir: tempfile::TempDir,
    ca: Ca,
    other_ca: Ca,
    ca_der: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::load_or_create(&dir.path().join("ca")).expect("ca");
    let other_ca = Ca::load_or_create(&dir.path().join("other")).expect("other ca");
    let ca_der = ca.cert().as_ref().to_vec();
    Fixture {
        _dir: dir,
        ca,
        other_ca,
        ca_der,
    }
}

const NOW: u64 = 1_800_000_000_000_000_000;

#[tokio::test]
async fn a_newer_bundle_signed_by_the_pinned_ca_is_fetched_and_checked() {
    let f = fixture();
    let (signed, m, payload) = bundle(&f.ca, b"the database", NOW);
    let srv = serve(routes(&signed, &m, &payload)).await;
    let c = check(srv.client(), &f.ca_der, None).await.expect("answer");
    assert_eq!(c.resend, "tok-1");
    let (got_signed, got_m, db) = c.bundle.expect("verified").expect("newer");
    assert_eq!(got_signed, signed);
    assert_eq!(got_m, m);
    assert_eq!(db, b"the database");
    assert_eq!(
        srv.seen(),
        vec![
            "/api/v1/vulndb/manifest".to_string(),
            format!("/api/v1/vulndb/bundle/{}", m.sha256)
        ]
    );
}

#[tokio::test]
async fn another_servers_signature_is_refused_before_the_payload_is_fetched() {
    let f = fixture();
    let (signed, m, payload) = bundle(&f.other_ca, b"foreign", NOW);
    let srv = serve(routes(&signed, &m, &payload)).await;
    let c = check(srv.client(), &f.ca_der, None).await.expect("answer");
    let err = c.bundle.expect_err("refused");
    assert!(
        matches!(
            err,
            AgentError::Bundle(rampart_server::vulndb::BundleError::Signature)
        ),
        "{err}"
    );
    assert!(!srv.fetched_payload(), "{:?}", srv.seen());
    // The resend token still arrives with a refused bundle.
    assert_eq!(c.resend, "tok-1");
}

#[tokio::test]
async fn a_manifest_edited_after_signing_is_refused() {
    let f = fixture();
    let (mut signed, m, payload) = bundle(&f.ca, b"db", NOW);
    // Same JSON, one field changed, the signature kept: e.g. a larger size to lift the cap.
    signed.manifest = signed
        .manifest
        .replace(&format!("\"size\":{}", m.size), "\"size\":999999999");
    assert!(signed.manifest.contains("999999999"));
    let srv = serve(routes(&signed, &m, &payload)).await;
    let c = check(srv.client(), &f.ca_der, None).await.expect("answer");
    assert!(c.bundle.is_err());
    assert!(!srv.fetched_payload());
    // A signature that is not hex, and one missing, are refused the same way.
    for sig in ["zz-not-hex", ""] {
        let (mut s, m, p) = bundle(&f.ca, b"db", NOW);
        s.signature = sig.into();
        let srv = serve(routes(&s, &m, &p)).await;
        let c = check(srv.client(), &f.ca_der, None).await.expect("answer");
        assert!(c.bundle.is_err(), "signature {sig:?} accepted");
        assert!(!srv.fetched_payload());
    }
}

#[tokio::test]
async fn a_validly_signed_older_bundle_is_a_refused_rollback() {
    let f = fixture();
    let (_, installed, _) = bundle(&f.ca, b"new advisories", NOW);
    let (signed, m, payload) = bundle(&f.ca, b"old advisories", NOW - 86_400_000_000_000);
    let srv = serve(routes(&signed, &m, &payload)).await;
    let c = check(srv.client(), &f.ca_der, Some(&installed))
        .await
        .expect("answer");
    let err = c.bundle.expect_err("rollback refused");
    assert!(err.to_string().contains("rollback"), "{err}");
    assert!(!srv.fetched_payload());
    // The request was conditional on the installed version.
    assert_eq!(
        srv.seen()[0],
        format!(
            "/api/v1/vulndb/manifest if-none-match=\"{}\"",
            installed.version
        )
    );
}

#[tokio::test]
async fn the_installed_version_and_not_modified_fetch_nothing() {
    let f = fixture();
    let (signed, m, payload) = bundle(&f.ca, b"db", NOW);
    let srv = serve(routes(&signed, &m, &payload)).await;
    let c = check(srv.client(), &f.ca_der, Some(&m))
        .await
        .expect("answer");
    assert!(c.bundle.expect("no error").is_none());
    assert!(!srv.fetched_payload());
    for status in [304u16, 404] {
        let mut r = Routes::new();
        r.insert(
            "/api/v1/vulndb/manifest".into(),
            (status, Vec::new(), Vec::new()),
        );
        let srv = serve(r).await;
        let c = check(srv.client(), &f.ca_der, None).await.expect("answer");
        assert!(c.bundle.expect("no error").is_none(), "HTTP {status}");
    }
    let mut r = Routes::new();
    r.insert(
        "/api/v1/vulndb/manifest".into(),
        (503, Vec::new(), b"busy".to_vec()),
    );
    let srv = serve(r).await;
    let c = check(srv.client(), &f.ca_der, None).await.expect("answer");
    let err = c.bundle.expect_err("server error");
    assert!(err.to_string().contains("HTTP 503"), "{err}");
}

#[tokio::test]
async fn a_payload_truncated_padded_or_swapped_is_refused() {
    let f = fixture();
    let (signed, m, payload) = bundle(&f.ca, b"the real database", NOW);
    let (_, _, other) = bundle(&f.ca, b"another database!", NOW);
    let mut padded = payload.clone();
    padded.push(0);
    let mut flipped = payload.clone();
    flipped[0] ^= 1;
    let cases: [(&str, Vec<u8>); 4] = [
        ("truncated", payload[..payload.len() - 1].to_vec()),
        ("padded", padded),
        ("flipped", flipped),
        ("swapped", other),
    ];
    for (what, body) in cases {
        let mut r = routes(&signed, &m, &payload);
        r.insert(
            format!("/api/v1/vulndb/bundle/{}", m.sha256),
            (200, Vec::new(), body),
        );
        let srv = serve(r).await;
        let c = check(srv.client(), &f.ca_der, None).await.expect("answer");
        let err = c.bundle.err().unwrap_or_else(|| panic!("{what} accepted"));
        assert!(
            matches!(err, AgentError::Bundle(_) | AgentError::Step { .. }),
            "{what}: {err}"
        );
    }
}

#[tokio::test]
async fn a_payload_far_over_the_signed_size_is_not_read() {
    let f = fixture();
    let (signed, m, _) = bundle(&f.ca, b"small", NOW);
    let mut r = routes(&signed, &m, &[]);
    // 8 MiB where the manifest promises a few bytes: the client stops at the signed size + 1.
    r.insert(
        format!("/api/v1/vulndb/bundle/{}", m.sha256),
        (200, Vec::new(), vec![0u8; 8 << 20]),
    );
    let srv = serve(r).await;
    let c = check(srv.client(), &f.ca_der, None).await.expect("answer");
    let err = c.bundle.expect_err("oversized payload");
    assert!(matches!(err, AgentError::Step { .. }), "{err}");
}

#[test]
fn a_payload_that_is_not_a_database_leaves_the_installed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fixture();
    let db_path = dir.path().join("vuln.db");
    drop(rampart_scan::VulnDb::open_or_create(&db_path).expect("installed database"));
    let before = std::fs::read(&db_path).expect("db");
    let (signed, _, _) = bundle(&f.ca, b"not sqlite", NOW);
    let err = install(&db_path, dir.path(), &signed, b"not sqlite").expect_err("refused");
    assert!(err.to_string().contains("not a usable database"), "{err}");
    assert_eq!(std::fs::read(&db_path).expect("db"), before);
    assert!(installed_manifest(dir.path()).is_none());
    // No temporary file is left next to the database.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".new"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A real database installs, and its manifest is recorded.
    let src = dir.path().join("src.db");
    drop(rampart_scan::VulnDb::open_or_create(&src).expect("new database"));
    let data = std::fs::read(&src).expect("db");
    let (signed, m, _) = bundle(&f.ca, &data, NOW);
    install(&db_path, dir.path(), &signed, &data).expect("installs");
    assert_eq!(std::fs::read(&db_path).expect("db"), data);
    assert_eq!(installed_manifest(dir.path()), Some(m));
}
