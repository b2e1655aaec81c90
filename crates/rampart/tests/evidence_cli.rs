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
        // Raw replay of a whole 8 MiB part, with its body, from a client whose socket buffers
        // are far smaller than the part (as over a real network) and that writes its body
        // before reading: answered from the record, the body read and discarded, not stored.
        let size = (10 * MIB + 12345).to_string();
        let drained = metric(&server, "rampart_server_evidence_drained_bytes_total").await;
        let r = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &a_sha,
                size: 10 * MIB + 12345,
                offset: Some(0),
                declared: Some(8 * MIB),
                source: &a,
                body_len: 8 * MIB,
                ..RawPut::default()
            },
        )
        .await;
        assert!(
            !r.cut,
            "the server reset the connection under the part: {r:?}"
        );
        assert!(r.status.contains(" 200 "), "{r:?}");
        assert_eq!(r.json()["duplicate"], true);
        assert_eq!(r.json()["received_ns"], up.receipt.received_ns);
        assert_eq!(
            metric(&server, "rampart_server_evidence_drained_bytes_total").await - drained,
            8 * MIB
        );
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
        // web-1 resumes its own: the client asks where to start, is told 1 MiB, sends the rest.
        let received = metric(&server, "rampart_server_evidence_bytes_total").await;
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
        assert_eq!(up_c.failures, 0, "{up_c:?}");
        assert_eq!(
            metric(&server, "rampart_server_evidence_bytes_total").await - received,
            MIB,
            "only the missing MiB is sent"
        );
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
        // An 8 MiB body, more than the sockets' buffers hold: the client must still read the
        // 401, not a reset in the middle of its write (the server reads and discards a bounded
        // part of a refused body before answering; it once answered at once and closed).
        let big = bundle_file(tmp.path(), "big", 8 * MIB, 6);
        let drained = metric(&server, "rampart_server_evidence_drained_bytes_total").await;
        let r = request(
            anonymous_tls(&server),
            &server.url(),
            Method::PUT,
            &format!("/api/v1/evidence/{}", sha256_file(&big)),
            &[("rampart-evidence-size", &(8 * MIB).to_string())],
            std::fs::read(&big).expect("big"),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.body_text());
        assert!(!server.data().join("evidence/partial").exists());
        // Read to answer, discarded, counted: exactly the body, nothing stored.
        assert_eq!(
            metric(&server, "rampart_server_evidence_drained_bytes_total").await - drained,
            8 * MIB
        );
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

/// One raw upload request (see [`raw_put`]).
struct RawPut<'a> {
    sha: &'a str,
    /// `rampart-evidence-size`.
    size: u64,
    /// `rampart-evidence-offset` (absent when `None`).
    offset: Option<u64>,
    /// `content-length` (chunked when `None`).
    declared: Option<u64>,
    /// The body: `body_len` bytes of this file from `skip` on (the file repeated if shorter).
    source: &'a Path,
    skip: u64,
    body_len: u64,
    /// Sends `expect: 100-continue` and the body only after `100 Continue` (as curl does).
    expect_continue: bool,
    /// Socket send buffer of the client (the kernel doubles it; `None`: the kernel's
    /// autotuning): small by default, as over a network whose bandwidth-delay product is
    /// smaller than a part.
    send_buffer: Option<u32>,
    /// How long to wait for the answer.
    wait: Duration,
}

impl Default for RawPut<'_> {
    fn default() -> Self {
        RawPut {
            sha: "",
            size: 0,
            offset: None,
            declared: None,
            source: Path::new("/dev/null"),
            skip: 0,
            body_len: 0,
            expect_continue: false,
            send_buffer: Some(64 << 10),
            wait: Duration::from_secs(30),
        }
    }
}

/// What a raw request got.
#[derive(Debug)]
struct RawAnswer {
    /// The final answer's status line (empty without one).
    status: String,
    /// A `100 Continue` came before it.
    continued: bool,
    /// Writing the body failed (the server closed or reset the connection under it).
    cut: bool,
    /// Body bytes written.
    sent: u64,
    /// The final answer's head and body.
    text: String,
}

