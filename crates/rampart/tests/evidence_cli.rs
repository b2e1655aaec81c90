//! Issue 19 item 6: forensic bundles leave the host. A real `rampart server` process, agents
//! enrolled with the real enrollment client, uploads with the real client library
//! (`rampart_ship::evidence`) and, for what a compromised host would send instead, raw HTTP
//! over the agent's own mutual-TLS identity. Effects are checked where they land: the bytes
//! on the server's disk, the control database through the API, the server's peak RSS.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use rampart_ship::client::{HttpClient, HttpResponse};
use rampart_ship::evidence::{upload_with, EvidenceMeta, UploadError, UploadOptions};
use serde_json::Value;
use support::server::{sha256_file, RampartServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::ClientConfig;

const MIB: u64 = 1 << 20;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A file of `size` bytes whose content depends on `seed` (not compressible, not all alike).
fn bundle_file(dir: &Path, name: &str, size: u64, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("bundle file"));
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = size;
    let mut buf = vec![0u8; (1 << 16) as usize];
    while left > 0 {
        for b in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
    path
}

fn agent_tls(dir: &Path) -> Arc<ClientConfig> {
    rampart_ship::tls::agent_client_config(dir).expect("agent TLS")
}

fn anonymous_tls(server: &RampartServer) -> Arc<ClientConfig> {
    let roots =
        rampart_ship::tls::load_roots(&server.data().join("ca/ca.crt")).expect("CA certificate");
    rampart_ship::tls::client_config(roots, None).expect("TLS config")
}

async fn request(
    tls: Arc<ClientConfig>,
    url: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> HttpResponse {
    let mut c = HttpClient::new(url, Some(tls))
        .expect("client")
        .with_timeout(Duration::from_secs(60))
        .with_max_response(1 << 30);
    c.request(method.clone(), path, headers, Bytes::from(body))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn json(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_text()))
}

fn fast() -> UploadOptions {
    UploadOptions {
        part_bytes: 4 * MIB,
        attempts: 3,
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        request_timeout: Duration::from_secs(60),
    }
}

fn meta(name: &str) -> EvidenceMeta {
    EvidenceMeta {
        name: name.into(),
        container: "shop-web".into(),
        incident: "crypto-miner@evt-1".into(),
        alert_id: "evt-1".into(),
    }
}

/// Files in the server's evidence blob directory.
fn blobs(server: &RampartServer) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(server.data().join("evidence/blobs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn listing(server: &RampartServer, token: &str, query: &str) -> Vec<Value> {
    let r = request(
        anonymous_tls(server),
        &server.url(),
        Method::GET,
        &format!("/api/v1/evidence?{query}"),
        &[("authorization", &format!("Bearer {token}"))],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    json(&r)["bundles"].as_array().cloned().unwrap_or_default()
}

async fn api_token(server: &RampartServer, name: &str, role: &str) -> String {
    let body = serde_json::to_vec(&serde_json::json!({"name": name, "role": role})).expect("json");
    let r = request(
        anonymous_tls(server),
        &server.url(),
        Method::POST,
        "/api/v1/tokens",
        &[
            ("authorization", &format!("Bearer {}", server.admin_token())),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    json(&r)["token"].as_str().expect("token").to_string()
}

#[test]
fn an_uploaded_bundle_is_stored_exactly_under_the_certificates_host_and_replays_change_nothing() {
    let server = RampartServer::start("");
    let (web_dir, web_id) = server.enroll("web-1");
    let (db_dir, db_id) = server.enroll("db-1");
    let tmp = tempfile::tempdir().expect("tmp");
    // 10 MiB and a bit: three parts of 4 MiB, the last one short.
    let a = bundle_file(tmp.path(), "web-a.tar.zst", 10 * MIB + 12345, 1);
    let a_sha = sha256_file(&a);
    let rt = runtime();
    rt.block_on(async {
        let up = upload_with(
            &server.url(),
            agent_tls(&web_dir),
            &a,
            &meta("web-a.tar.zst"),
            &fast(),
        )
        .await
        .expect("upload");
        // The receipt is the server's hash of what it stored, and the blob on disk is the file.
        assert_eq!(up.receipt.sha256, a_sha);
        assert_eq!(up.sha256, a_sha);
        assert_eq!(up.receipt.size, 10 * MIB + 12345);
        assert_eq!(up.receipt.agent_id, web_id);
        assert_eq!(up.receipt.hostname, "web-1");
        assert!(!up.receipt.duplicate);
        assert_eq!(sha256_file(&server.evidence_blob(&a_sha)), a_sha);
        assert_eq!(
            std::fs::read(server.evidence_blob(&a_sha)).expect("blob"),
            std::fs::read(&a).expect("file")
        );
        let blob_mode = std::fs::metadata(server.data().join("evidence/blobs"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .expect("blobs dir");
        assert_eq!(
            blob_mode, 0o700,
            "bundles hold secrets: the directory is 0700"
        );

        // A replay (the agent retrying after a lost answer, or anyone replaying the requests)
        // gets the first receipt: same time of receipt, nothing stored twice.
        let again = upload_with(
            &server.url(),
            agent_tls(&web_dir),
            &a,
            &meta("web-a.tar.zst"),
            &fast(),
        )
        .await
        .expect("replay");
        assert!(again.receipt.duplicate);
        assert_eq!(again.receipt.received_ns, up.receipt.received_ns);
        // Raw replay of the first part, with its body: answered from the record, unread.
        let size = (10 * MIB + 12345).to_string();
        // The server answers a replay without reading its body; a part larger than the socket
        // buffers can then fail on the client's side while it is still writing (hyper reports
        // the write error, not the answer), so the replay sends a part that fits in them.
        let part = std::fs::read(&a).expect("file")[..(64 * 1024) as usize].to_vec();
        let r = request(
            agent_tls(&web_dir),
            &server.url(),
            Method::PUT,
            &format!("/api/v1/evidence/{a_sha}"),
            &[
                ("rampart-evidence-size", &size),
                ("rampart-evidence-offset", "0"),
            ],
            part,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert_eq!(json(&r)["duplicate"], true);
        let admin = server.admin_token();
        assert_eq!(listing(&server, &admin, "").await.len(), 1);

        // Host db-1 cannot write as web-1. Bytes that are not the named bundle are refused
        // and forgotten, and web-1's record is untouched.
        let fake = bundle_file(tmp.path(), "fake", 10 * MIB + 12345, 99);
        let r = request(
            agent_tls(&db_dir),
            &server.url(),
            Method::PUT,
            &format!("/api/v1/evidence/{a_sha}"),
            &[
                ("rampart-evidence-size", &size),
                ("rampart-evidence-name", "web-a.tar.zst"),
                ("rampart-evidence-container", "shop-web"),
            ],
            std::fs::read(&fake).expect("fake"),
        )
        .await;
        assert_eq!(r.status, 422, "{}", r.body_text());
        assert_eq!(sha256_file(&server.evidence_blob(&a_sha)), a_sha);
        assert_eq!(blobs(&server), vec![a_sha.clone()]);
        assert!(
            !server
                .data()
                .join("evidence/partial")
                .join(&db_id)
                .join(&a_sha)
                .exists(),
            "the refused bytes are not kept"
        );
        // Its own upload of other bytes is recorded under db-1, whatever it says about them.
        let b = bundle_file(tmp.path(), "db-b.tar.zst", 3 * MIB, 2);
        let b_sha = sha256_file(&b);
        let mut m = meta("db-b.tar.zst");
        m.container = "shop-web".into();
        let up_b = upload_with(&server.url(), agent_tls(&db_dir), &b, &m, &fast())
            .await
            .expect("db upload");
        assert_eq!(up_b.receipt.agent_id, db_id);
        assert_eq!(up_b.receipt.hostname, "db-1");
        let web = listing(&server, &admin, "host=web-1").await;
        assert_eq!(web.len(), 1, "{web:#?}");
        assert_eq!(web[0]["sha256"], a_sha.as_str());
        let db = listing(&server, &admin, "host=db-1").await;
        assert_eq!(db.len(), 1, "{db:#?}");
        assert_eq!(db[0]["sha256"], b_sha.as_str());
        assert_eq!(db[0]["agent_id"], db_id.as_str());
        // By incident and alert, as the dashboard links them.
        assert_eq!(
            listing(&server, &admin, "incident=crypto-miner@evt-1")
                .await
                .len(),
            2
        );
        assert_eq!(
            listing(&server, &admin, "alert=evt-1&host=db-1")
                .await
                .len(),
            1
        );

        // db-1 cannot resume web-1's unfinished upload: partial files are per certificate.
        let c = bundle_file(tmp.path(), "web-c", 2 * MIB, 3);
        let c_sha = sha256_file(&c);
        let c_bytes = std::fs::read(&c).expect("c");
        let c_size = (2 * MIB).to_string();
        let r = request(
            agent_tls(&web_dir),
            &server.url(),
            Method::PUT,
            &format!("/api/v1/evidence/{c_sha}"),
            &[("rampart-evidence-size", &c_size)],
            c_bytes[..MIB as usize].to_vec(),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body_text());
        assert_eq!(json(&r)["offset"], MIB);
        let r = request(
            agent_tls(&db_dir),
            &server.url(),
            Method::PUT,
            &format!("/api/v1/evidence/{c_sha}"),
            &[
                ("rampart-evidence-size", &c_size),
                ("rampart-evidence-offset", &MIB.to_string()),
            ],
            c_bytes[MIB as usize..].to_vec(),
        )
        .await;
        assert_eq!(r.status, 409, "{}", r.body_text());
        assert_eq!(json(&r)["offset"], 0, "db-1 holds nothing of it");
        // web-1 resumes its own: the client starts at 0, is told 1 MiB, sends the rest.
        let up_c = upload_with(
            &server.url(),
            agent_tls(&web_dir),
            &c,
            &meta("web-c"),
            &fast(),
        )
        .await
        .expect("resumed upload");
        assert_eq!(up_c.receipt.sha256, c_sha);
        // (Sending the whole file first, it may see the connection close under its body once.)
        assert!(up_c.failures <= 1, "{up_c:?}");
        assert_eq!(sha256_file(&server.evidence_blob(&c_sha)), c_sha);

        // Same bytes from two hosts: one blob, two records, each under its own host.
        let up_b2 = upload_with(
            &server.url(),
            agent_tls(&web_dir),
            &b,
            &meta("copy"),
            &fast(),
        )
        .await
        .expect("same bytes from web-1");
        assert_eq!(up_b2.receipt.hostname, "web-1");
        assert_eq!(
            listing(&server, &admin, &format!("sha256={b_sha}"))
                .await
                .len(),
            2
        );
        assert_eq!(blobs(&server).len(), 3);

        // An analyst downloads the exact bytes.
        let analyst = api_token(&server, "ana", "analyst").await;
        let r = request(
            anonymous_tls(&server),
            &server.url(),
            Method::GET,
            &format!("/api/v1/evidence/{a_sha}"),
            &[("authorization", &format!("Bearer {analyst}"))],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], &std::fs::read(&a).expect("a")[..]);
    });
}

#[test]
fn evidence_routes_refuse_who_may_not_use_them() {
    let server = RampartServer::start("");
    let (web_dir, _) = server.enroll("web-1");
    let tmp = tempfile::tempdir().expect("tmp");
    let a = bundle_file(tmp.path(), "a", MIB, 5);
    let a_sha = sha256_file(&a);
    let rt = runtime();
    rt.block_on(async {
        // No client certificate: refused, nothing written.
        let r = request(
            anonymous_tls(&server),
            &server.url(),
            Method::PUT,
            &format!("/api/v1/evidence/{a_sha}"),
            &[("rampart-evidence-size", &MIB.to_string())],
            std::fs::read(&a).expect("a"),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.body_text());
        assert!(!server.data().join("evidence/partial").exists());
        // Through the client library too: refused for good, not retried.
        let e = upload_with(
            &server.url(),
            anonymous_tls(&server),
            &a,
            &meta("a"),
            &fast(),
        )
        .await
        .expect_err("no certificate");
        assert!(matches!(e, UploadError::Refused { status: 401, .. }), "{e}");

        // Names that are not a SHA-256 never become paths.
        for name in ["..%2F..%2Fca%2Fca.key", "abc", &"g".repeat(64)] {
            let r = request(
                agent_tls(&web_dir),
                &server.url(),
                Method::PUT,
                &format!("/api/v1/evidence/{name}"),
                &[("rampart-evidence-size", "3")],
                b"abc".to_vec(),
            )
            .await;
            assert!(r.status == 400 || r.status == 404, "{name}: {}", r.status);
        }
        // Missing or malformed sizes, offsets past the end, unprintable descriptions.
        for (headers, want) in [
            (vec![], 400),
            (vec![("rampart-evidence-size", "-1")], 400),
            (vec![("rampart-evidence-size", "0x10")], 400),
            (
                vec![
                    ("rampart-evidence-size", "3"),
                    ("rampart-evidence-offset", "4"),
                ],
                400,
            ),
            (vec![("rampart-evidence-size", "2")], 413),
        ] {
            let r = request(
                agent_tls(&web_dir),
                &server.url(),
                Method::PUT,
                &format!("/api/v1/evidence/{}", "a".repeat(64)),
                &headers,
                b"abc".to_vec(),
            )
            .await;
            assert_eq!(r.status, want, "{headers:?}: {}", r.body_text());
        }
        let up = upload_with(&server.url(), agent_tls(&web_dir), &a, &meta("a"), &fast())
            .await
            .expect("upload");
        assert_eq!(up.receipt.sha256, a_sha);

        // Listing and downloading: analysts and admins only.
        let read_only = api_token(&server, "ro", "read-only").await;
        for (auth, want) in [
            (None, 401),
            (Some("Bearer not-a-token".to_string()), 401),
            (Some(format!("Bearer {read_only}")), 403),
        ] {
            for path in [
                "/api/v1/evidence".to_string(),
                format!("/api/v1/evidence/{a_sha}"),
            ] {
                let headers: Vec<(&str, &str)> = auth
                    .as_deref()
                    .map(|a| vec![("authorization", a)])
                    .unwrap_or_default();
                let r = request(
                    anonymous_tls(&server),
                    &server.url(),
                    Method::GET,
                    &path,
                    &headers,
                    Vec::new(),
                )
                .await;
                assert_eq!(r.status, want, "{path} with {auth:?}: {}", r.body_text());
                assert!(
                    !r.body
                        .windows(16)
                        .any(|w| w == &std::fs::read(&a).expect("a")[..16]),
                    "no bundle bytes without authorisation"
                );
            }
        }
        // An agent certificate is not a user: it cannot list or download.
        let r = request(
            agent_tls(&web_dir),
            &server.url(),
            Method::GET,
            &format!("/api/v1/evidence/{a_sha}"),
            &[],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, 401);
    });
}

/// Sends `PUT /api/v1/evidence/{sha}` over a raw TLS connection with the agent's identity:
/// `declared` as content-length (chunked when `None`), then `body_len` bytes of `source`
/// (repeated) as fast as the server takes them; returns the status line and whether the
/// server cut the upload off before all was sent.
/// One raw upload request (see [`raw_put`]).
struct RawPut<'a> {
    sha: &'a str,
    size: u64,
    declared: Option<u64>,
    source: &'a Path,
    body_len: u64,
    wait: Duration,
}

async fn raw_put(
    server: &RampartServer,
    tls: Arc<ClientConfig>,
    req: RawPut<'_>,
) -> (String, bool) {
    let RawPut {
        sha,
        size,
        declared,
        source,
        body_len,
        wait,
    } = req;
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS");
    let length = match declared {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".into(),
    };
    let head = format!(
        "PUT /api/v1/evidence/{sha} HTTP/1.1\r\nhost: {}\r\nrampart-evidence-size: {size}\r\n{length}\r\n",
        server.addr
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let mut file = tokio::fs::File::open(source).await.expect("source");
    let mut buf = vec![0u8; (1 << 20) as usize];
    let mut sent = 0u64;
    let mut cut = false;
    while sent < body_len {
        let want = ((body_len - sent) as usize).min(buf.len());
        let mut n = file.read(&mut buf[..want]).await.expect("read");
        if n == 0 {
            file = tokio::fs::File::open(source).await.expect("source");
            n = file.read(&mut buf[..want]).await.expect("read");
        }
        let w = if declared.is_none() {
            let mut chunk = format!("{n:x}\r\n").into_bytes();
            chunk.extend_from_slice(&buf[..n]);
            chunk.extend_from_slice(b"\r\n");
            s.write_all(&chunk).await
        } else {
            s.write_all(&buf[..n]).await
        };
        if w.is_err() {
            cut = true;
            break;
        }
        sent += n as u64;
    }
    if declared.is_none() && !cut {
        cut = s.write_all(b"0\r\n\r\n").await.is_err();
    }
    let _ = s.flush().await;
    let mut answer = Vec::new();
    let mut b = [0u8; 4096];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(wait, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&b[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().unwrap_or("").to_string(), cut)
}

#[test]
fn uploads_are_streamed_to_disk_and_oversized_ones_cost_the_server_nothing() {
    let server = RampartServer::start(
        "  evidence_bundle_bytes: 1073741824\n  evidence_agent_bytes: 1073741824\n  body_timeout: 120s\n",
    );
    let (web_dir, web_id) = server.enroll("web-1");
    let tmp = tempfile::tempdir().expect("tmp");
    let idle = server.vm_hwm_kib();
    let rt = runtime();
    rt.block_on(async {
        // 2 KB claiming a bundle at the limit (1 GiB) and closing: the server holds the 2 KB
        // it got (resumable), allocates nothing for the rest.
        let small = bundle_file(tmp.path(), "small", 2048, 8);
        let (_, _) = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &"e".repeat(64),
                size: 1 << 30,
                declared: Some(1 << 30),
                source: &small,
                body_len: 2048,
                wait: Duration::from_millis(500),
            },
        )
        .await;
        let partial = server
            .data()
            .join("evidence/partial")
            .join(&web_id)
            .join("e".repeat(64));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 2048
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0),
            2048
        );
        // A 512 MiB bundle in one request: written as it arrives, never held.
        let big = bundle_file(tmp.path(), "big.tar.zst", 512 * MIB, 7);
        let big_sha = sha256_file(&big);
        let (status, _) = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &big_sha,
                size: 512 * MIB,
                declared: Some(512 * MIB),
                source: &big,
                body_len: 512 * MIB,
                wait: Duration::from_secs(60),
            },
        )
        .await;
        assert!(status.contains(" 200 "), "{status}");
        assert_eq!(sha256_file(&server.evidence_blob(&big_sha)), big_sha);
        std::fs::remove_file(&big).expect("rm");
        let after_big = server.vm_hwm_kib();
        eprintln!(
            "peak RSS: idle {} MiB, after a 512 MiB upload {} MiB",
            idle / 1024,
            after_big / 1024
        );
        assert!(
            after_big < 160 * 1024,
            "a 512 MiB upload took the server to {} MiB: the body is held, not streamed",
            after_big / 1024
        );

        // Announced over limits.evidence_bundle_bytes: refused before the body is read.
        let (status, _) = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &"b".repeat(64),
                size: (1 << 30) + 1,
                declared: Some(2048),
                source: &small,
                body_len: 2048,
                wait: Duration::from_secs(10),
            },
        )
        .await;
        assert!(status.contains(" 413 "), "{status}");
        // Over this agent's quota (512 MiB stored and 2 KB being uploaded, 1 GiB allowed).
        let (status, _) = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &"c".repeat(64),
                size: 600 * MIB,
                declared: Some(2048),
                source: &small,
                body_len: 2048,
                wait: Duration::from_secs(10),
            },
        )
        .await;
        assert!(status.contains(" 413 "), "{status}");
        // A body running past the announced size (chunked, 256 MiB for a 1 MiB bundle): cut
        // off at the size, and what it wrote is dropped.
        let src = bundle_file(tmp.path(), "src", 4 * MIB, 9);
        let (status, cut) = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &"d".repeat(64),
                size: MIB,
                declared: None,
                source: &src,
                body_len: 256 * MIB,
                wait: Duration::from_secs(10),
            },
        )
        .await;
        // The answer is 413; a client still writing may instead see the connection reset.
        assert!(status.contains(" 413 ") || cut, "{status}");
        let partial = server
            .data()
            .join("evidence/partial")
            .join(&web_id)
            .join("d".repeat(64));
        assert_eq!(std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0), 0);
        // The server still works, and stayed small through all of it.
        let ok = bundle_file(tmp.path(), "ok", MIB, 10);
        let up = upload_with(
            &server.url(),
            agent_tls(&web_dir),
            &ok,
            &meta("ok"),
            &fast(),
        )
        .await
        .expect("upload after the hostile ones");
        assert_eq!(up.receipt.sha256, sha256_file(&ok));
        let hwm = server.vm_hwm_kib();
        eprintln!("peak RSS after the hostile uploads: {} MiB", hwm / 1024);
        assert!(hwm < 160 * 1024, "peak RSS {} MiB", hwm / 1024);
    });
    let metrics = {
        let rt = runtime();
        rt.block_on(async {
            let r = request(
                anonymous_tls(&server),
                &server.url(),
                Method::GET,
                "/metrics",
                &[("authorization", &format!("Bearer {}", server.admin_token()))],
                Vec::new(),
            )
            .await;
            String::from_utf8_lossy(&r.body).into_owned()
        })
    };
    assert!(
        metrics.contains("rampart_server_evidence_too_large_total 3"),
        "{metrics}"
    );
}

#[test]
fn a_failed_upload_is_retried_with_backoff_and_then_reported() {
    let server = RampartServer::start("");
    let (web_dir, _) = server.enroll("web-1");
    let tmp = tempfile::tempdir().expect("tmp");
    let a = bundle_file(tmp.path(), "a", MIB, 11);
    // Nothing listens there: every attempt fails; the error says how many and why.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let rt = runtime();
    let started = Instant::now();
    let e = rt
        .block_on(upload_with(
            &format!("https://127.0.0.1:{port}"),
            agent_tls(&web_dir),
            &a,
            &meta("a"),
            &fast(),
        ))
        .expect_err("no server");
    let took = started.elapsed();
    match &e {
        UploadError::Failed { attempts, last, .. } => {
            assert_eq!(*attempts, 3, "{e}");
            assert!(last.contains("connect"), "{e}");
        }
        other => panic!("{other}"),
    }
    // Backoff 100 ms then 200 ms between the three attempts.
    assert!(took >= Duration::from_millis(300), "{took:?}");
}
