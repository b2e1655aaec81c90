//! Agent-side shipping and the server end to end, on loopback, with real certificates from the
//! server's CA: mutual TLS refusals, outages of the server and of the agent (SIGKILL), the
//! disk cap, a damaged queue segment, enrollment, API roles, and per-region anonymisation and
//! retention on stored rows.
//!
//! Separate processes are this test binary run again with a child role (`child_role_*`,
//! ignored unless asked for), so that a process can really be SIGKILLed.
#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_event::{
    Container, ContainerRuntime, Device, Endpoint, Event, EventId, EventKind, NetDirection,
    NetInfo, Process,
};
use rampart_server::client::QueryClient;
use rampart_server::ServerConfig;
use rampart_ship::output::{Dispatch, Output, ServerOutput};
use rampart_ship::queue::{Entry, OverflowPolicy};
use rampart_ship::{OutputConfig, ShipConfig, Shipper};
use serde_json::Value;
use support::{free_port, KillOnDrop};

const DAY_NS: u64 = 86_400_000_000_000;

fn handshake_failures(s: &rampart_server::ServerHandle) -> u64 {
    s.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("rampart_server_tls_handshake_failures_total "))
        .unwrap()
        .parse()
        .unwrap()
}

/// The server counts a refused handshake on its own task, which may run after the client has
/// already seen the refusal: waits (up to 5 s) for the counter to pass `before`.
async fn handshake_failures_pass(s: &rampart_server::ServerHandle, before: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while handshake_failures(s) <= before {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn event(instance: u64, seq: u64, time_ns: u64, host: &str) -> Event {
    let mut e = Event::new(
        EventId::new(instance, seq),
        time_ns,
        EventKind::NetConnect,
        Arc::new(Device {
            hostname: host.into(),
            region: Some("claimed-elsewhere".into()),
        }),
    );
    e.container = Some(Arc::new(Container::unnamed(
        "c".repeat(64),
        ContainerRuntime::Docker,
    )));
    e.process = Some(Arc::new(Process {
        pid: 4242,
        name: "curl".into(),
        args: vec!["curl".into(), "--user".into(), "alice:s3cret".into()],
        user: Some("alice".into()),
        ..Process::default()
    }));
    e.network = Some(NetInfo {
        protocol: "tcp".into(),
        family: "inet".into(),
        direction: NetDirection::Outbound,
        src: Some(Endpoint {
            ip: "192.168.10.77".parse().unwrap(),
            port: 40000,
        }),
        dst: Some(Endpoint {
            ip: "203.0.113.9".parse().unwrap(),
            port: 443,
        }),
        unix_path: None,
        remote_names: vec![],
        remote_country: None,
    });
    e
}

// ---------------------------------------------------------------------------------------
// Server and agent helpers

fn write_server_yaml(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("server.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{port}\ndata_dir: {}\nretention_interval: 1h\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

/// A server in its own process (this test binary in the `child_role_server` role).
fn spawn_server(config: &Path) -> KillOnDrop {
    let mut child = KillOnDrop(support::spawn_role(
        "child_role_server",
        &[("RAMPART_TEST_SERVER_CONFIG", config.display().to_string())],
    ));
    wait_for_line(&mut child.0, "READY", Duration::from_secs(30));
    child
}

/// Reads the child's stdout until a line containing `prefix` (libtest prints `test name ... `
/// before the role's first line); returns the line from `prefix` on.
fn wait_for_line(child: &mut Child, prefix: &str, timeout: Duration) -> String {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix_owned = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find(&prefix_owned) {
                let _ = tx.send(line[at..].to_string());
                return;
            }
        }
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("child did not print {prefix} within {timeout:?}"))
}

#[test]
#[ignore = "child process role: run by the tests that need a separate server process"]
fn child_role_server() {
    let Ok(config) = std::env::var("RAMPART_TEST_SERVER_CONFIG") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = ServerConfig::load(Path::new(&config)).unwrap();
        let server = rampart_server::start(cfg).await.unwrap();
        println!("READY {}", server.local_addr());
        std::future::pending::<()>().await;
    });
}

fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

fn query_client(url: &str, data_dir: &Path, token: &str) -> QueryClient {
    QueryClient::new(url, &data_dir.join("ca/ca.crt"), token).unwrap()
}

/// Creates an enrollment token for `region` through the admin API and enrolls an agent with
/// it into `tls_dir`.
async fn enroll(
    url: &str,
    data_dir: &Path,
    region: &str,
    hostname: &str,
    tls_dir: &Path,
) -> String {
    let mut admin = query_client(url, data_dir, &admin_token(data_dir));
    let v = admin
        .post_json(
            "/api/v1/enroll-tokens",
            &serde_json::json!({"region": region, "uses": 1, "ttl": "10m"}),
        )
        .await
        .unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    let e = rampart_ship::enroll::enroll(url, &token, hostname, tls_dir, false)
        .await
        .unwrap();
    assert_eq!(e.region, region);
    e.agent_id
}

/// Moves every agent's enrollment time `by` ns into the past (in the control database).
fn backdate_enrollments(data_dir: &Path, by: u64) {
    let c = rusqlite::Connection::open(data_dir.join("control.db")).unwrap();
    c.execute(
        "UPDATE agents SET enrolled_ns = enrolled_ns - ?1",
        [by as i64],
    )
    .unwrap();
}