impl RawAnswer {
    fn json(&self) -> Value {
        let body = self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// Reads one answer (head and `content-length` body) from `s`, at most until `deadline`.
async fn read_answer<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buffered: &mut Vec<u8>,
    deadline: Instant,
) -> Vec<u8> {
    let mut b = [0u8; 4096];
    loop {
        if let Some(end) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffered[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buffered.len() >= end + 4 + len {
                return buffered.drain(..end + 4 + len).collect();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return std::mem::take(buffered),
            Ok(Ok(n)) => buffered.extend_from_slice(&b[..n]),
        }
    }
}

/// Sends `PUT /api/v1/evidence/{sha}` over a raw TLS connection with the agent's identity,
/// writing the whole body as fast as the server takes it before reading (unless it expects
/// `100 Continue`), as most HTTP/1.1 clients do.
async fn raw_put(server: &RampartServer, tls: Arc<ClientConfig>, req: RawPut<'_>) -> RawAnswer {
    let RawPut {
        sha,
        size,
        offset,
        declared,
        source,
        skip,
        body_len,
        expect_continue,
        send_buffer,
        wait,
    } = req;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(n) = send_buffer {
        socket.set_send_buffer_size(n).expect("SO_SNDBUF");
    }
    let tcp = socket.connect(server.addr).await.expect("connect");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS");
    let length = match declared {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".into(),
    };
    let offset = offset.map_or(String::new(), |o| {
        format!("rampart-evidence-offset: {o}\r\n")
    });
    let expect = if expect_continue {
        "expect: 100-continue\r\n"
    } else {
        ""
    };
    let head = format!(
        "PUT /api/v1/evidence/{sha} HTTP/1.1\r\nhost: {}\r\nrampart-evidence-size: {size}\r\n{offset}{expect}{length}\r\n",
        server.addr
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.flush().await.expect("head");
    let mut buffered = Vec::new();
    let mut continued = false;
    if expect_continue {
        let first = read_answer(&mut s, &mut buffered, Instant::now() + wait).await;
        if first.starts_with(b"HTTP/1.1 100 ") {
            continued = true;
        } else {
            let text = String::from_utf8_lossy(&first).into_owned();
            return RawAnswer {
                status: text.lines().next().unwrap_or("").to_string(),
                continued,
                cut: false,
                sent: 0,
                text,
            };
        }
    }
    let mut file = tokio::fs::File::open(source).await.expect("source");
    let mut skipped = 0u64;
    let mut buf = vec![0u8; (1 << 20) as usize];
    while skipped < skip {
        let want = ((skip - skipped) as usize).min(buf.len());
        skipped += file.read(&mut buf[..want]).await.expect("read") as u64;
    }
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
    if s.flush().await.is_err() {
        cut = true;
    }
    let answer = read_answer(&mut s, &mut buffered, Instant::now() + wait).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    RawAnswer {
        status: text.lines().next().unwrap_or("").to_string(),
        continued,
        cut,
        sent,
        text,
    }
}

/// The value of counter `name` in the server's `/metrics`.
async fn metric(server: &RampartServer, name: &str) -> u64 {
    let r = request(
        anonymous_tls(server),
        &server.url(),
        Method::GET,
        "/metrics",
        &[("authorization", &format!("Bearer {}", server.admin_token()))],
        Vec::new(),
    )
    .await;
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}")) as u64
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
        raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &"e".repeat(64),
                size: 1 << 30,
                declared: Some(1 << 30),
                source: &small,
                body_len: 2048,
                wait: Duration::from_millis(500),
                send_buffer: None,
                ..RawPut::default()
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
        let status = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &big_sha,
                size: 512 * MIB,
                declared: Some(512 * MIB),
                source: &big,
                body_len: 512 * MIB,
                wait: Duration::from_secs(60),
                send_buffer: None,
                ..RawPut::default()
            },
        )
        .await
        .status;
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
        let status = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &"b".repeat(64),
                size: (1 << 30) + 1,
                declared: Some(2048),
                source: &small,
                body_len: 2048,
                wait: Duration::from_secs(10),
                send_buffer: None,
                ..RawPut::default()
            },
        )
        .await
        .status;
        assert!(status.contains(" 413 "), "{status}");
        // Over this agent's quota (512 MiB stored and 2 KB being uploaded, 1 GiB allowed).
        let status = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &"c".repeat(64),
                size: 600 * MIB,
                declared: Some(2048),
                source: &small,
                body_len: 2048,
                wait: Duration::from_secs(10),
                send_buffer: None,
                ..RawPut::default()
            },
        )
        .await
        .status;
        assert!(status.contains(" 413 "), "{status}");
        // A body running past the announced size (chunked, 256 MiB for a 1 MiB bundle): cut
        // off at the size, and what it wrote is dropped.
        let src = bundle_file(tmp.path(), "src", 4 * MIB, 9);
        let r = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                sha: &"d".repeat(64),
                size: MIB,
                declared: None,
                source: &src,
                body_len: 256 * MIB,
                wait: Duration::from_secs(10),
                send_buffer: None,
                ..RawPut::default()
            },
        )
        .await;
        // The answer is 413; a client still writing may instead see the connection reset.
        assert!(r.status.contains(" 413 ") || r.cut, "{r:?}");
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

