//! Issue 22: two `rampart server` processes sharing one PostgreSQL control store and one
//! ClickHouse record store, with HAProxy (TCP mode, TLS passes through) in front, behave as one
//! server: agents enrolled through the proxy land on either server, an agent enrolled on A
//! ships to B, a one-use token is spent once, a revocation made on A is refused by B within
//! 5 s, a dashboard session made through A works through B, and SIGKILLing the server holding
//! the fleet job lease loses no acknowledged record and hands the lease to the other.
//!
//! Everything runs on loopback ports, started by the test (Debian's postgresql, haproxy and
//! clickhouse-server; skipped loudly outside CI when one is missing, a failure in CI).
#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use rampart_server::client::QueryClient;
use rampart_ship::client::HttpClient;
use rampart_ship::output::{Output, ServerOutput};
use rampart_ship::queue::Entry;
use support::{spawn, Proc};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

struct Server {
    proc: Option<Proc>,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Server {
    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

/// Starts `rampart server` with its own data directory, the shared stores, and waits until
/// it answers `/healthz`.
async fn start_server(root: &Path, name: &str, pg: &str, ch: &str) -> Server {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let config = dir.join("server.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\nstore:\n  type: clickhouse\n  url: {ch}\ncontrol_store:\n  postgres: {pg}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let proc = spawn(
        &["server", "--config", config.to_str().unwrap()],
        Stdio::null(),
        &dir.join("server.log"),
    );
    let s = Server {
        proc: Some(proc),
        dir,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(s.addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "server {name} did not start: {}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s
}

fn ca_file(first: &Server) -> PathBuf {
    first.dir.join("data/ca/ca.crt")
}

fn anonymous(ca: &Path) -> Arc<tokio_rustls::rustls::ClientConfig> {
    rampart_ship::tls::client_config(rampart_ship::tls::load_roots(ca).unwrap(), None).unwrap()
}

async fn enroll_token(q: &mut QueryClient, uses: u32) -> String {
    let v = q
        .post_json(
            "/api/v1/enroll-tokens",
            &serde_json::json!({"region": "eu-de", "uses": uses, "ttl": "10m"}),
        )
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn batch(instance: u64, seq: u64, host: &str) -> Vec<Entry> {
    let ev = rampart_event::Event::new(
        rampart_event::EventId::new(instance, seq),
        now_ns(),
        rampart_event::EventKind::NetConnect,
        Arc::new(rampart_event::Device {
            hostname: host.into(),
            region: None,
        }),
    );
    vec![Entry {
        seq,
        written_ms: 0,
        payload: serde_json::to_vec(&ev).unwrap(),
    }]
}

/// A server's `/metrics` text, or `None` when it does not answer.
async fn metrics(url: &str, ca: &Path, token: &str) -> Option<String> {
    let mut c = HttpClient::new(url, Some(anonymous(ca)))
        .ok()?
        .with_timeout(Duration::from_secs(3));
    let auth = format!("Bearer {token}");
    let r = c
        .request(
            Method::GET,
            "/metrics",
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await
        .ok()?;
    assert_eq!(r.status, 200, "{}", r.body_text());
    Some(String::from_utf8_lossy(&r.body).into_owned())
}

/// `rampart_server_fleet_leader` of a server's `/metrics`, or `None` when it does not answer.
async fn leads(url: &str, ca: &Path, token: &str) -> Option<bool> {
    let m = metrics(url, ca, token).await?;
    let line = m
        .lines()
        .find(|l| l.starts_with("rampart_server_fleet_leader"))
        .unwrap_or_else(|| panic!("no fleet leader gauge in /metrics"));
    Some(line.trim_end().ends_with(" 1"))
}

/// A failed SSH login on `host` from `src`.
fn failed_login(instance: u64, seq: u64, host: &str, src: &str) -> Vec<Entry> {
    let mut ev = rampart_event::Event::new(
        rampart_event::EventId::new(instance, seq),
        now_ns(),
        rampart_event::EventKind::AuthLogin,
        Arc::new(rampart_event::Device {
            hostname: host.into(),
            region: None,
        }),
    );
    ev.auth = Some(rampart_event::AuthInfo {
        outcome: rampart_event::AuthOutcome::Failure,
        user: "root".into(),
        method: Some("password".into()),
        src_ip: Some(src.parse().unwrap()),
        src_port: Some(50_000),
        service: "sshd".into(),
        log_source: "/var/log/auth.log".into(),
        message: format!("Failed password for root from {src} port 50000 ssh2"),
    });
    vec![Entry {
        seq,
        written_ms: 0,
        payload: serde_json::to_vec(&ev).unwrap(),
    }]
}

const SPRAYING: &str = "Fleet password guessing across hosts";

/// Fleet alerts of the password-guessing rule naming source `src`, as every server sees them
/// (one ClickHouse).
async fn spraying_alerts(q: &mut QueryClient, src: &str) -> usize {
    let records = q
        .get_json(&rampart_server::client::with_query(
            "/api/v1/records",
            &[
                ("kind", "alert".to_string()),
                ("rule", SPRAYING.to_string()),
                ("limit", "100".to_string()),
            ],
        ))
        .await
        .unwrap();
    records["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.to_string().contains(src))
        .count()
}

/// Waits up to 20 s for one spraying alert naming `src`, then checks that no second one
/// follows (another server correlating the same records would raise its own).
async fn one_spraying_alert(q: &mut QueryClient, src: &str, since: Instant) -> Duration {
    loop {
        let n = spraying_alerts(q, src).await;
        if n > 0 {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "no fleet alert for the password guessing from {src} after {:?}",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = since.elapsed();
    // Past the store-fed correlator's read lag and two polls of both servers.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(spraying_alerts(q, src).await, 1, "fleet alerts from {src}");
    took
}

/// A dashboard session cookie of the server at `url`.
async fn session_cookie(url: &str, ca: &Path, password: &str) -> String {
    let mut c = HttpClient::new(url, Some(anonymous(ca))).unwrap();
    let login = c
        .request(
            Method::POST,
            "/ui/api/login",
            &[("content-type", "application/json")],
            Bytes::from(serde_json::json!({"username": "admin", "password": password}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(login.status, 200, "{}", login.body_text());
    login.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Opens the dashboard's live alert stream (server-sent events) of the server at `addr`;
/// what it has received so far is in the returned text, until the task is aborted.
async fn live_stream(
    addr: SocketAddr,
    ca: &Path,
    cookie: String,
) -> (Arc<std::sync::Mutex<String>>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::from(addr.ip());
    let mut tls = tokio_rustls::TlsConnector::from(anonymous(ca))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(
        format!(
            "GET /ui/api/alerts/stream HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = Arc::new(std::sync::Mutex::new(String::new()));
    let into = got.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        while let Ok(n) = tls.read(&mut buf).await {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    // The answer's head: the stream is open.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.lock().unwrap().contains("\r\n\r\n") {
        assert!(
            Instant::now() < deadline,
            "no answer from the live stream of {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        got.lock().unwrap().starts_with("HTTP/1.1 200"),
        "{}",
        got.lock().unwrap()
    );
    (got, task)
}

/// The incidents the server at `url` shows on its dashboard, as JSON.
async fn incidents(url: &str, ca: &Path, password: &str) -> Vec<serde_json::Value> {
    let cookie = session_cookie(url, ca, password).await;
    let mut c = HttpClient::new(url, Some(anonymous(ca))).unwrap();
    let r = c
        .request(
            Method::GET,
            "/ui/api/incidents",
            &[("cookie", &cookie)],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["incidents"].as_array().unwrap().clone()
}

async fn count(q: &mut QueryClient, host: &str) -> u64 {
    q.count(&[
        ("host", host.to_string()),
        ("type", "net.connect".to_string()),
    ])
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_behind_haproxy_behave_as_one() {
    testkit::require!(Root);
    let test = module_path!();
    let Some(pg) = testkit::Postgres::start(test) else {
        return;
    };
    let Some(ch) = testkit::ClickHouse::start(test) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let a = start_server(root.path(), "a", &pg.url(), &ch.url()).await;
    let b = start_server(root.path(), "b", &pg.url(), &ch.url()).await;
    let Some(proxy) = testkit::HaProxy::start(test, &[a.addr, b.addr]) else {
        return;
    };
    // The first server made the fleet's CA, the admin token and the dashboard password.
    let ca = ca_file(&a);
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        std::fs::read(ca_file(&b)).unwrap(),
        "one CA"
    );
    let admin = std::fs::read_to_string(a.dir.join("data/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let mut qa = QueryClient::new(&a.url(), &ca, &admin).unwrap();
    let mut qb = QueryClient::new(&b.url(), &ca, &admin).unwrap();
    let mut qp = QueryClient::new(&proxy.url(), &ca, &admin).unwrap();

    // Agents enrolled through the proxy land on both servers, every one ships.
    let token = enroll_token(&mut qp, 6).await;
    let mut agents = Vec::new();
    for i in 0..6 {
        let tls = root.path().join(format!("agent-{i}"));
        let e =
            rampart_ship::enroll::enroll(&proxy.url(), &token, &format!("host-{i}"), &tls, false)
                .await
                .unwrap();
        agents.push((e.agent_id, tls));
    }
    let enrolled = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("rampart_server_enrollments_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (ea, eb) = (
        enrolled(&metrics(&a.url(), &ca, &admin).await.unwrap()),
        enrolled(&metrics(&b.url(), &ca, &admin).await.unwrap()),
    );
    assert_eq!(ea + eb, 6);
    assert!(
        ea > 0 && eb > 0,
        "the proxy sent every enrollment to one server: {ea}/{eb}"
    );

    // An agent enrolled on A ships to B; its record is seen through A (one ClickHouse).
    let token = enroll_token(&mut qa, 1).await;
    let x_tls = root.path().join("agent-x");
    let x = rampart_ship::enroll::enroll(&a.url(), &token, "host-x", &x_tls, false)
        .await
        .unwrap();
    let mut to_b = ServerOutput::new(
        "b",
        &b.url(),
        rampart_ship::tls::agent_client_config(&x_tls).unwrap(),
    )
    .unwrap();
    let r = to_b.send(&batch(90, 1, "host-x")).await.unwrap();
    assert_eq!((r.rejected, r.duplicates), (0, 0), "stored by B");
    assert_eq!(count(&mut qa, "host-x").await, 1);

    // One use, two servers, at once: one enrollment.
    for round in 0..3 {
        let token = enroll_token(&mut qb, 1).await;
        let (ta, tb) = (
            root.path().join(format!("race-a-{round}")),
            root.path().join(format!("race-b-{round}")),
        );
        let (ua, ub) = (a.url(), b.url());
        let (ha, hb) = (format!("race-a-{round}"), format!("race-b-{round}"));
        let (ra, rb) = tokio::join!(
            rampart_ship::enroll::enroll(&ua, &token, &ha, &ta, false),
            rampart_ship::enroll::enroll(&ub, &token, &hb, &tb, false),
        );
        assert_eq!(
            ra.is_ok() as u8 + rb.is_ok() as u8,
            1,
            "round {round}: {ra:?} {rb:?}"
        );
    }

    // A dashboard session made through A works through B; logged out through B, it is gone
    // on A.
    let password = std::fs::read_to_string(a.dir.join("data/admin.password"))
        .unwrap()
        .trim()
        .to_string();
    let mut ua = HttpClient::new(&a.url(), Some(anonymous(&ca))).unwrap();
    let mut ub = HttpClient::new(&b.url(), Some(anonymous(&ca))).unwrap();
    let login = ua
        .request(
            Method::POST,
            "/ui/api/login",
            &[("content-type", "application/json")],
            Bytes::from(serde_json::json!({"username": "admin", "password": password}).to_string()),
        )
        .await
        .unwrap();
    assert_eq!(login.status, 200, "{}", login.body_text());
    let cookie = login.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = ub
        .request(
            Method::GET,
            "/ui/api/me",
            &[("cookie", &cookie)],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(r.body_text().contains("\"admin\""));
    let r = ub
        .request(
            Method::POST,
            "/ui/api/logout",
            &[("cookie", &cookie)],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = ua
        .request(
            Method::GET,
            "/ui/api/me",
            &[("cookie", &cookie)],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "a session ended on B still works on A");

    // Revoked on A: refused by B within 5 s.
    qa.post_json(
        &format!("/api/v1/agents/{}/revoke", x.agent_id),
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    let revoked_at = Instant::now();
    let mut seq = 2;
    loop {
        let mut fresh = ServerOutput::new(
            "b",
            &b.url(),
            rampart_ship::tls::agent_client_config(&x_tls).unwrap(),
        )
        .unwrap();
        if fresh.send(&batch(90, seq, "host-x")).await.is_err() {
            break;
        }
        seq += 1;
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "B still accepts an agent revoked on A after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "revocation on A refused by B after {:?}",
        revoked_at.elapsed()
    );

    // Exactly one server holds the fleet job lease.
    let (la, lb) = (
        leads(&a.url(), &ca, &admin).await.unwrap(),
        leads(&b.url(), &ca, &admin).await.unwrap(),
    );
    assert!(la != lb, "fleet leaders: A {la}, B {lb}");

    // Password guessing from one address on three hosts whose agents ship to different
    // servers: one fleet alert (raised by the one correlator, on the lease holder, reading
    // both servers' records from ClickHouse) and one incident.
    let spray = |i: usize, to: &Server| {
        ServerOutput::new(
            "direct",
            &to.url(),
            rampart_ship::tls::agent_client_config(&agents[i].1).unwrap(),
        )
        .unwrap()
    };
    // Both dashboards' live streams are watched: each shows the fleet alert, whichever
    // server raised it.
    let (live_a, task_a) =
        live_stream(a.addr, &ca, session_cookie(&a.url(), &ca, &password).await).await;
    let (live_b, task_b) =
        live_stream(b.addr, &ca, session_cookie(&b.url(), &ca, &password).await).await;
    let sent = Instant::now();
    for (i, to) in [(0, &a), (1, &b), (2, &a)] {
        let mut out = spray(i, to);
        for seq in 1..=2 {
            let r = out
                .send(&failed_login(
                    200 + i as u64,
                    seq,
                    &format!("host-{i}"),
                    "203.0.113.7",
                ))
                .await
                .unwrap();
            assert_eq!((r.rejected, r.duplicates), (0, 0));
        }
    }
    let took = one_spraying_alert(&mut qb, "203.0.113.7", sent).await;
    eprintln!("fleet alert for password guessing over A and B after {took:?}");
    for (name, live) in [("A", &live_a), ("B", &live_b)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !live.lock().unwrap().contains("203.0.113.7") {
            assert!(
                Instant::now() < deadline,
                "the fleet alert is not on {name}'s live stream: {}",
                live.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    task_a.abort();
    task_b.abort();
    // Only the lease holder's correlator reads the fleet's records, and says how far behind.
    let value = |m: &str, name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    };
    for (s, holds) in [(&a, la), (&b, !la)] {
        let m = metrics(&s.url(), &ca, &admin).await.unwrap();
        let read = value(&m, "rampart_fleet_correlator_read_records_total");
        let behind = value(&m, "rampart_fleet_correlator_behind_seconds");
        if holds {
            assert!(
                read >= 6.0 && behind > 0.0,
                "holder: {read} read, {behind} s behind"
            );
        } else {
            assert!(
                read == 0.0 && behind == 0.0,
                "other: {read} read, {behind} s behind"
            );
        }
    }
    // Incidents of the spraying rule on a host (the alert's host: the campaign's last one).
    let spraying_incidents = |list: &[serde_json::Value], host: &str| {
        list.iter()
            .filter(|i| {
                i["rules"].to_string().contains(SPRAYING)
                    && i["hosts"].to_string().contains(&format!("\"{host}\""))
            })
            .count()
    };
    let list = incidents(&(if la { &a } else { &b }).url(), &ca, &password).await;
    assert_eq!(
        spraying_incidents(&list, "host-2"),
        1,
        "incidents: {list:?}"
    );
    // The other server's dashboard shows the same incident (shared through PostgreSQL).
    let other_url = (if la { &b } else { &a }).url();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = incidents(&other_url, &ca, &password).await;
        if spraying_incidents(&list, "host-2") == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the incident is not on the other server's dashboard: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (mut leader, other) = if la { (a, b) } else { (b, a) };

    // `rampart incident` on the other server's host reads the fleet's incidents from the
    // shared control store, and a mark made there is the fleet's: the server that takes the
    // lease over below still has it.
    let other_config = other.dir.join("server.yaml");
    let listed = support::rampart_ok(&[
        "incident",
        "list",
        "--json",
        "--config",
        other_config.to_str().unwrap(),
    ]);
    let id = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.to_string().contains("host-2"))
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| {
            panic!("the fleet's incident is not listed on the other host: {listed}")
        });
    support::rampart_ok(&[
        "incident",
        "mark",
        &id,
        "--personal-data-breach",
        "yes",
        "--config",
        other_config.to_str().unwrap(),
    ]);

    // Agents ship through the proxy while the leader is SIGKILLed: every record a server
    // acknowledged is stored, each once, and the other server takes over the lease.
    let mut outs: Vec<ServerOutput> = agents
        .iter()
        .map(|(_, tls)| {
            ServerOutput::new(
                "proxy",
                &proxy.url(),
                rampart_ship::tls::agent_client_config(tls).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let mut acked = vec![0u64; outs.len()];
    let mut takeover = None;
    let mut seq = 1;
    loop {
        if seq == 20 {
            drop(leader.proc.take());
            let at = Instant::now();
            // Watches the other server take the lease while the agents ship.
            let (url, ca, admin) = (other.url(), ca.clone(), admin.clone());
            takeover = Some(tokio::spawn(async move {
                while leads(&url, &ca, &admin).await != Some(true) {
                    if at.elapsed() > Duration::from_secs(30) {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(at.elapsed())
            }));
        }
        for (i, out) in outs.iter_mut().enumerate() {
            // The agent's shipper retries a batch the server did not acknowledge.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match out
                    .send(&batch(100 + i as u64, seq, &format!("host-{i}")))
                    .await
                {
                    Ok(r) => {
                        // A batch the killed server committed without answering comes
                        // back as a duplicate: acknowledged too.
                        assert_eq!(r.rejected, 0);
                        acked[i] += 1;
                        break;
                    }
                    Err(e) => {
                        assert!(Instant::now() < deadline, "agent {i} cannot deliver: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        seq += 1;
        if seq == 40 {
            break;
        }
    }
    for (i, n) in acked.iter().enumerate() {
        assert_eq!(*n, 39, "agent {i}: {n} of 39 records acknowledged");
    }
    let mut qo = QueryClient::new(&other.url(), &ca, &admin).unwrap();
    for i in 0..outs.len() {
        assert_eq!(count(&mut qo, &format!("host-{i}")).await, 39, "host-{i}");
    }
    let took = takeover.unwrap().await.unwrap().unwrap_or_else(|| {
        panic!(
            "the other server did not take over the fleet jobs within 30 s: {}",
            other.log()
        )
    });
    // Valid 10 s from the last renewal (at most 2 s before the kill), taken at the other's next
    // renewal (every 2 s): 12 s at most, plus the time to read /metrics.
    assert!(
        took <= Duration::from_secs(15),
        "lease taken over after {took:?}"
    );
    eprintln!("fleet job lease taken over {took:?} after the holder was SIGKILLed");

    // The correlation resumed on the other server: a new campaign over three hosts, one alert.
    let sent = Instant::now();
    for i in 3..6 {
        let mut out = spray(i, &other);
        for seq in 1..=2 {
            out.send(&failed_login(
                300 + i as u64,
                seq,
                &format!("host-{i}"),
                "198.51.100.9",
            ))
            .await
            .unwrap();
        }
    }
    let took = one_spraying_alert(&mut qo, "198.51.100.9", sent).await;
    eprintln!("fleet alert after the takeover, {took:?} after the records were sent");
    let list = incidents(&other.url(), &ca, &password).await;
    assert_eq!(
        spraying_incidents(&list, "host-5"),
        1,
        "incidents: {list:?}"
    );
    // The dead holder's incident is continued by the new holder, not lost or doubled, with
    // the mark made before the takeover.
    assert_eq!(
        spraying_incidents(&list, "host-2"),
        1,
        "incidents: {list:?}"
    );
    let marked = list
        .iter()
        .find(|i| i["hosts"].to_string().contains("\"host-2\""))
        .unwrap();
    assert_eq!(marked["id"], id.as_str());
    assert_eq!(marked["personal_data_breach"], true, "{marked}");
    drop(proxy);
    drop(other);
}