fn ship_config(queue_dir: &Path, url: &str, tls_dir: &Path) -> ShipConfig {
    let mut cfg = ShipConfig::new(queue_dir);
    cfg.queue.segment_bytes = 64 << 10;
    cfg.outputs = vec![OutputConfig::Server {
        url: url.to_string(),
        tls_dir: tls_dir.to_path_buf(),
        compression_level: None,
        name: None,
        filter: Default::default(),
    }];
    cfg.backoff.initial_ms = 50;
    cfg.backoff.max_ms = 400;
    cfg.batch.linger_ms = 20;
    cfg.batch.max_records = 250;
    cfg
}

fn device(host: &str) -> Arc<Device> {
    Arc::new(Device {
        hostname: host.into(),
        region: None,
    })
}

async fn wait_drained(shipper: &Shipper, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let pending: u64 = shipper.stats().outputs.iter().map(|o| o.pending).sum();
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "shipper still has {pending} records pending after {timeout:?}: {:?}",
            shipper.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every stored record of `host` of type `net.connect`: asserts no id appears twice.
async fn stored_ids(q: &mut QueryClient, host: &str) -> HashSet<String> {
    let params = [
        ("host", host.to_string()),
        ("type", "net.connect".to_string()),
        ("limit", "10000".to_string()),
    ];
    let records = q.records(false, &params).await.unwrap();
    let ids: Vec<String> = records
        .iter()
        .map(|r| r["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    let set: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "an id came back twice");
    assert_eq!(q.count(&params[..2]).await.unwrap(), ids.len() as u64);
    set
}

fn expected_ids(instance: u64, range: std::ops::Range<u64>) -> HashSet<String> {
    range.map(|i| EventId::new(instance, i).0).collect()
}

// ---------------------------------------------------------------------------------------
// Certificates

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_expired_and_revoked_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::with_data_dir(dir.path().join("data"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = rampart_server::start(cfg).await.unwrap();
    let url = server.url();
    let data = dir.path().join("data");

    // A properly enrolled agent delivers.
    let good = dir.path().join("good");
    let agent_id = enroll(&url, &data, "eu-de", "good-host", &good).await;
    let mut out = ServerOutput::new(
        "server",
        &url,
        rampart_ship::tls::agent_client_config(&good).unwrap(),
    )
    .unwrap();
    let batch = |seq: u64| {
        vec![Entry {
            seq,
            written_ms: 0,
            payload: serde_json::to_vec(&event(1, seq, now_ns(), "good-host")).unwrap(),
        }]
    };
    assert_eq!(out.send(&batch(1)).await.unwrap().duplicates, 0);

    let agent_key = || rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let write_identity = |dir: &Path, cert_pem: &str, key: &rcgen::KeyPair| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(good.join("ca.crt"), dir.join("ca.crt")).unwrap();
        std::fs::write(dir.join("agent.crt"), cert_pem).unwrap();
        std::fs::write(dir.join("agent.key"), key.serialize_pem()).unwrap();
    };
    let now = SystemTime::now();

    // A certificate from another CA (with the right identity format): refused at the handshake.
    let other_ca = rampart_server::ca::Ca::load_or_create(&dir.path().join("other-ca")).unwrap();
    let key = agent_key();
    let cert = other_ca
        .issue_agent_cert(
            key.public_key_raw(),
            "agt-evil",
            "eu-de",
            now,
            now + Duration::from_secs(3600),
        )
        .unwrap();
    let wrong = dir.path().join("wrong-ca");
    write_identity(&wrong, &cert.pem, &key);
    let before = handshake_failures(&server);
    let mut out_wrong = ServerOutput::new(
        "server",
        &url,
        rampart_ship::tls::agent_client_config(&wrong).unwrap(),
    )
    .unwrap();
    let err = out_wrong.send(&batch(2)).await.unwrap_err();
    assert!(
        handshake_failures_pass(&server, before).await,
        "wrong CA: {err}"
    );

    // Our CA, but expired yesterday.
    let ca = rampart_server::ca::Ca::load_or_create(&data.join("ca")).unwrap();
    let key = agent_key();
    let cert = ca
        .issue_agent_cert(
            key.public_key_raw(),
            "agt-expired",
            "eu-de",
            now - Duration::from_secs(10 * 86_400),
            now - Duration::from_secs(86_400),
        )
        .unwrap();
    let expired = dir.path().join("expired");
    write_identity(&expired, &cert.pem, &key);
    let before = handshake_failures(&server);
    let mut out_expired = ServerOutput::new(
        "server",
        &url,
        rampart_ship::tls::agent_client_config(&expired).unwrap(),
    )
    .unwrap();
    let err = out_expired.send(&batch(3)).await.unwrap_err();
    assert!(
        handshake_failures_pass(&server, before).await,
        "expired: {err}"
    );

    // No client certificate at all: the TLS connection is allowed (for the query API), the
    // ingest route is not.
    let tls = rampart_ship::tls::client_config(
        rampart_ship::tls::load_roots(&good.join("ca.crt")).unwrap(),
        None,
    )
    .unwrap();
    let mut anon = rampart_ship::client::HttpClient::new(&url, Some(tls)).unwrap();
    let resp = anon
        .request(
            hyper::Method::POST,
            "/api/v1/ingest",
            &[],
            bytes::Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 401, "{}", resp.body_text());

    // Revocation: the open connection is refused per request, a new one at the handshake.
    let mut admin = query_client(&url, &data, &admin_token(&data));
    admin
        .post_json(
            &format!("/api/v1/agents/{agent_id}/revoke"),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    let err = out.send(&batch(4)).await.unwrap_err();
    assert!(
        err.to_string().contains("403") || err.to_string().contains("revoked"),
        "{err}"
    );
    let before = handshake_failures(&server);
    let mut fresh = ServerOutput::new(
        "server",
        &url,
        rampart_ship::tls::agent_client_config(&good).unwrap(),
    )
    .unwrap();
    fresh.send(&batch(5)).await.unwrap_err();
    assert!(
        handshake_failures_pass(&server, before).await,
        "revoked certificate passed the handshake"
    );
    let agents = admin.get_json("/api/v1/agents").await.unwrap();
    assert!(agents[0]["revoked_ns"].as_u64().is_some(), "{agents}");
    // The CRL is published.
    let crl = anon
        .request(hyper::Method::GET, "/api/v1/crl", &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert!(crl.body_text().contains("BEGIN X509 CRL"));

    // Only the first batch was stored.
    let mut q = query_client(&url, &data, &admin_token(&data));
    assert_eq!(stored_ids(&mut q, "good-host").await, expected_ids(1, 1..2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_needs_a_valid_token_and_the_right_ca() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::with_data_dir(dir.path().join("data"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = rampart_server::start(cfg).await.unwrap();
    let url = server.url();
    let token = server
        .create_enroll_token("sg", 1, Duration::from_secs(600))
        .unwrap();
    // Right fingerprint, wrong secret.
    let parsed = rampart_ship::protocol::EnrollToken::parse(&token).unwrap();
    let wrong_secret = rampart_ship::protocol::EnrollToken {
        secret: "0".repeat(32),
        ..parsed.clone()
    };
    let err = rampart_ship::enroll::enroll(
        &url,
        &wrong_secret.to_string(),
        "h",
        &dir.path().join("a"),
        false,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // Right secret, fingerprint of another CA: the agent refuses to talk to this server.
    let wrong_ca = rampart_ship::protocol::EnrollToken {
        ca_sha256: [7; 32],
        ..parsed.clone()
    };
    let err = rampart_ship::enroll::enroll(
        &url,
        &wrong_ca.to_string(),
        "h",
        &dir.path().join("b"),
        false,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, rampart_ship::enroll::EnrollError::Client(_)),
        "{err}"
    );
    // The real token works once.
    let e = rampart_ship::enroll::enroll(&url, &token, "h", &dir.path().join("c"), false)
        .await
        .unwrap();
    assert_eq!(e.region, "sg");
    let mode = std::fs::metadata(dir.path().join("c/agent.key")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let err = rampart_ship::enroll::enroll(&url, &token, "h", &dir.path().join("d"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("used up"), "{err}");
    // An existing enrollment is not overwritten by accident.
    let err = rampart_ship::enroll::enroll(&url, &token, "h", &dir.path().join("c"), false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, rampart_ship::enroll::EnrollError::Exists { .. }),
        "{err}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_checked_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::with_data_dir(dir.path().join("data"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = rampart_server::start(cfg).await.unwrap();
    let url = server.url();
    let data = dir.path().join("data");
    let mut admin = query_client(&url, &data, &admin_token(&data));
    let mk = |v: Value| v["token"].as_str().unwrap().to_string();
    let analyst = mk(admin
        .post_json(
            "/api/v1/tokens",
            &serde_json::json!({"name": "ann", "role": "analyst"}),
        )
        .await
        .unwrap());
    let reader = mk(admin
        .post_json(
            "/api/v1/tokens",
            &serde_json::json!({"name": "rob", "role": "read-only"}),
        )
        .await
        .unwrap());
    let status = |r: Result<Value, rampart_server::client::QueryError>| match r {
        Ok(_) => 200,
        Err(rampart_server::client::QueryError::Status { status, .. }) => status,
        Err(e) => panic!("{e}"),
    };
    let mut ro = query_client(&url, &data, &reader);
    let mut an = query_client(&url, &data, &analyst);
    let mut nobody = query_client(&url, &data, "rmpa_not_a_token");
    assert_eq!(status(ro.get_json("/api/v1/alerts").await), 200);
    assert_eq!(status(ro.get_json("/api/v1/agents").await), 200);
    assert_eq!(status(ro.get_json("/api/v1/records").await), 403);
    assert_eq!(status(an.get_json("/api/v1/records").await), 200);
    assert_eq!(status(an.get_json("/api/v1/retention").await), 200);
    assert_eq!(
        status(
            an.post_json(
                "/api/v1/enroll-tokens",
                &serde_json::json!({"region": "eu"})
            )
            .await
        ),
        403
    );
    assert_eq!(
        status(
            an.post_json("/api/v1/retention/run", &serde_json::json!({}))
                .await
        ),
        403
    );
    assert_eq!(
        status(
            admin
                .post_json("/api/v1/retention/run", &serde_json::json!({}))
                .await
        ),
        200
    );
    assert_eq!(status(nobody.get_json("/api/v1/alerts").await), 401);
    assert_eq!(
        status(an.get_json("/api/v1/records?since=yesterday-ish").await),
        400
    );
    assert_eq!(status(an.get_json("/api/v1/records?colour=red").await), 400);
    // Metrics need a token of any role.
    let resp = {
        let tls = rampart_ship::tls::client_config(
            rampart_ship::tls::load_roots(&data.join("ca/ca.crt")).unwrap(),
            None,
        )
        .unwrap();
        let mut c = rampart_ship::client::HttpClient::new(&url, Some(tls)).unwrap();
        let auth = format!("Bearer {reader}");
        c.request(
            hyper::Method::GET,
            "/metrics",
            &[("authorization", &auth)],
            bytes::Bytes::new(),
        )
        .await
        .unwrap()
    };
    assert_eq!(resp.status, 200);
    assert!(resp
        .body_text()
        .contains("rampart_server_ingest_records_total"));
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Outages

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_every_event_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_server_yaml(dir.path(), port, "");
    let data = dir.path().join("data");
    let url = format!("https://127.0.0.1:{port}");
    let mut server = spawn_server(&config);
    let tls_dir = dir.path().join("tls");
    enroll(&url, &data, "eu-de", "outage-host", &tls_dir).await;

    let shipper = rampart_ship::start(
        &ship_config(&dir.path().join("queue"), &url, &tls_dir),
        device("outage-host"),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    const N: u64 = 3000;
    let producer = {
        let shipper = shipper.clone();
        std::thread::spawn(move || {
            for chunk in (0..N).collect::<Vec<_>>().chunks(10) {
                let events: Vec<Event> = chunk
                    .iter()
                    .map(|i| event(7, *i, now_ns(), "outage-host"))
                    .collect();
                assert_eq!(shipper.send_all(&events).unwrap().accepted, 10);
                std::thread::sleep(Duration::from_millis(8));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    // SIGKILL: no chance to finish in-flight batches.
    drop(server);
    let errors_before = shipper.stats().outputs[0].send_errors;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        shipper.stats().outputs[0].send_errors > errors_before,
        "the outage was noticed"
    );
    assert!(
        shipper.stats().outputs[0].pending > 0,
        "records wait in the queue"
    );
    server = spawn_server(&config);
    producer.join().unwrap();
    wait_drained(&shipper, Duration::from_secs(60)).await;
    let mut q = query_client(&url, &data, &admin_token(&data));
    assert_eq!(
        stored_ids(&mut q, "outage-host").await,
        expected_ids(7, 0..N)
    );
    shipper.shutdown(Duration::from_secs(1)).await;
    drop(server);
}

/// The agent side in its own process: sends events FROM..TO, printing `sent <i>` once each
/// is in the queue, then `drained` when all are delivered.
#[test]
#[ignore = "child process role: run by shipper_killed_with_sigkill_every_event_arrives_exactly_once"]
fn child_role_shipper() {
    let Ok(queue) = std::env::var("RAMPART_TEST_QUEUE") else {
        return;
    };
    let url = std::env::var("RAMPART_TEST_URL").unwrap();
    let tls = std::env::var("RAMPART_TEST_TLS").unwrap();
    let from: u64 = std::env::var("RAMPART_TEST_FROM").unwrap().parse().unwrap();
    let to: u64 = std::env::var("RAMPART_TEST_TO").unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = ship_config(Path::new(&queue), &url, Path::new(&tls));
    cfg.batch.max_records = 100;
    let shipper =
        rampart_ship::start(&cfg, device("killed-host"), Vec::new(), rt.handle()).unwrap();
    use std::io::Write;
    let mut out = std::io::stdout();
    let events: Vec<Event> = (from..to)
        .map(|i| event(9, i, now_ns(), "killed-host"))
        .collect();
    for chunk in events.chunks(500) {
        shipper.send_all(chunk).unwrap();
        let last = chunk
            .last()
            .unwrap()
            .id
            .0
            .rsplit('-')
            .next()
            .unwrap()
            .to_string();
        writeln!(out, "sent {}", u64::from_str_radix(&last, 16).unwrap()).unwrap();
        out.flush().unwrap();
    }
    rt.block_on(wait_drained(&shipper, Duration::from_secs(60)));
    writeln!(out, "drained").unwrap();
    out.flush().unwrap();
    std::thread::sleep(Duration::from_secs(3600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipper_killed_with_sigkill_every_event_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_server_yaml(dir.path(), port, "");
    let data = dir.path().join("data");
    let url = format!("https://127.0.0.1:{port}");
    let _server = spawn_server(&config);
    let tls_dir = dir.path().join("tls");
    enroll(&url, &data, "eu-de", "killed-host", &tls_dir).await;
    let queue = dir.path().join("queue");
    let env = |from: u64, to: u64| {
        vec![
            ("RAMPART_TEST_QUEUE", queue.display().to_string()),
            ("RAMPART_TEST_URL", url.clone()),
            ("RAMPART_TEST_TLS", tls_dir.display().to_string()),
            ("RAMPART_TEST_FROM", from.to_string()),
            ("RAMPART_TEST_TO", to.to_string()),
        ]
    };
    // First run: killed right after its 2000 events are queued, while batches are in flight.
    let mut child = KillOnDrop(support::spawn_role("child_role_shipper", &env(0, 2000)));
    let line = wait_for_line(&mut child.0, "sent 1999", Duration::from_secs(30));
    // SAFETY: kill(2) on a child process this test spawned.
    assert_eq!(
        unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) },
        0,
        "{line}"
    );
    child.0.wait().unwrap();
    let mut q = query_client(&url, &data, &admin_token(&data));
    let at_kill = stored_ids(&mut q, "killed-host").await.len();
    assert!(
        at_kill < 2000,
        "the kill came before delivery finished ({at_kill} stored)"
    );
    // Second run: the rest of the stream, plus whatever the first left in the queue.
    let mut child = KillOnDrop(support::spawn_role("child_role_shipper", &env(2000, 3000)));
    wait_for_line(&mut child.0, "drained", Duration::from_secs(60));
    assert_eq!(
        stored_ids(&mut q, "killed-host").await,
        expected_ids(9, 0..3000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cap_drop_newest_counts_and_reports_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let mut cfg = ServerConfig::with_data_dir(&data);
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let server = rampart_server::start(cfg.clone()).await.unwrap();
    let tls_dir = dir.path().join("tls");
    enroll(&url, &data, "eu-de", "capped-host", &tls_dir).await;
    server.shutdown().await;

    // The server is down; the queue holds 256 KiB.
    let mut sc = ship_config(&dir.path().join("queue"), &url, &tls_dir);
    sc.queue.max_bytes = 256 << 10;
    sc.queue.overflow = OverflowPolicy::DropNewest;
    let shipper = rampart_ship::start(
        &sc,
        device("capped-host"),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    let events: Vec<Event> = (0..3000)
        .map(|i| event(11, i, now_ns(), "capped-host"))
        .collect();
    let r = shipper.send_all(&events).unwrap();
    assert!(r.dropped > 0 && r.accepted > 0, "{r:?}");
    assert_eq!(r.accepted + r.dropped, 3000);
    assert!(shipper.stats().queue.bytes <= 256 << 10);
    assert!(shipper.metrics_text().contains(&format!(
        "rampart_ship_dropped_total{{reason=\"overflow\"}} {}",
        r.dropped
    )));

    // The server comes back: what was accepted arrives, plus one report of the loss.
    let server = rampart_server::start(cfg).await.unwrap();
    wait_drained(&shipper, Duration::from_secs(60)).await;
    // Every dropped record is reported (in one or more sensor.drops events), none twice.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut q = query_client(&url, &data, &admin_token(&data));
    loop {
        let drops = q
            .records(
                false,
                &[
                    ("type", "sensor.drops".into()),
                    ("host", "capped-host".into()),
                ],
            )
            .await
            .unwrap();
        let reported: u64 = drops
            .iter()
            .map(|d| d["stats"]["drops_total"].as_u64().unwrap())
            .sum();
        assert!(
            drops
                .iter()
                .all(|d| d["stats"]["mechanism"] == "queue-overflow"),
            "{drops:?}"
        );
        if reported == r.dropped as u64 {
            break;
        }
        assert!(reported < r.dropped as u64, "over-reported: {drops:?}");
        assert!(
            Instant::now() < deadline,
            "{reported} of {} losses reported",
            r.dropped
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stored_ids(&mut q, "capped-host").await,
        expected_ids(11, 0..r.accepted as u64)
    );
    shipper.shutdown(Duration::from_secs(1)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cap_block_holds_the_producer_until_the_server_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let mut cfg = ServerConfig::with_data_dir(&data);
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let server = rampart_server::start(cfg.clone()).await.unwrap();
    let tls_dir = dir.path().join("tls");
    enroll(&url, &data, "eu-de", "blocked-host", &tls_dir).await;
    server.shutdown().await;

    let mut sc = ship_config(&dir.path().join("queue"), &url, &tls_dir);
    sc.queue.max_bytes = 256 << 10;
    sc.queue.overflow = OverflowPolicy::Block;
    let shipper = rampart_ship::start(
        &sc,
        device("blocked-host"),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    let producer = {
        let shipper = shipper.clone();
        std::thread::spawn(move || {
            let mut accepted = 0;
            for chunk in (0..3000u64).collect::<Vec<_>>().chunks(100) {
                let events: Vec<Event> = chunk
                    .iter()
                    .map(|i| event(12, *i, now_ns(), "blocked-host"))
                    .collect();
                let r = shipper.send_all(&events).unwrap();
                assert_eq!(r.dropped, 0);
                accepted += r.accepted;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !producer.is_finished(),
        "3000 events cannot fit in 256 KiB while the server is down"
    );
    let server = rampart_server::start(cfg).await.unwrap();
    assert_eq!(
        tokio::task::spawn_blocking(move || producer.join().unwrap())
            .await
            .unwrap(),
        3000
    );
    wait_drained(&shipper, Duration::from_secs(60)).await;
    let mut q = query_client(&url, &data, &admin_token(&data));
    assert_eq!(
        stored_ids(&mut q, "blocked-host").await,
        expected_ids(12, 0..3000)
    );
    assert_eq!(shipper.stats().queue.dropped_overflow_total, 0);
    shipper.shutdown(Duration::from_secs(1)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_queue_segment_is_skipped_with_a_report_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let mut cfg = ServerConfig::with_data_dir(&data);
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let server = rampart_server::start(cfg.clone()).await.unwrap();
    let tls_dir = dir.path().join("tls");
    enroll(&url, &data, "eu-de", "damaged-host", &tls_dir).await;
    server.shutdown().await;

    let queue = dir.path().join("queue");
    let mut sc = ship_config(&queue, &url, &tls_dir);
    sc.queue.segment_bytes = 16 << 10;
    {
        let shipper = rampart_ship::start(
            &sc,
            device("damaged-host"),
            Vec::new(),
            &tokio::runtime::Handle::current(),
        )
        .unwrap();
        let events: Vec<Event> = (0..600)
            .map(|i| event(13, i, now_ns(), "damaged-host"))
            .collect();
        for chunk in events.chunks(20) {
            shipper.send_all(chunk).unwrap();
        }
        shipper.shutdown(Duration::ZERO).await;
    }
    // Damage the first record of the third segment (bytes inside its JSON payload).
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rq"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 4, "{segs:?}");
    let mut bytes = std::fs::read(&segs[2]).unwrap();
    let first_seq = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    bytes[32 + 24 + 20] ^= 0xff;
    std::fs::write(&segs[2], &bytes).unwrap();

    let server = rampart_server::start(cfg).await.unwrap();
    let shipper = rampart_ship::start(
        &sc,
        device("damaged-host"),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    wait_drained(&shipper, Duration::from_secs(60)).await;
    let mut q = query_client(&url, &data, &admin_token(&data));
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let drops = q
            .records(
                false,
                &[
                    ("type", "sensor.drops".into()),
                    ("host", "damaged-host".into()),
                ],
            )
            .await
            .unwrap();
        if let Some(d) = drops.first() {
            break d.clone();
        }
        assert!(Instant::now() < deadline, "no loss report arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["stats"]["mechanism"], "queue-corrupt");
    assert_eq!(report["stats"]["drops_total"], 1);
    let mut want = expected_ids(13, 0..600);
    assert!(
        want.remove(&EventId::new(13, first_seq).0),
        "the damaged record is record {first_seq}"
    );
    assert_eq!(stored_ids(&mut q, "damaged-host").await, want);
    shipper.shutdown(Duration::from_secs(1)).await;
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Regions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymisation_and_retention_apply_per_region_on_stored_rows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let yaml = format!(
        "listen: 127.0.0.1:0
data_dir: {}
regions:
  eu-de:
    retention_days: 90
    anonymise:
      ips: truncate
      users: true
      hostnames: true
      drop: [process.args]
  cn:
    retention_days: 180
",
        data.display()
    );
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("server.yaml"), yaml).unwrap();
    let cfg = ServerConfig::load(&dir.path().join("server.yaml")).unwrap();
    let server = rampart_server::start(cfg).await.unwrap();
    let url = server.url();
    let eu_tls = dir.path().join("eu");
    let cn_tls = dir.path().join("cn");
    enroll(&url, &data, "eu-de", "eu-host", &eu_tls).await;
    enroll(&url, &data, "cn", "cn-host", &cn_tls).await;
    // Event times before an agent's enrollment are clamped to it (issue 16): these agents
    // enrolled a year ago, so that their events of 100 and 200 days ago keep their times.
    backdate_enrollments(&data, 365 * DAY_NS);

    let now = now_ns();
    let ages = [0u64, 100, 200];
    for (tls, host, instance) in [(&eu_tls, "eu-host", 21u64), (&cn_tls, "cn-host", 22u64)] {
        let mut out = ServerOutput::new(
            "server",
            &url,
            rampart_ship::tls::agent_client_config(tls).unwrap(),
        )
        .unwrap();
        let batch: Vec<Entry> = ages
            .iter()
            .enumerate()
            .map(|(i, age)| Entry {
                seq: i as u64,
                written_ms: 0,
                payload: serde_json::to_vec(&event(instance, *age, now - age * DAY_NS, host))
                    .unwrap(),
            })
            .collect();
        let d = out.send(&batch).await.unwrap();
        assert_eq!(d.rejected, 0);
    }
    let mut admin = query_client(&url, &data, &admin_token(&data));
    let all = |region: &str| vec![("region", region.to_string()), ("limit", "100".to_string())];

    // Anonymised at ingest in eu-de, untouched in cn; the region is the certificate's.
    let eu = admin.records(false, &all("eu-de")).await.unwrap();
    assert_eq!(eu.len(), 3);
    for r in &eu {
        assert_eq!(r["device"]["region"], "eu-de");
        assert_eq!(r["network"]["src"]["ip"], "192.168.10.0", "{r}");
        assert_eq!(r["network"]["dst"]["ip"], "203.0.113.0");
        let user = r["process"]["user"].as_str().unwrap();
        assert!(user.starts_with("u-") && user != "alice", "{user}");
        let host = r["device"]["hostname"].as_str().unwrap();
        assert!(host.starts_with("h-"), "{host}");
        assert!(r["process"].get("args").is_none(), "args dropped: {r}");
        assert!(!r.to_string().contains("s3cret"));
    }
    // Pseudonyms are stable: the same user gets the same pseudonym in every record.
    let users: HashSet<&str> = eu
        .iter()
        .map(|r| r["process"]["user"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 1);
    let cn = admin.records(false, &all("cn")).await.unwrap();
    assert_eq!(cn.len(), 3);
    for r in &cn {
        assert_eq!(r["device"]["region"], "cn");
        assert_eq!(r["network"]["src"]["ip"], "192.168.10.77");
        assert_eq!(r["process"]["user"], "alice");
        assert_eq!(r["device"]["hostname"], "cn-host");
        assert_eq!(r["process"]["args"][2], "alice:s3cret");
    }

    // Retention: eu-de keeps 90 days, cn 180.
    let runs = admin
        .post_json("/api/v1/retention/run", &serde_json::json!({}))
        .await
        .unwrap();
    let rows_for = |region: &str| -> u64 {
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["region"] == region)
            .map_or(0, |r| r["rows"].as_u64().unwrap())
    };
    assert_eq!((rows_for("eu-de"), rows_for("cn")), (2, 1), "{runs}");
    let ages_left = |rows: &[Value]| -> Vec<u64> {
        let mut v: Vec<u64> = rows
            .iter()
            .map(|r| {
                let id = r["metadata"]["uid"].as_str().unwrap();
                u64::from_str_radix(id.rsplit('-').next().unwrap(), 16).unwrap()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ages_left(&admin.records(false, &all("eu-de")).await.unwrap()),
        vec![0]
    );
    assert_eq!(
        ages_left(&admin.records(false, &all("cn")).await.unwrap()),
        vec![0, 100]
    );
    // The job recorded what it deleted.
    let log = admin.get_json("/api/v1/retention").await.unwrap();
    let logged: Vec<(String, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["region"].as_str().unwrap().to_string(),
                r["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(logged.contains(&("eu-de".to_string(), 2)), "{log}");
    assert!(logged.contains(&("cn".to_string(), 1)), "{log}");
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Order of commits

/// With several batches in flight, each on its own connection, the server commits one agent's
/// batches in its queue order: a batch that arrives before the batch it follows waits for it
/// (a request held, then both committed in queue order), and a shipper with 4 batches in
/// flight has every record committed in the order it was queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_are_committed_in_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("data");
    let mut cfg = ServerConfig::with_data_dir(&data);
    cfg.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let committed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let log = committed.clone();
    let layer: rampart_server::StoreLayer = Box::new(move |inner| {
        let hook: rampart_server::store::InsertHook = Arc::new(move |rows, _| {
            log.lock()
                .unwrap()
                .extend(rows.iter().map(|r| r.id.clone()));
        });
        Arc::new(rampart_server::store::AfterInsert::new(inner, hook))
    });
    let server = rampart_server::start_with(cfg, layer).await.unwrap();
    let tls_dir = dir.path().join("tls");
    enroll(&url, &data, "eu-de", "ordered-host", &tls_dir).await;
    let tls = rampart_ship::tls::agent_client_config(&tls_dir).unwrap();

    // Two senders by hand: the second batch (queue records 10..=19) goes first.
    let batch = |seqs: std::ops::RangeInclusive<u64>| -> Vec<Entry> {
        seqs.map(|seq| Entry {
            seq,
            written_ms: 0,
            payload: serde_json::to_vec(&event(21, seq, now_ns(), "ordered-host")).unwrap(),
        })
        .collect()
    };
    let mut first = ServerOutput::new("server", &url, tls.clone()).unwrap();
    let mut second = first.fork().unwrap();
    second.prepare(Dispatch {
        after: Some(9),
        unsent: true,
    });
    let early = tokio::spawn(async move { second.send(&batch(10..=19)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        committed.lock().unwrap().is_empty(),
        "the second batch waits for the first"
    );
    assert!(!early.is_finished(), "its request is held");
    first.prepare(Dispatch {
        after: None,
        unsent: true,
    });
    first.send(&batch(0..=9)).await.unwrap();
    early.await.unwrap().unwrap();
    let in_queue_order: Vec<String> = (0..20).map(|i| EventId::new(21, i).0).collect();
    assert_eq!(*committed.lock().unwrap(), in_queue_order);

    // The shipper: 4 batches in flight, small batches, a steady stream.
    committed.lock().unwrap().clear();
    let mut sc = ship_config(&dir.path().join("queue"), &url, &tls_dir);
    sc.batch.in_flight = 4;
    sc.batch.max_records = 40;
    sc.batch.linger_ms = 1;
    let shipper = rampart_ship::start(
        &sc,
        device("ordered-host"),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    const N: u64 = 4000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(200) {
        let events: Vec<Event> = chunk
            .iter()
            .map(|i| event(22, *i, now_ns(), "ordered-host"))
            .collect();
        shipper.send_all(&events).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_drained(&shipper, Duration::from_secs(60)).await;
    let got: Vec<String> = committed
        .lock()
        .unwrap()
        .iter()
        .filter(|id| id.starts_with(&format!("{:016x}-", 22)))
        .cloned()
        .collect();
    let want: Vec<String> = (0..N).map(|i| EventId::new(22, i).0).collect();
    assert_eq!(got.len(), want.len(), "every record committed once");
    assert!(got == want, "records committed out of queue order");
    assert!(server
        .metrics_text()
        .contains("rampart_server_ingest_out_of_order_total 0"));
    shipper.shutdown(Duration::from_secs(1)).await;
    server.shutdown().await;
}

/// Issue 21: mesh certificates come through the agent's enrolled mTLS channel, name the host the
/// agent enrolled as (whatever the request says), and are revoked with the agent.
#[tokio::test]
async fn mesh_certificates_are_issued_to_enrolled_agents_for_their_own_host_and_revoked_with_it() {
    use rustls::pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::with_data_dir(dir.path().join("data"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = rampart_server::start(cfg).await.unwrap();
    let url = server.url();
    let data = dir.path().join("data");
    let tls_dir = dir.path().join("vps1");
    let agent_id = enroll(&url, &data, "eu-de", "vps1", &tls_dir).await;
    let mut agent = rampart_ship::client::HttpClient::new(
        &url,
        Some(rampart_ship::tls::agent_client_config(&tls_dir).unwrap()),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ask = |body: Value| bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
    let json = [("content-type", "application/json")];
    let good = serde_json::json!({
        "fleet": "acme", "workload": "frontend",
        "public_key": hex::encode(key.public_key_raw()), "ttl_secs": 600
    });
    let resp = agent
        .request(
            hyper::Method::POST,
            "/api/v1/mesh/certificate",
            &json,
            ask(good.clone()),
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    let v: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(v["spiffe_id"], "spiffe://acme/vps1/frontend");
    let pem = v["certificate"].as_str().unwrap();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let id = rampart_mesh::identity::spiffe_of(&der).unwrap();
    assert_eq!(id.to_string(), "spiffe://acme/vps1/frontend");
    let serial = hex::decode(v["serial"].as_str().unwrap()).unwrap();

    // A request cannot name another host: there is no field for it, and unknown fields are
    // refused; bad names, keys and lifetimes are refused.
    for (body, want) in [
        (
            serde_json::json!({"fleet": "acme", "workload": "frontend", "host": "vps2",
            "public_key": hex::encode(key.public_key_raw())}),
            422,
        ),
        (
            serde_json::json!({"fleet": "acme", "workload": "../vps2/backend",
            "public_key": hex::encode(key.public_key_raw())}),
            400,
        ),
        (
            serde_json::json!({"fleet": "ACME", "public_key": hex::encode(key.public_key_raw())}),
            400,
        ),
        (
            serde_json::json!({"fleet": "acme", "workload": "x", "public_key": "04zz"}),
            400,
        ),
        (
            serde_json::json!({"fleet": "acme", "workload": "x", "public_key": "0401"}),
            400,
        ),
        (
            serde_json::json!({"fleet": "acme", "workload": "x",
            "public_key": hex::encode(key.public_key_raw()), "ttl_secs": 86401}),
            400,
        ),
    ] {
        let r = agent
            .request(
                hyper::Method::POST,
                "/api/v1/mesh/certificate",
                &json,
                ask(body.clone()),
            )
            .await
            .unwrap();
        assert_eq!(r.status, want, "{body}: {}", r.body_text());
    }

    // Without an agent certificate: refused.
    let tls = rampart_ship::tls::client_config(
        rampart_ship::tls::load_roots(&tls_dir.join("ca.crt")).unwrap(),
        None,
    )
    .unwrap();
    let mut anon = rampart_ship::client::HttpClient::new(&url, Some(tls)).unwrap();
    let r = anon
        .request(
            hyper::Method::POST,
            "/api/v1/mesh/certificate",
            &json,
            ask(good.clone()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401, "{}", r.body_text());

    // Revoking the agent puts its mesh certificate on the CRL, and it gets no more.
    let mut admin = query_client(&url, &data, &admin_token(&data));
    admin
        .post_json(
            &format!("/api/v1/agents/{agent_id}/revoke"),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    let crl = rampart_server::ca::Ca::read_crl(&data.join("ca")).unwrap();
    let crl = webpki::OwnedCertRevocationList::from_der(&crl).unwrap();
    let crl = webpki::CertRevocationList::from(crl);
    assert!(
        crl.find_serial(&serial).unwrap().is_some(),
        "mesh serial not on the CRL"
    );
    let r = agent
        .request(
            hyper::Method::POST,
            "/api/v1/mesh/certificate",
            &json,
            ask(good),
        )
        .await;
    assert!(
        r.as_ref().is_err() || r.as_ref().is_ok_and(|r| r.status == 403),
        "revoked agent got {:?}",
        r.map(|r| (r.status, r.body_text()))
    );
    server.shutdown().await;
}