/// A loopback TCP relay in front of the server, for what the network does to an upload: it
/// counts the bytes clients send through it and, with `cut_after`, closes every connection
/// once that many have passed and accepts no more (the link lost mid-upload).
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(server: std::net::SocketAddr, cut_after: Option<u64>) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay");
        let addr = listener.local_addr().expect("relay address");
        let up = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut = Arc::new(cut);
        let counted = up.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut stop = cut.subscribe();
                let client = tokio::select! {
                    a = listener.accept() => match a {
                        Ok((c, _)) => c,
                        Err(_) => return,
                    },
                    _ = stop.wait_for(|c| *c) => return,
                };
                let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                    continue;
                };
                let (up, cut) = (counted.clone(), cut.clone());
                tokio::spawn(async move {
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = upstream.into_split();
                    let to_server = async {
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let before = up.fetch_add(n as u64, Ordering::SeqCst);
                            let n = match cut_after {
                                Some(limit) if before + n as u64 >= limit => {
                                    let last = limit.saturating_sub(before) as usize;
                                    let _ = sw.write_all(&buf[..last]).await;
                                    cut.send_replace(true);
                                    return;
                                }
                                _ => n,
                            };
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let to_client = tokio::io::copy(&mut sr, &mut cw);
                    tokio::select! {
                        () = to_server => {}
                        _ = to_client => {}
                        _ = stop.wait_for(|c| *c) => {}
                    }
                    // Both connections close here.
                });
            }
        });
        Relay { addr, up, task }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn sent(&self) -> u64 {
        self.up.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The agent's view of its upload through the status route.
async fn upload_status(
    server: &RampartServer,
    tls_dir: &Path,
    sha: &str,
    size: u64,
) -> rampart_ship::protocol::EvidenceStatus {
    let r = request(
        agent_tls(tls_dir),
        &server.url(),
        Method::GET,
        &format!("/api/v1/evidence/{sha}/upload"),
        &[("rampart-evidence-size", &size.to_string())],
        Vec::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_text()))
}

/// The server's peak RSS stayed where it was with the bounded reads (idle: about 56 MiB).
fn peak_rss_is_bounded(server: &RampartServer) {
    let hwm = server.vm_hwm_kib();
    eprintln!("peak RSS: {} MiB", hwm / 1024);
    assert!(hwm < 160 * 1024, "peak RSS {} MiB", hwm / 1024);
}

fn parts_of_8_mib() -> UploadOptions {
    UploadOptions {
        part_bytes: 8 * MIB,
        ..fast()
    }
}

