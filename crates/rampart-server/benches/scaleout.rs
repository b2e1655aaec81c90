//! Issue 22: ingest through HAProxy into one server and into two servers sharing one
//! PostgreSQL control store and one ClickHouse record store, on this machine, measured in the
//! same run (the ratio is what matters: both share this machine's cores), and how long a
//! revocation made on one server takes to be refused by the other.
//!
//! Servers run in this process (each with its own data directory, TLS listener and
//! connections); PostgreSQL, ClickHouse and HAProxy are Debian's, started here on loopback
//! ports. `RAMPART_BENCH_AGENTS` (default 8) agents each send `RAMPART_BENCH_BATCHES` (default
//! 40) batches of 500 `net.connect` events through the proxy, concurrently; every run asserts
//! that ClickHouse then holds exactly that many records of the run.
//!
//! `cargo bench -p rampart-server --bench scaleout` (needs root for `runuser` to start
//! PostgreSQL, and the packages `postgresql`, `clickhouse-server`, `haproxy`).
#![allow(clippy::unwrap_used, reason = "benchmark: a failure is a failed run")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_server::client::QueryClient;
use rampart_server::{ControlStoreConfig, ServerConfig, StoreConfig};
use rampart_ship::output::{Output, ServerOutput};
use rampart_ship::queue::Entry;

const BATCH: u64 = 500;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn batch(instance: u64, first: u64, host: &str) -> Vec<Entry> {
    (first..first + BATCH)
        .map(|seq| {
            let ev = rampart_event::Event::new(
                rampart_event::EventId::new(instance, seq),
                now_ns(),
                rampart_event::EventKind::NetConnect,
                Arc::new(rampart_event::Device {
                    hostname: host.into(),
                    region: None,
                }),
            );
            Entry {
                seq,
                written_ms: 0,
                payload: serde_json::to_vec(&ev).unwrap(),
            }
        })
        .collect()
}

async fn server(
    dir: &std::path::Path,
    pg: &str,
    ch: &str,
    database: &str,
) -> rampart_server::ServerHandle {
    let mut cfg = ServerConfig::with_data_dir(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.store = StoreConfig::Clickhouse {
        url: ch.into(),
        database: Some(database.into()),
        user: None,
        password_file: None,
    };
    cfg.control_store = Some(ControlStoreConfig {
        postgres: pg.into(),
        password_file: None,
    });
    rampart_server::start(cfg).await.unwrap()
}

/// Events/s of `agents` agents sending `batches` batches each through `proxy_url`.
async fn run(
    root: &std::path::Path,
    first: &rampart_server::ServerHandle,
    proxy_url: &str,
    run: u64,
    agents: u64,
    batches: u64,
) -> f64 {
    let ca = root.join("a/ca/ca.crt");
    let token = first
        .create_enroll_token("eu-de", agents as u32, Duration::from_secs(600))
        .unwrap();
    let mut outs = Vec::new();
    for i in 0..agents {
        let tls = root.join(format!("agent-{run}-{i}"));
        rampart_ship::enroll::enroll(proxy_url, &token, &format!("h{run}-{i}"), &tls, false)
            .await
            .unwrap();
        outs.push(
            ServerOutput::new(
                "proxy",
                proxy_url,
                rampart_ship::tls::agent_client_config(&tls).unwrap(),
            )
            .unwrap(),
        );
    }
    // Bodies built before the clock starts.
    let bodies: Vec<Vec<Vec<Entry>>> = (0..agents)
        .map(|i| {
            (0..batches)
                .map(|b| batch(run * 1000 + i, 1 + b * BATCH, &format!("h{run}-{i}")))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = outs
        .into_iter()
        .zip(bodies)
        .map(|(mut out, bodies)| {
            tokio::spawn(async move {
                for b in &bodies {
                    loop {
                        match out.send(b).await {
                            Ok(_) => break,
                            Err(e) => {
                                eprintln!("retrying a batch: {e}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let admin = std::fs::read_to_string(root.join("a/admin.token")).unwrap();
    let mut q = QueryClient::new(&first.url(), &ca, admin.trim()).unwrap();
    let mut stored = 0;
    for i in 0..agents {
        stored += q.count(&[("host", format!("h{run}-{i}"))]).await.unwrap();
    }
    assert_eq!(stored, agents * batches * BATCH, "records lost or doubled");
    (agents * batches * BATCH) as f64 / secs
}

fn main() {
    let Some(pg) = testkit::Postgres::start("scaleout bench") else {
        return;
    };
    let Some(ch) = testkit::ClickHouse::start("scaleout bench") else {
        return;
    };
    let agents = env("RAMPART_BENCH_AGENTS", 8);
    let batches = env("RAMPART_BENCH_BATCHES", 40);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let root = tempfile::tempdir().unwrap();
        let a = server(&root.path().join("a"), &pg.url(), &ch.url(), "bench").await;
        let b = server(&root.path().join("b"), &pg.url(), &ch.url(), "bench").await;
        let one = testkit::HaProxy::start("scaleout bench", &[a.local_addr()]).unwrap();
        let two =
            testkit::HaProxy::start("scaleout bench", &[a.local_addr(), b.local_addr()]).unwrap();
        // Warm-up, then alternate one and two servers, three runs each.
        run(root.path(), &a, &one.url(), 0, agents, 4).await;
        let (mut r1, mut r2) = (Vec::new(), Vec::new());
        for round in 0..3u64 {
            r1.push(run(root.path(), &a, &one.url(), 1 + round * 2, agents, batches).await);
            r2.push(run(root.path(), &a, &two.url(), 2 + round * 2, agents, batches).await);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (m1, m2) = (median(&mut r1), median(&mut r2));
        println!(
            "ingest through HAProxy, {agents} agents x {batches} batches x {BATCH} events, median of 3:"
        );
        println!("  one server:  {m1:>9.0} events/s  ({r1:.0?})");
        println!("  two servers: {m2:>9.0} events/s  ({r2:.0?})  ratio {:.2}", m2 / m1);

        // Revocation on A until B refuses the agent: five agents, one at a time.
        let mut delays = Vec::new();
        for i in 0..5 {
            let token = a
                .create_enroll_token("eu-de", 1, Duration::from_secs(60))
                .unwrap();
            let tls = root.path().join(format!("revoked-{i}"));
            let e = rampart_ship::enroll::enroll(&a.url(), &token, &format!("rv-{i}"), &tls, false)
                .await
                .unwrap();
            a.revoke_agent(&e.agent_id).unwrap();
            let t = Instant::now();
            loop {
                let mut out = ServerOutput::new(
                    "b",
                    &b.url(),
                    rampart_ship::tls::agent_client_config(&tls).unwrap(),
                )
                .unwrap();
                if out.send(&batch(9000 + i, 1, &format!("rv-{i}"))[..1]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            delays.push(t.elapsed());
        }
        delays.sort();
        println!(
            "revocation on A refused by B after: {:?} (min {:?}, max {:?})",
            delays[delays.len() / 2],
            delays[0],
            delays[delays.len() - 1]
        );
        drop((one, two));
        a.shutdown().await;
        b.shutdown().await;
    });
}
