//! Ingest through the store stack `rampart server` runs (the fleet correlator around the
//! SQLite store), against the bare store measured in the same run: an agent shipper with the
//! default settings -> zstd batches over mutual TLS (loopback) -> server -> store, in one
//! process, timed until the server acknowledged the last record.
//!
//! `cargo bench -p rampart-fleet --bench ingest_stack`; `RAMPART_BENCH_EVENTS` (default
//! 200,000) sets the count. The events are `net.connect` of one host to one address, so the
//! correlator runs its rules on every record but raises nothing: its cost per record, not the
//! cost of storing alerts.
#![allow(clippy::unwrap_used, reason = "benchmark: a failure is a failed run")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{Device, Endpoint, Event, EventId, EventKind, NetDirection, NetInfo, Process};
use rampart_fleet::FleetConfig;
use rampart_server::{Query, ServerConfig};
use rampart_ship::{OutputConfig, ShipConfig};

/// CPU seconds (user + system) of this process so far, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime, in clock ticks (100 per second on Linux).
    (f[11] + f[12]) / 100.0
}

fn events(n: u64) -> Vec<Event> {
    let device = Arc::new(Device {
        hostname: "bench-host".into(),
        region: None,
    });
    let process = Arc::new(Process {
        pid: 4242,
        name: "curl".into(),
        args: vec!["curl".into(), "-s".into(), "https://example.net/".into()],
        ..Process::default()
    });
    let t0 = 1_790_000_000_000_000_000;
    (0..n)
        .map(|i| {
            let mut e = Event::new(EventId::new(0x57ac, i), t0 + i, EventKind::NetConnect, {
                device.clone()
            });
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
                    ip: "192.0.2.9".parse().unwrap(),
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

/// Events/s and cores busy of the full path, with the fleet layer or without.
async fn full_path(evs: &[Event], dir: &std::path::Path, fleet: bool) -> (f64, f64) {
    std::fs::create_dir_all(dir.join("server")).unwrap();
    let mut cfg = ServerConfig::with_data_dir(dir.join("server"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = if fleet {
        let db = rampart_fleet::db_path(&dir.join("server"));
        let (layer, _) = rampart_fleet::server_layer(FleetConfig::new(Some(db))).unwrap();
        rampart_server::start_with(cfg, layer).await.unwrap()
    } else {
        rampart_server::start(cfg).await.unwrap()
    };
    let url = server.url();
    let token = server
        .create_enroll_token("eu-de", 1, Duration::from_secs(600))
        .unwrap();
    let tls = dir.join("tls");
    rampart_ship::enroll::enroll(&url, &token, "bench-host", &tls, false)
        .await
        .unwrap();
    let mut sc = ShipConfig::new(dir.join("queue"));
    sc.outputs = vec![OutputConfig::Server {
        url,
        tls_dir: tls,
        compression_level: None,
        name: None,
    }];
    sc.batch.linger_ms = 20;
    let shipper = rampart_ship::start(
        &sc,
        evs[0].device.clone(),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    let (s2, evs2) = (shipper.clone(), evs.to_vec());
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    tokio::task::spawn_blocking(move || {
        for chunk in evs2.chunks(500) {
            assert_eq!(s2.send_all(chunk).unwrap().dropped, 0);
        }
    })
    .await
    .unwrap();
    while shipper.stats().outputs.iter().any(|o| o.pending > 0) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cores = (cpu_seconds() - cpu0) / secs;
    let q = Query {
        event_type: Some("net.connect".into()),
        ..Query::default()
    };
    assert_eq!(server.store().count(&q).await.unwrap(), evs.len() as u64);
    shipper.shutdown(Duration::from_secs(1)).await;
    server.shutdown().await;
    (evs.len() as f64 / secs, cores)
}

fn main() {
    let n: u64 = std::env::var("RAMPART_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let evs = events(n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "events: {n} net.connect (~{} bytes of JSON each); full path, SQLite, agent defaults (4 in flight)",
        serde_json::to_vec(&evs[0]).unwrap().len()
    );
    let (bare, bare_cores) = rt.block_on(full_path(&evs, &dir.path().join("bare"), false));
    let (stack, stack_cores) = rt.block_on(full_path(&evs, &dir.path().join("fleet"), true));
    println!(
        "bare store                         {bare:>9.0} events/s  1.00x  {bare_cores:.2} cores busy"
    );
    println!(
        "fleet correlator around the store  {stack:>9.0} events/s  {:.2}x  {stack_cores:.2} cores busy",
        stack / bare
    );
}