/// Regression (uploads of big bundles could never resume, and a re-sent finished bundle was
/// reported as a failure): the server answered a replay or an offset conflict without
/// reading the part, a client writing an 8 MiB part saw the connection reset instead of the
/// answer, started again from 0 and gave up.
#[test]
fn an_upload_cut_after_its_first_8_mib_part_resumes_with_only_the_missing_bytes() {
    let server = RampartServer::start("");
    let (web_dir, web_id) = server.enroll("web-1");
    let tmp = tempfile::tempdir().expect("tmp");
    let size = 24 * MIB;
    let a = bundle_file(tmp.path(), "web-a.tar.zst", size, 21);
    let a_sha = sha256_file(&a);
    let rt = runtime();
    rt.block_on(async {
        // The link dies 12 MiB into the upload: after part 1 (8 MiB) and half of part 2. The
        // agent gives up (one attempt), as one that is killed or restarted would.
        let relay = Relay::start(server.addr, Some(12 * MIB)).await;
        let e = upload_with(
            &relay.url(),
            agent_tls(&web_dir),
            &a,
            &meta("web-a.tar.zst"),
            &UploadOptions {
                attempts: 1,
                ..parts_of_8_mib()
            },
        )
        .await
        .expect_err("the link was cut");
        assert!(matches!(e, UploadError::Failed { .. }), "{e}");
        drop(relay);
        // Once the server has noticed, it holds part 1 and what arrived of part 2, exactly
        // the file's first bytes.
        let deadline = Instant::now() + Duration::from_secs(20);
        let held = loop {
            let st = upload_status(&server, &web_dir, &a_sha, size).await;
            if !st.uploading {
                break st.offset;
            }
            assert!(Instant::now() < deadline, "the cut request never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!((8 * MIB..12 * MIB).contains(&held), "held {held}");
        let partial = server
            .data()
            .join("evidence/partial")
            .join(&web_id)
            .join(&a_sha);
        let on_disk = std::fs::read(&partial).expect("partial");
        assert_eq!(on_disk.len() as u64, held);
        assert!(on_disk == std::fs::read(&a).expect("a")[..held as usize]);

        // A new agent process resumes: it asks, then sends only the rest.
        let relay = Relay::start(server.addr, None).await;
        let up = upload_with(
            &relay.url(),
            agent_tls(&web_dir),
            &a,
            &meta("web-a.tar.zst"),
            &parts_of_8_mib(),
        )
        .await
        .expect("resumed upload");
        assert_eq!(up.receipt.sha256, a_sha);
        assert_eq!(up.failures, 0, "{up:?}");
        assert!(!up.receipt.duplicate);
        let sent = relay.sent();
        eprintln!(
            "resume: {} bytes on the wire for the {} missing",
            sent,
            size - held
        );
        // TLS records and the requests' heads cost well under 1% on top.
        assert!(
            sent >= size - held && sent < size - held + 256 * 1024,
            "{sent} bytes sent to resume {} missing",
            size - held
        );
        assert_eq!(sha256_file(&server.evidence_blob(&a_sha)), a_sha);
        assert!(!partial.exists());
        // Every byte was written once, none read for nothing.
        assert_eq!(
            metric(&server, "rampart_server_evidence_bytes_total").await,
            size
        );
        assert_eq!(
            metric(&server, "rampart_server_evidence_drained_bytes_total").await,
            0
        );

        // The finished bundle sent again, by the library with 8 MiB parts: the first receipt,
        // a success, and no body on the wire.
        let relay = Relay::start(server.addr, None).await;
        let again = upload_with(
            &relay.url(),
            agent_tls(&web_dir),
            &a,
            &meta("web-a.tar.zst"),
            &parts_of_8_mib(),
        )
        .await
        .expect("a replay is a success");
        assert!(again.receipt.duplicate);
        assert_eq!(again.receipt.received_ns, up.receipt.received_ns);
        assert_eq!(again.failures, 0);
        assert!(relay.sent() < 64 * 1024, "{} bytes sent", relay.sent());
        // Replayed raw, part by part, by a client that writes each 8 MiB part before it
        // reads, over socket buffers far smaller than the part: each gets the first receipt.
        for part in 0..3 {
            let r = raw_put(
                &server,
                agent_tls(&web_dir),
                RawPut {
                    sha: &a_sha,
                    size,
                    offset: Some(part * 8 * MIB),
                    declared: Some(8 * MIB),
                    source: &a,
                    skip: part * 8 * MIB,
                    body_len: 8 * MIB,
                    ..RawPut::default()
                },
            )
            .await;
            assert!(!r.cut, "part {part}: reset under the body: {r:?}");
            assert!(r.status.contains(" 200 "), "part {part}: {r:?}");
            assert_eq!(r.json()["received_ns"], up.receipt.received_ns);
        }
        assert_eq!(
            metric(&server, "rampart_server_evidence_drained_bytes_total").await,
            24 * MIB
        );
        assert_eq!(
            metric(&server, "rampart_server_evidence_bytes_total").await,
            size,
            "nothing of the replays was stored"
        );
        let admin = server.admin_token();
        assert_eq!(listing(&server, &admin, "").await.len(), 1);
        assert_eq!(blobs(&server), vec![a_sha.clone()]);
    });
    peak_rss_is_bounded(&server);
}

/// A client that starts elsewhere than the server's offset, ahead or behind, or lies about
/// what its bytes are: the server's copy never changes but by appending at its own offset,
/// the client is told the offset (even when it writes an 8 MiB part before reading), and
/// what the server reads for nothing is bounded.
#[test]
fn a_part_at_the_wrong_offset_is_told_the_servers_offset_and_changes_nothing() {
    let server = RampartServer::start("");
    let (web_dir, web_id) = server.enroll("web-1");
    let (db_dir, _) = server.enroll("db-1");
    let tmp = tempfile::tempdir().expect("tmp");
    let size = 24 * MIB;
    let a = bundle_file(tmp.path(), "a", size, 31);
    let a_sha = sha256_file(&a);
    let a_bytes = std::fs::read(&a).expect("a");
    let partial = server
        .data()
        .join("evidence/partial")
        .join(&web_id)
        .join(&a_sha);
    let held_is = |n: u64| {
        let on_disk = std::fs::read(&partial).unwrap_or_default();
        assert_eq!(on_disk.len() as u64, n);
        assert!(on_disk == a_bytes[..n as usize], "the held bytes changed");
    };
    let drained = || metric(&server, "rampart_server_evidence_drained_bytes_total");
    let rt = runtime();
    rt.block_on(async {
        let put = |offset: u64, body_len: u64| RawPut {
            sha: &a_sha,
            size,
            offset: Some(offset),
            declared: Some(body_len),
            source: &a,
            skip: offset,
            body_len,
            ..RawPut::default()
        };
        // Part 1.
        let r = raw_put(&server, agent_tls(&web_dir), put(0, 8 * MIB)).await;
        assert!(r.status.contains(" 202 "), "{r:?}");
        assert_eq!(r.json()["offset"], 8 * MIB);
        held_is(8 * MIB);
        // Ahead of the server (a part it never got), and behind it (an agent that starts
        // again from 0): 409 with the offset, the 8 MiB part read to the end and discarded.
        for offset in [16 * MIB, 0, 8 * MIB - 1] {
            let before = drained().await;
            let r = raw_put(&server, agent_tls(&web_dir), put(offset, 8 * MIB)).await;
            assert!(!r.cut, "offset {offset}: reset under the body: {r:?}");
            assert!(r.status.contains(" 409 "), "offset {offset}: {r:?}");
            assert_eq!(r.json()["offset"], 8 * MIB);
            assert_eq!(drained().await - before, 8 * MIB);
            held_is(8 * MIB);
        }
        // As curl does for a large body: `expect: 100-continue`. At a wrong offset the answer
        // comes first and no body is sent (hyper sends `100 Continue` only when the handler
        // reads the body); at the right one the body goes after `100 Continue` and is stored.
        let before = drained().await;
        let r = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                expect_continue: true,
                ..put(0, 8 * MIB)
            },
        )
        .await;
        assert!(r.status.contains(" 409 "), "{r:?}");
        assert!(!r.continued && r.sent == 0, "{r:?}");
        assert_eq!(r.json()["offset"], 8 * MIB);
        assert_eq!(drained().await, before);
        let r = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                expect_continue: true,
                ..put(8 * MIB, 8 * MIB)
            },
        )
        .await;
        assert!(r.continued, "{r:?}");
        assert!(r.status.contains(" 202 "), "{r:?}");
        assert_eq!(r.json()["offset"], 16 * MIB);
        held_is(16 * MIB);
        // Longer than the server reads for nothing (16 MiB): announced, it is not read at
        // all; chunked, reading stops at the bound. Either way the connection is closed.
        let before = drained().await;
        let _ = raw_put(&server, agent_tls(&web_dir), put(0, size)).await;
        assert_eq!(drained().await, before, "an announced 24 MiB body was read");
        let before = drained().await;
        let r = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                declared: None,
                body_len: 256 * MIB,
                ..put(0, 0)
            },
        )
        .await;
        let read = drained().await - before;
        assert!(
            read <= 17 * MIB,
            "{read} bytes read of a 256 MiB body: {r:?}"
        );
        assert!(
            r.cut || r.text.to_ascii_lowercase().contains("connection: close"),
            "{r:?}"
        );
        held_is(16 * MIB);

        // The right offset with bytes that are not the bundle's: stored, then refused as a
        // whole when the hash does not match; nothing is kept, no receipt exists.
        let other = bundle_file(tmp.path(), "other", 8 * MIB, 32);
        let r = raw_put(
            &server,
            agent_tls(&web_dir),
            RawPut {
                source: &other,
                skip: 0,
                ..put(16 * MIB, 8 * MIB)
            },
        )
        .await;
        assert!(r.status.contains(" 422 "), "{r:?}");
        assert!(!partial.exists());
        assert!(blobs(&server).is_empty());
        let admin = server.admin_token();
        assert!(listing(&server, &admin, "").await.is_empty());
        // The honest agent then uploads from 0 (it is told the server holds nothing).
        assert_eq!(
            upload_status(&server, &web_dir, &a_sha, size).await.offset,
            0
        );
        let up = upload_with(
            &server.url(),
            agent_tls(&web_dir),
            &a,
            &meta("a"),
            &parts_of_8_mib(),
        )
        .await
        .expect("upload");
        assert_eq!(up.receipt.sha256, a_sha);
        assert_eq!(sha256_file(&server.evidence_blob(&a_sha)), a_sha);
        // The status route is the agent's own: another agent's view of the same bundle is
        // its own (nothing held, no receipt); without a certificate it is refused.
        let st = upload_status(&server, &db_dir, &a_sha, size).await;
        assert_eq!((st.offset, st.receipt.is_none()), (0, true));
        let r = request(
            anonymous_tls(&server),
            &server.url(),
            Method::GET,
            &format!("/api/v1/evidence/{a_sha}/upload"),
            &[("rampart-evidence-size", &size.to_string())],
            Vec::new(),
        )
        .await;
        assert_eq!(r.status, 401);
    });
    peak_rss_is_bounded(&server);
}

