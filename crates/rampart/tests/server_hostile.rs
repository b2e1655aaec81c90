//! Issue 16: a real `rampart server` process under hostile input. Each test starts the binary
//! (its own process, so that its peak RSS is the server's: `VmHWM` of /proc/PID/status), enrolls
//! two agents (`web-1`, `db-1`) and sends what a compromised host or an internet scanner would:
//! decompression bombs, bodies without a client certificate, more lines than a batch may have,
//! slow and idle connections, records claiming another host's identity or time, ids of
//! another agent, and generated malformed batches. After each, a valid batch of the other agent
//! must still be stored within a second, and nothing forged may show through the query API or
//! the dashboard.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use rampart_ship::client::{HttpClient, HttpResponse};
use serde_json::{json, Value};
use support::{rampart_ok, spawn, Proc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::ClientConfig;

/// Peak RSS the server may reach under everything these tests send (it idles at about 30 MiB;
/// before the fix one 2 KB zstd body took it to 2.1 GiB). Batches being parsed hold at most
/// `limits.ingest_memory_bytes` (256 MiB) by their weights; a 64 MiB bomb weighs 128 MiB.
const RSS_BOUND_KIB: u64 = 256 * 1024;

const MIB: usize = 1 << 20;

struct Server {
    proc: Proc,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    config: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Server {
    /// `rampart server` with tight timeouts (so the tests need not wait long) and otherwise
    /// the default limits.
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("server.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\nlimits:\n  max_connections: 64\n  handshake_timeout: 2s\n  header_timeout: 2s\n  idle_timeout: 6s\n  body_timeout: 4s\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let log = dir.path().join("server.log");
        let cfg = config.to_str().expect("utf-8").to_string();
        let proc = spawn(&["server", "--config", &cfg], Stdio::null(), &log);
        let s = Server {
            proc,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if s.data().join("admin.token").exists()
                && tokio::net::TcpStream::connect(s.addr).await.is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server and starts it again on the same data and port: a fresh process, so
    /// that its peak RSS measures only what happens after.
    async fn restart(&mut self) {
        drop(std::mem::replace(
            &mut self.proc,
            spawn(
                &["--version"],
                Stdio::null(),
                &self.dir.path().join("noop.log"),
            ),
        ));
        let log = self.dir.path().join("server-restarted.log");
        let cfg = self.config.to_str().expect("utf-8").to_string();
        self.proc = spawn(&["server", "--config", &cfg], Stdio::null(), &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(self.addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the server did not restart: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Peak resident set of the server process, KiB.
    fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id()))
            .expect("the server is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    fn assert_rss_bounded(&self, after: &str) {
        let hwm = self.vm_hwm_kib();
        assert!(
            hwm < RSS_BOUND_KIB,
            "after {after}: peak RSS {} MiB, over the bound of {} MiB",
            hwm / 1024,
            RSS_BOUND_KIB / 1024
        );
        eprintln!("after {after}: peak RSS {} MiB", hwm / 1024);
    }

    /// A client that trusts the server's CA and shows no certificate.
    fn anonymous_tls(&self) -> Arc<ClientConfig> {
        let roots =
            rampart_ship::tls::load_roots(&self.data().join("ca/ca.crt")).expect("CA certificate");
        rampart_ship::tls::client_config(roots, None).expect("TLS config")
    }

    async fn enroll(&self, host: &str) -> Agent {
        let cfg = self.config.to_str().expect("utf-8");
        let token = rampart_ok(&[
            "server",
            "--config",
            cfg,
            "enroll-token",
            "--region",
            "eu-de",
        ]);
        let dir = self.dir.path().join(format!("agent-{host}"));
        let e = rampart_ship::enroll::enroll(&self.url(), token.trim(), host, &dir, false)
            .await
            .unwrap_or_else(|e| panic!("enrolling {host}: {e}"));
        Agent {
            id: e.agent_id.clone(),
            tls: rampart_ship::tls::agent_client_config(&dir).expect("agent TLS"),
            url: self.url(),
            seq: 0,
        }
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data().join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string()
    }

    async fn get(&self, path: &str) -> Value {
        let r = request(
            self.anonymous_tls(),
            &self.url(),
            Method::GET,
            path,
            &[("authorization", &format!("Bearer {}", self.admin_token()))],
            Vec::new(),
        )
        .await
        .expect("query API");
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        serde_json::from_slice(&r.body).expect("JSON")
    }

    async fn records(&self, query: &str) -> Vec<Value> {
        self.get(&format!("/api/v1/records?{query}&limit=10000"))
            .await
            .get("records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    async fn metrics(&self) -> String {
        let r = request(
            self.anonymous_tls(),
            &self.url(),
            Method::GET,
            "/metrics",
            &[("authorization", &format!("Bearer {}", self.admin_token()))],
            Vec::new(),
        )
        .await
        .expect("metrics");
        String::from_utf8_lossy(&r.body).into_owned()
    }
}

/// Sends one request; `Err` when the connection failed or was closed without an answer.
async fn request(
    tls: Arc<ClientConfig>,
    url: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, String> {
    let mut c = HttpClient::new(url, Some(tls))
        .map_err(|e| e.to_string())?
        .with_timeout(Duration::from_secs(30))
        // The read-back of stored records may hold many 8 MiB lines.
        .with_max_response(1 << 30);
    c.request(method, path, headers, Bytes::from(body))
        .await
        .map_err(|e| e.to_string())
}

struct Agent {
    id: String,
    tls: Arc<ClientConfig>,
    url: String,
    seq: u64,
}

impl Agent {
    async fn ingest(&self, body: Vec<u8>, encoding: Option<&str>) -> Result<HttpResponse, String> {
        let mut headers = vec![("content-type", "application/x-ndjson")];
        if let Some(e) = encoding {
            headers.push(("content-encoding", e));
        }
        request(
            self.tls.clone(),
            &self.url,
            Method::POST,
            "/api/v1/ingest",
            &headers,
            body,
        )
        .await
    }

    async fn ingest_records(&self, records: &[Value]) -> HttpResponse {
        let body = jsonl(records);
        let z = zstd::bulk::compress(&body, 3).expect("zstd");
        self.ingest(z, Some("zstd")).await.expect("ingest")
    }

    /// Ships a fresh valid batch and checks it is answered 200 and queryable within a second.
    async fn ships_within_a_second(&mut self, server: &Server, after: &str) {
        self.seq += 1;
        let id = format!("{}-ok-{}", self.id, self.seq);
        let started = Instant::now();
        let r = self
            .ingest_records(&[record(&id, "process.exec", now_ns(), "db-1")])
            .await;
        assert_eq!(r.status, 200, "after {after}: {}", r.body_text());
        let found = server.records(&format!("id={id}")).await;
        let took = started.elapsed();
        assert_eq!(found.len(), 1, "after {after}: {id} stored");
        assert!(
            took < Duration::from_secs(1),
            "after {after}: a valid batch took {took:?}"
        );
    }
}

fn record(id: &str, event_type: &str, time_ns: u64, host: &str) -> Value {
    json!({
        "metadata": {"uid": id, "version": "1"},
        "type": event_type,
        "time_ns": time_ns,
        "device": {"hostname": host, "region": "us-ca"},
        "process": {"pid": 1, "exe": "/bin/true"},
    })
}

fn jsonl(records: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// A zstd frame that does not record its content size (a streaming compressor's).
fn zstd_streamed(data: &[u8]) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    std::io::Write::write_all(&mut enc, data).expect("compress");
    enc.finish().expect("finish")
}

/// Opens a TLS connection (no client certificate).
async fn tls_connect(server: &Server) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name =
        tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    tokio_rustls::TlsConnector::from(server.anonymous_tls())
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the server closes the connection (or `limit` passes); returns what came and
/// when it closed.
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), s.read(&mut buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, Some(started.elapsed())),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, None),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bodies_are_refused_before_they_cost_memory() {
    let s = Server::start().await;
    let web = s.enroll("web-1").await;
    let mut db = s.enroll("db-1").await;
    db.ships_within_a_second(&s, "start").await;

    // 64 MiB of newlines in a 2 KB zstd body (the frame records its size): more lines than a
    // batch may have.
    let newlines = vec![b'\n'; 64 * MIB];
    let bomb = zstd::bulk::compress(&newlines, 19).expect("zstd");
    assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
    let r = web
        .ingest(bomb.clone(), Some("zstd"))
        .await
        .expect("answer");
    assert_eq!(r.status, 413, "{}", r.body_text());
    assert!(
        r.body_text().contains("limits.ingest_lines"),
        "{}",
        r.body_text()
    );
    // The same from a streaming compressor (no recorded size), and 64 MiB + 1 (over the body
    // cap), and a few at once.
    let r = web
        .ingest(zstd_streamed(&newlines), Some("zstd"))
        .await
        .expect("answer");
    assert_eq!(r.status, 413, "{}", r.body_text());
    let mut over = newlines.clone();
    over.push(b'\n');
    let r = web
        .ingest(zstd::bulk::compress(&over, 19).expect("zstd"), Some("zstd"))
        .await
        .expect("answer");
    assert_eq!(r.status, 413, "{}", r.body_text());
    assert!(
        r.body_text().contains("limits.ingest_body_bytes"),
        "{}",
        r.body_text()
    );
    let r = web
        .ingest(zstd_streamed(&over), Some("zstd"))
        .await
        .expect("answer");
    assert_eq!(r.status, 413, "{}", r.body_text());
    drop(over);
    let parallel: Vec<_> = (0..8)
        .map(|_| {
            let tls = web.tls.clone();
            let url = web.url.clone();
            let body = bomb.clone();
            tokio::spawn(async move {
                request(
                    tls,
                    &url,
                    Method::POST,
                    "/api/v1/ingest",
                    &[("content-encoding", "zstd")],
                    body,
                )
                .await
                .map(|r| r.status)
            })
        })
        .collect();
    for p in parallel {
        assert_eq!(p.await.expect("task"), Ok(413));
    }
    // Just under the line limit: 100 000 lines, all empty, is a valid (empty) batch.
    let r = web
        .ingest(
            zstd::bulk::compress(&vec![b'\n'; 100_000], 3).expect("zstd"),
            Some("zstd"),
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 200, "{}", r.body_text());
    drop(newlines);
    db.ships_within_a_second(&s, "decompression bombs").await;
    s.assert_rss_bounded("decompression bombs");

    // No client certificate: refused before the body is read. Eight 64 MiB bodies at once;
    // each connection is answered 401 (or closed) while the client is still writing.
    let parallel: Vec<_> = (0..8)
        .map(|_| {
            let tls = s.anonymous_tls();
            let url = s.url();
            tokio::spawn(async move {
                request(
                    tls,
                    &url,
                    Method::POST,
                    "/api/v1/ingest",
                    &[],
                    vec![b'x'; 64 * MIB],
                )
                .await
                .map(|r| r.status)
            })
        })
        .collect();
    for p in parallel {
        match p.await.expect("task") {
            Ok(status) => assert_eq!(status, 401),
            // The server answered and closed while the client was still sending.
            Err(e) => eprintln!("unauthenticated upload cut off: {e}"),
        }
    }
    // The answer comes before the body: headers announcing 64 MiB, and no body at all.
    let mut c = tls_connect(&s).await;
    c.write_all(
        format!(
            "POST /api/v1/ingest HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
            64 * MIB
        )
        .as_bytes(),
    )
    .await
    .expect("headers");
    let (answer, closed) = read_until_closed(&mut c, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        closed.is_some(),
        "the connection is closed after the answer"
    );
    db.ships_within_a_second(&s, "unauthenticated uploads")
        .await;
    s.assert_rss_bounded("unauthenticated uploads");

    // Every other route takes small bodies only; an admin route refuses a request without
    // its token before reading the body.
    for (path, big, status) in [
        (
            "/api/v1/enroll",
            format!("{{\"token\":\"{}\"}}", "a".repeat(MIB)),
            413,
        ),
        (
            "/ui/api/login",
            format!(
                "{{\"username\":\"admin\",\"password\":\"{}\"}}",
                "a".repeat(MIB)
            ),
            413,
        ),
        (
            "/api/v1/tokens",
            format!("{{\"name\":\"{}\"}}", "a".repeat(MIB)),
            401,
        ),
    ] {
        let r = request(
            s.anonymous_tls(),
            &s.url(),
            Method::POST,
            path,
            &[("content-type", "application/json")],
            big.into_bytes(),
        )
        .await;
        match r {
            Ok(r) => assert_eq!(r.status, status, "{path}: {}", r.body_text()),
            Err(e) => eprintln!("{path}: cut off: {e}"),
        }
    }
    // With the admin token, the body limit applies.
    let r = request(
        s.anonymous_tls(),
        &s.url(),
        Method::POST,
        "/api/v1/tokens",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {}", s.admin_token())),
        ],
        format!("{{\"name\":\"{}\",\"role\":\"admin\"}}", "a".repeat(MIB)).into_bytes(),
    )
    .await;
    match r {
        Ok(r) => assert_eq!(r.status, 413, "{}", r.body_text()),
        Err(e) => eprintln!("/api/v1/tokens with a token: cut off: {e}"),
    }
    db.ships_within_a_second(&s, "large bodies on other routes")
        .await;
    let m = s.metrics().await;
    assert!(
        m.contains("rampart_server_ingest_too_large_total 12"),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "rampart_server_agent_ingest_refused_total{{agent=\"{}\"}} 12",
            web.id
        )),
        "{m}"
    );
    s.assert_rss_bounded("every hostile body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_too_many_connections_are_closed() {
    let s = Server::start().await;
    let mut db = s.enroll("db-1").await;

    // Idle after the handshake (no request): closed after limits.header_timeout (2 s).
    let mut idle = tls_connect(&s).await;
    // Headers that never end: closed after limits.header_timeout (2 s).
    let mut slow = tls_connect(&s).await;
    slow.write_all(b"POST /api/v1/ingest HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .expect("partial headers");
    // A TCP connection that never starts TLS: closed after limits.handshake_timeout (2 s).
    let mut raw = tokio::net::TcpStream::connect(s.addr).await.expect("tcp");
    let (ok_slow, ok_raw, ok_idle) = tokio::join!(
        read_until_closed(&mut slow, Duration::from_secs(10)),
        read_until_closed(&mut raw, Duration::from_secs(10)),
        read_until_closed(&mut idle, Duration::from_secs(15)),
    );
    let slow_closed = ok_slow.1.expect("slow headers: closed");
    assert!(slow_closed < Duration::from_secs(5), "{slow_closed:?}");
    let raw_closed = ok_raw.1.expect("no handshake: closed");
    assert!(raw_closed < Duration::from_secs(5), "{raw_closed:?}");
    // No request at all after the handshake: the header timeout closes it too.
    let idle_closed = ok_idle.1.expect("idle: closed");
    assert!(idle_closed < Duration::from_secs(5), "{idle_closed:?}");
    // An agent whose body stalls: answered 408 within limits.body_timeout (4 s), and its
    // ingest slot is free again.
    let web = s.enroll("web-1").await;
    let tcp = tokio::net::TcpStream::connect(s.addr).await.expect("tcp");
    let name =
        tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut stalled = tokio_rustls::TlsConnector::from(web.tls.clone())
        .connect(name, tcp)
        .await
        .expect("agent TLS");
    stalled
        .write_all(
            b"POST /api/v1/ingest HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000\r\n\r\n{\"meta",
        )
        .await
        .expect("a body that stalls");
    let (answer, closed) = read_until_closed(&mut stalled, Duration::from_secs(15)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let closed = closed.expect("closed");
    assert!(
        closed >= Duration::from_secs(3) && closed < Duration::from_secs(8),
        "{closed:?}"
    );

    // limits.max_connections (64) open: the next is closed as accepted, and a real agent gets
    // through again once the hoarded ones time out.
    let mut hoard = Vec::new();
    for _ in 0..64 {
        hoard.push(tokio::net::TcpStream::connect(s.addr).await.expect("tcp"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(s.addr).await.expect("tcp");
    let (_, closed) = read_until_closed(&mut extra, Duration::from_secs(1)).await;
    assert!(
        closed.is_some(),
        "a connection over the cap is closed at once"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    db.ships_within_a_second(&s, "a connection flood").await;
    drop(hoard);
    let m = s.metrics().await;
    let refused: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("rampart_server_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("connections refused counter");
    assert!(refused >= 1, "{m}");
    s.assert_rss_bounded("slow and idle connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cannot_speak_for_another_host() {
    let s = Server::start().await;
    let web = s.enroll("web-1").await;
    let db = s.enroll("db-1").await;
    let now = now_ns();
    // db-1's own posture and events.
    let r = db
        .ingest_records(&[
            record("inv-db", "inventory.host", now, "db-1"),
            record("shared-1", "process.exec", now, "db-1"),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    // web-1 claims to be db-1: a far-future posture that would pin db-1's row forever, an
    // alert in its name, and db-1's ids (pre-claimed for the future, and one already used).
    let far_future = now + 10 * 365 * 86_400 * 1_000_000_000;
    let mut forged_alert = record("al-forged", "alert", now, "db-1");
    forged_alert["rule"] = json!("Terminal shell in container");
    let r = web
        .ingest_records(&[
            record("inv-forged", "inventory.host", far_future, "db-1"),
            forged_alert,
            record("shared-1", "process.exec", now, "db-1"),
            record("shared-2", "process.exec", 1, ""),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let answer: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(
        answer["accepted"],
        4 + 1,
        "four records and the server's alert: {answer}"
    );
    // db-1 later uses the id web-1 took: still stored, its own.
    let r = db
        .ingest_records(&[record("shared-2", "process.exec", now, "db-1")])
        .await;
    let answer: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(answer["accepted"], 1, "{answer}");

    // Through the query API: everything web-1 sent is web-1's, with the claims kept as fields.
    let forged = s.records(&format!("agent={}", web.id)).await;
    assert_eq!(forged.len(), 5, "{forged:?}");
    let bound = now_ns() + 5 * 60 * 1_000_000_000;
    for r in &forged {
        assert_eq!(r["device"]["hostname"], "web-1", "{r}");
        let t = r["time_ns"].as_u64().expect("time_ns");
        assert!(t <= bound, "clamped to now + 5 min: {r}");
    }
    let inv = forged
        .iter()
        .find(|r| r["metadata"]["uid"] == "inv-forged")
        .expect("stored");
    assert_eq!(inv["device"]["claimed_hostname"], "db-1");
    assert_eq!(inv["claimed_time_ns"], far_future);
    let early = forged
        .iter()
        .find(|r| r["metadata"]["uid"] == "shared-2")
        .expect("stored");
    assert_eq!(early["claimed_time_ns"], 1, "before enrollment: clamped up");
    // Nothing under db-1 but db-1's own.
    let under_db = s.records("host=db-1").await;
    assert!(
        under_db
            .iter()
            .all(|r| r["metadata"]["uid"] != "inv-forged" && r["metadata"]["uid"] != "al-forged"),
        "{under_db:?}"
    );
    let ids: Vec<&str> = under_db
        .iter()
        .filter_map(|r| r["metadata"]["uid"].as_str())
        .collect();
    assert!(
        ids.contains(&"shared-1") && ids.contains(&"shared-2"),
        "{ids:?}"
    );
    assert_eq!(s.records("id=shared-1").await.len(), 2, "one per agent");
    // The server's alert names the claim, under the claimant.
    let alerts = s
        .get("/api/v1/alerts?rule=Agent%20claims%20another%20host%27s%20identity")
        .await;
    let alerts = alerts["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["device"]["hostname"], "web-1");
    assert!(
        alerts[0]["message"].as_str().unwrap_or("").contains("db-1"),
        "{}",
        alerts[0]
    );
    let m = s.metrics().await;
    assert!(
        m.contains(&format!(
            "rampart_server_agent_identity_claims_total{{agent=\"{}\"}} 3",
            web.id
        )),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "rampart_server_agent_clock_clamped_total{{agent=\"{}\"}} 2",
            web.id
        )),
        "{m}"
    );

    // Through the dashboard: db-1's posture is its own.
    let password = std::fs::read_to_string(s.data().join("admin.password"))
        .expect("admin.password")
        .trim()
        .to_string();
    let login = request(
        s.anonymous_tls(),
        &s.url(),
        Method::POST,
        "/ui/api/login",
        &[("content-type", "application/json")],
        json!({"username": "admin", "password": password})
            .to_string()
            .into_bytes(),
    )
    .await
    .expect("login");
    assert_eq!(login.status, 200, "{}", login.body_text());
    let cookie = login
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let host = request(
        s.anonymous_tls(),
        &s.url(),
        Method::GET,
        "/ui/api/hosts/db-1",
        &[("cookie", &cookie)],
        Vec::new(),
    )
    .await
    .expect("host page");
    assert_eq!(host.status, 200, "{}", host.body_text());
    let text = String::from_utf8_lossy(&host.body).into_owned();
    assert!(
        !text.contains("inv-forged") && !text.contains("al-forged"),
        "{text}"
    );
    let overview = request(
        s.anonymous_tls(),
        &s.url(),
        Method::GET,
        "/ui/api/overview",
        &[("cookie", &cookie)],
        Vec::new(),
    )
    .await
    .expect("overview");
    let o: Value = serde_json::from_slice(&overview.body).expect("JSON");
    let hosts = o["hosts"].as_array().cloned().unwrap_or_default();
    let db_row = hosts
        .iter()
        .find(|h| h["host"] == "db-1")
        .unwrap_or_else(|| panic!("db-1 listed: {o}"));
    assert_eq!(db_row["agent_id"], db.id.as_str(), "{db_row}");
    s.assert_rss_bounded("identity claims");
}

/// What a generated malformed batch is.
#[derive(Debug, Clone)]
enum Malformed {
    RandomBytes(Vec<u8>, bool),
    TruncatedZstd(usize),
    ConcatenatedFrames(usize, bool),
    InvalidUtf8(usize),
    DeepNesting(usize),
    HugeLine(usize),
    EmptyLines(usize),
    OtherAgentsIds(u8),
    ClockSkew(u64),
}

fn valid_lines(n: usize, prefix: &str) -> Vec<u8> {
    let records: Vec<Value> = (0..n)
        .map(|i| record(&format!("{prefix}-{i}"), "process.exec", now_ns(), "db-1"))
        .collect();
    jsonl(&records)
}

/// The body and content-encoding of `m`.
fn build(m: &Malformed, case: usize) -> (Vec<u8>, Option<&'static str>) {
    let prefix = format!("gen{case}");
    match m {
        Malformed::RandomBytes(b, zstd) => (b.clone(), zstd.then_some("zstd")),
        Malformed::TruncatedZstd(cut) => {
            let z = zstd::bulk::compress(&valid_lines(50, &prefix), 3).expect("zstd");
            let cut = (*cut % z.len()).max(1);
            (z[..cut].to_vec(), Some("zstd"))
        }
        Malformed::ConcatenatedFrames(split, streamed) => {
            let body = valid_lines(50, &prefix);
            let at = *split % body.len();
            let mut z = zstd::bulk::compress(&body[..at], 3).expect("zstd");
            if *streamed {
                z.extend(zstd_streamed(&body[at..]));
            } else {
                z.extend(zstd::bulk::compress(&body[at..], 3).expect("zstd"));
            }
            (z, Some("zstd"))
        }
        Malformed::InvalidUtf8(at) => {
            let mut body = valid_lines(20, &prefix);
            let at = *at % body.len();
            body.splice(at..at, [0xff, 0xfe, b'\n', 0xc3]);
            (body, None)
        }
        Malformed::DeepNesting(depth) => {
            let mut line = format!(
                "{{\"metadata\":{{\"uid\":\"{prefix}-deep\"}},\"type\":\"x\",\"time_ns\":1,\"d\":"
            );
            line.push_str(&"[".repeat(*depth));
            line.push_str(&"]".repeat(*depth));
            line.push_str("}\n");
            (
                zstd::bulk::compress(line.as_bytes(), 3).expect("zstd"),
                Some("zstd"),
            )
        }
        Malformed::HugeLine(len) => {
            let line = json!({
                "metadata": {"uid": format!("{prefix}-huge")},
                "type": "process.exec", "time_ns": now_ns(),
                "device": {"hostname": "db-1"},
                "blob": "a".repeat(*len),
            });
            (
                zstd::bulk::compress(line.to_string().as_bytes(), 3).expect("zstd"),
                Some("zstd"),
            )
        }
        Malformed::EmptyLines(n) => (
            zstd::bulk::compress(&vec![b'\n'; *n], 3).expect("zstd"),
            Some("zstd"),
        ),
        Malformed::OtherAgentsIds(n) => {
            let records: Vec<Value> = (0..*n)
                .map(|i| record(&format!("db-own-{i}"), "inventory.host", now_ns(), "db-1"))
                .collect();
            (jsonl(&records), None)
        }
        Malformed::ClockSkew(t) => (
            jsonl(&[record(
                &format!("{prefix}-skew"),
                "inventory.host",
                *t,
                "db-1",
            )]),
            None,
        ),
    }
}

fn malformed() -> impl proptest::strategy::Strategy<Value = Malformed> {
    use proptest::prelude::*;
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..4096),
            any::<bool>()
        )
            .prop_map(|(b, z)| Malformed::RandomBytes(b, z)),
        any::<usize>().prop_map(Malformed::TruncatedZstd),
        (any::<usize>(), any::<bool>()).prop_map(|(s, z)| Malformed::ConcatenatedFrames(s, z)),
        any::<usize>().prop_map(Malformed::InvalidUtf8),
        (1usize..200_000).prop_map(Malformed::DeepNesting),
        (1usize..(8 << 20)).prop_map(Malformed::HugeLine),
        (50_000usize..4_000_000).prop_map(Malformed::EmptyLines),
        (1u8..50).prop_map(Malformed::OtherAgentsIds),
        any::<u64>().prop_map(Malformed::ClockSkew),
    ]
}

#[test]
fn generated_malformed_batches_never_crash_forge_or_starve() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let s = rt.block_on(Server::start());
    let web = rt.block_on(s.enroll("web-1"));
    let db = std::cell::RefCell::new(rt.block_on(s.enroll("db-1")));
    // db-1's own ids, which web-1's generated batches try to take.
    let own: Vec<Value> = (0..50)
        .map(|i| record(&format!("db-own-{i}"), "inventory.host", now_ns(), "db-1"))
        .collect();
    let r = rt.block_on(db.borrow().ingest_records(&own));
    assert_eq!(r.status, 200);
    let cases = std::env::var("RAMPART_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0usize);
    let result = runner.run(&malformed(), |m| {
        case.set(case.get() + 1);
        let (body, encoding) = build(&m, case.get());
        let status = rt
            .block_on(web.ingest(body, encoding))
            .map_err(|e| TestCaseError::fail(format!("{m:?}: no answer: {e}")))?
            .status;
        if ![200, 400, 413].contains(&status) {
            return Err(TestCaseError::fail(format!("{m:?}: status {status}")));
        }
        rt.block_on(db.borrow_mut().ships_within_a_second(&s, &format!("{m:?}")));
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The bound is on what the batches cost. The check below reads back every record web-1
    // got stored, up to 8 MiB lines among them, in one answer: that is the query API's cost
    // (an admin's request), measured after.
    s.assert_rss_bounded("generated malformed batches");
    rt.block_on(async {
        // Nothing web-1 sent shows as another host's, or beyond the clock bound; db-1's own
        // records all stayed.
        let bound = now_ns() + 5 * 60 * 1_000_000_000;
        for r in s.records(&format!("agent={}", web.id)).await {
            assert_eq!(r["device"]["hostname"], "web-1", "{r}");
            assert!(r["time_ns"].as_u64().unwrap_or(u64::MAX) <= bound, "{r}");
        }
        for r in s.records("host=db-1").await {
            assert_ne!(r["device"]["claimed_hostname"], "db-1", "{r}");
        }
        assert_eq!(
            s.records(&format!("agent={}&type=inventory.host", db.borrow().id))
                .await
                .len(),
            50
        );
    });
}

/// Issue 16, the read side: an agent stores records as large as the server keeps, then an
/// administrator reads a page of them. The page stops at the query byte budget (16 MiB), a
/// record over 4 MiB is not stored at all, and the server's peak RSS stays under the bound
/// (before, many 8 MiB records read back took it to 344 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stored_records_do_not_make_reads_hold_gigabytes() {
    let s = Server::start().await;
    let web = s.enroll("web-1").await;
    let now = now_ns();
    let pad = "x".repeat(4 * MIB - 4096);
    for batch in 0..6u64 {
        let records: Vec<Value> = (0..5u64)
            .map(|i| {
                let mut r = record(
                    &format!("big-{batch}-{i}"),
                    "process.exec",
                    now - batch * 1_000_000 - i,
                    "web-1",
                );
                r["pad"] = json!(pad);
                r
            })
            .collect();
        let r = web.ingest_records(&records).await;
        assert_eq!(r.status, 200, "{}", r.body_text());
        let answer: Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(answer["accepted"], 5, "{answer}");
    }
    // One byte past the record limit: refused alone, named, the rest of the batch kept.
    let mut too_big = record("too-big", "process.exec", now, "web-1");
    too_big["pad"] = json!("y".repeat(4 * MIB));
    let r = web
        .ingest_records(&[too_big, record("small", "process.exec", now, "web-1")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let answer: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(answer["accepted"], 1, "{answer}");
    assert!(
        answer["rejected"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("records above")),
        "{answer}"
    );
    assert!(s.records("id=too-big").await.is_empty());

    // A fresh server process reads pages of 10 000 records: each holds about the byte
    // budget's worth, newest first, and the process stays far below what 30 records of 4 MiB
    // (and their JSON answer) would cost.
    let mut s = s;
    s.restart().await;
    for _ in 0..3 {
        let page = s.records("type=process.exec").await;
        assert!(
            (4..=6).contains(&page.len()),
            "{} records in one page",
            page.len()
        );
    }
    let hwm = s.vm_hwm_kib();
    eprintln!(
        "reading pages of 4 MiB records: peak RSS {} MiB",
        hwm / 1024
    );
    assert!(
        hwm < 128 * 1024,
        "reading pages of 4 MiB records: peak RSS {} MiB (bound 128 MiB)",
        hwm / 1024
    );
}

/// A holder of a valid enrollment token cannot enroll a second agent under a host name that
/// is enrolled and not revoked, in any spelling DNS treats as the same name (each refusal uses
/// the token like any enrollment); without a valid token nothing is said about enrolled names;
/// after the old agent is revoked, the reinstalled host enrolls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_cannot_enroll_under_an_enrolled_host_name() {
    let s = Server::start().await;
    let db = s.enroll("db-1").await;
    let cfg = s.config.to_str().expect("utf-8").to_string();
    let token = rampart_ok(&[
        "server",
        "--config",
        &cfg,
        "enroll-token",
        "--region",
        "eu-de",
        "--uses",
        "5",
    ]);
    let dir = s.dir.path().join("no-token");
    let e = rampart_ship::enroll::enroll(&s.url(), "not-a-token", "db-1", &dir, false).await;
    let Err(e) = e else {
        panic!("enrolled without a token")
    };
    assert!(!format!("{e:?}").contains(&db.id), "{e:?}");
    for (i, name) in ["db-1", "DB-1", "db-1.", "Db-1."].iter().enumerate() {
        let dir = s.dir.path().join(format!("impostor-{i}"));
        let e = rampart_ship::enroll::enroll(&s.url(), token.trim(), name, &dir, false).await;
        let Err(e) = e else {
            panic!("{name}: enrolled a second agent")
        };
        let msg = format!("{e:?}");
        assert!(
            msg.contains("409") || msg.contains("is enrolled as agent"),
            "{name}: {msg}"
        );
        assert!(msg.contains(&db.id), "{name}: names the holder: {msg}");
    }
    // The old agent revoked (the host reinstalled): the same token enrolls it.
    rampart_ok(&["server", "--config", &cfg, "agents", "revoke", &db.id]);
    let dir = s.dir.path().join("reinstalled");
    let e = rampart_ship::enroll::enroll(&s.url(), token.trim(), "db-1", &dir, false)
        .await
        .expect("enrolls after the revocation");
    assert_ne!(e.agent_id, db.id);
}

/// The same host name enrolled by eight clients at once (one multi-use token): the check and
/// the record are one transaction, so exactly one agent gets the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_of_one_host_name_give_it_to_one_agent() {
    let s = Server::start().await;
    let cfg = s.config.to_str().expect("utf-8").to_string();
    let token = rampart_ok(&[
        "server",
        "--config",
        &cfg,
        "enroll-token",
        "--region",
        "eu-de",
        "--uses",
        "8",
    ]);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (url, token) = (s.url(), token.trim().to_string());
        let dir = s.dir.path().join(format!("race-{i}"));
        // Case differs between clients: DNS names, one name.
        let name = if i % 2 == 0 { "race-1" } else { "RACE-1" };
        tasks.push(tokio::spawn(async move {
            rampart_ship::enroll::enroll(&url, &token, name, &dir, false)
                .await
                .is_ok()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.expect("task"));
    }
    assert_eq!(won, 1, "agents that got the name");
}
