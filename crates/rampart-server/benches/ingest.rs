//! Shipping and ingest throughput on this machine, against baselines measured in the same run.
//!
//! * baseline: the same events serialised as JSON lines into a file (buffered, one fsync);
//! * queue: the agent's durable queue alone (`Shipper::send_all` with a file output, fsync
//!   every 200 ms): what the agent pays per event;
//! * full: agent shipper -> mTLS (zstd batches) -> server -> SQLite (WAL, synchronous=full),
//!   agent and server in this process on loopback, timed until the server acknowledged the
//!   last record (every record committed and queryable).
//!
//! `cargo bench -p rampart-server --bench ingest` (RAMPART_BENCH_EVENTS overrides the count).
#![allow(clippy::unwrap_used, reason = "benchmark: a failure is a failed run")]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_event::{
    Container, ContainerRuntime, Device, Endpoint, Event, EventId, EventKind, NetDirection,
    NetInfo, Process,
};
use rampart_server::ServerConfig;
use rampart_ship::{OutputConfig, ShipConfig};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn events(n: u64, host: &str) -> Vec<Event> {
    let device = Arc::new(Device {
        hostname: host.into(),
        region: None,
    });
    let container = Arc::new(Container::unnamed("c".repeat(64), ContainerRuntime::Docker));
    let process = Arc::new(Process {
        pid: 4242,
        name: "curl".into(),
        args: vec!["curl".into(), "-s".into(), "https://example.net/".into()],
        user: Some("www-data".into()),
        ..Process::default()
    });
    let t0 = now_ns();
    (0..n)
        .map(|i| {
            let mut e = Event::new(
                EventId::new(0xbe7c, i),
                t0 + i,
                EventKind::NetConnect,
                device.clone(),
            );
            e.container = Some(container.clone());
            e.process = Some(process.clone());
            e.network = Some(NetInfo {
                protocol: "tcp".into(),
                family: "inet".into(),
                direction: NetDirection::Outbound,
                src: Some(Endpoint {
                    ip: "172.17.0.2".parse().unwrap(),
                    port: 40000 + (i % 20000) as u16,
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
        })
        .collect()
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn baseline(evs: &[Event], dir: &Path) -> f64 {
    let path = dir.join("baseline.jsonl");
    let start = Instant::now();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    for e in evs {
        serde_json::to_writer(&mut w, e).unwrap();
        w.write_all(b"\n").unwrap();
    }
    let f = w.into_inner().unwrap();
    f.sync_all().unwrap();
    evs.len() as f64 / start.elapsed().as_secs_f64()
}

async fn wait_drained(shipper: &rampart_ship::Shipper) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while shipper.stats().outputs.iter().any(|o| o.pending > 0) {
        assert!(
            Instant::now() < deadline,
            "not drained: {:?}",
            shipper.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn ship_config(dir: &Path, outputs: Vec<OutputConfig>) -> ShipConfig {
    let mut cfg = ShipConfig::new(dir.join("queue"));
    cfg.outputs = outputs;
    cfg.batch.linger_ms = 20;
    cfg.backoff.initial_ms = 50;
    cfg
}

fn send_chunks(shipper: &rampart_ship::Shipper, evs: &[Event]) {
    for chunk in evs.chunks(500) {
        let r = shipper.send_all(chunk).unwrap();
        assert_eq!(r.dropped, 0);
    }
}

async fn queue_only(evs: &[Event], dir: &Path) -> (f64, f64) {
    let cfg = ship_config(
        dir,
        vec![OutputConfig::File {
            path: dir.join("shipped.jsonl"),
            name: None,
        }],
    );
    let device = evs[0].device.clone();
    let shipper =
        rampart_ship::start(&cfg, device, Vec::new(), &tokio::runtime::Handle::current()).unwrap();
    let start = Instant::now();
    let s2 = shipper.clone();
    let evs2 = evs.to_vec();
    tokio::task::spawn_blocking(move || send_chunks(&s2, &evs2))
        .await
        .unwrap();
    let queued = evs.len() as f64 / start.elapsed().as_secs_f64();
    wait_drained(&shipper).await;
    let delivered = evs.len() as f64 / start.elapsed().as_secs_f64();
    shipper.shutdown(Duration::from_secs(1)).await;
    (queued, delivered)
}

async fn full(evs: &[Event], dir: &Path) -> (f64, f64) {
    let data = dir.join("server");
    let mut cfg = ServerConfig::with_data_dir(&data);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = rampart_server::start(cfg).await.unwrap();
    let url = server.url();
    let token = server
        .create_enroll_token("eu-de", 1, Duration::from_secs(600))
        .unwrap();
    let tls = dir.join("tls");
    rampart_ship::enroll::enroll(&url, &token, "bench-host", &tls, false)
        .await
        .unwrap();
    let cfg = ship_config(
        &dir.join("agent"),
        vec![OutputConfig::Server {
            url: url.clone(),
            tls_dir: tls,
            compression_level: None,
            name: None,
        }],
    );
    let shipper = rampart_ship::start(
        &cfg,
        evs[0].device.clone(),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let s2 = shipper.clone();
    let evs2 = evs.to_vec();
    tokio::task::spawn_blocking(move || send_chunks(&s2, &evs2))
        .await
        .unwrap();
    wait_drained(&shipper).await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let stored = server
        .store()
        .count(&rampart_server::Query::default())
        .await
        .unwrap();
    assert_eq!(stored, evs.len() as u64, "every event stored once");
    shipper.shutdown(Duration::from_secs(1)).await;
    server.shutdown().await;
    (evs.len() as f64 / secs, cpu / secs)
}

fn main() {
    let n: u64 = std::env::var("RAMPART_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let evs = events(n, "bench-host");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = baseline(&evs, dir.path());
    let (queued, delivered) = rt.block_on(queue_only(&evs, &dir.path().join("q")));
    let (ingest, cores) = rt.block_on(full(&evs, &dir.path().join("full")));
    println!("events: {n} (net.connect, ~{} bytes of JSON each)", {
        serde_json::to_vec(&evs[0]).unwrap().len()
    });
    println!("baseline  JSON lines to a file, one fsync        {base:>10.0} events/s");
    println!(
        "queue     Shipper::send_all into the durable queue  {queued:>10.0} events/s  ({:.2}x baseline)",
        queued / base
    );
    println!(
        "queue     ... and delivered by the file output      {delivered:>10.0} events/s  ({:.2}x baseline)",
        delivered / base
    );
    println!(
        "full      queue + mTLS + zstd + server + SQLite     {ingest:>10.0} events/s  ({:.2}x baseline), {cores:.2} cores busy (agent and server together)",
        ingest / base
    );
}