/// Two uploads of the same bundle by the same agent at once (an agent retrying while its
/// first request still runs, two responders of one host): one writes, the other waits for
/// it; both end with the one receipt, every byte is written once.
#[test]
fn two_clients_uploading_the_same_bundle_at_once_both_get_its_receipt() {
    let server = RampartServer::start("");
    let (web_dir, _) = server.enroll("web-1");
    let tmp = tempfile::tempdir().expect("tmp");
    let size = 24 * MIB;
    let a = bundle_file(tmp.path(), "a", size, 41);
    let a_sha = sha256_file(&a);
    let rt = runtime();
    rt.block_on(async {
        let (url, m, opts) = (server.url(), meta("a"), parts_of_8_mib());
        let one = upload_with(&url, agent_tls(&web_dir), &a, &m, &opts);
        let two = upload_with(&url, agent_tls(&web_dir), &a, &m, &opts);
        let (one, two) = tokio::join!(one, two);
        let (one, two) = (one.expect("first"), two.expect("second"));
        assert_eq!(one.receipt.sha256, a_sha);
        assert_eq!(two.receipt.sha256, a_sha);
        assert_eq!(one.receipt.received_ns, two.receipt.received_ns);
        assert_eq!(
            [one.receipt.duplicate, two.receipt.duplicate]
                .iter()
                .filter(|d| !**d)
                .count(),
            1,
            "exactly one stored it: {one:?} {two:?}"
        );
        assert_eq!(
            metric(&server, "rampart_server_evidence_bytes_total").await,
            size,
            "every byte written once"
        );
        eprintln!(
            "read for nothing: {} bytes; failures {} and {}",
            metric(&server, "rampart_server_evidence_drained_bytes_total").await,
            one.failures,
            two.failures
        );
        assert_eq!(sha256_file(&server.evidence_blob(&a_sha)), a_sha);
        let admin = server.admin_token();
        assert_eq!(listing(&server, &admin, "").await.len(), 1);
        assert_eq!(blobs(&server), vec![a_sha.clone()]);
    });
}
