//! Ingest through the store stack `rampart server` runs (the fleet correlator around the
//! SQLite store), against the bare store measured in the same run: an agent shipper with the
//! default settings -> zstd batches over mutual TLS (loopback) -> server -> store, in one
//! process, timed until the server acknowledged the last record.
//!
//! `cargo bench -p rampart-fleet --bench ingest_stack`; `RAMPART_BENCH_EVENTS` (default
//! 200,000) sets the count. The events are those of the server's ingest benchmark
//! (`net.connect` of one host to one address), so the correlator runs its rules on every
//! record but raises nothing: its cost per record, not the cost of storing alerts.
#![allow(clippy::unwrap_used, reason = "benchmark: a failure is a failed run")]

use std::time::{Duration, Instant};

use rampart_event::Event;
use rampart_fleet::FleetConfig;
use rampart_server::{Query, ServerConfig};
use rampart_ship::{OutputConfig, ShipConfig};

#[path = "../../rampart-server/benches/common/mod.rs"]
mod common;

use common::{events, process_cpu_seconds};

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    process_cpu_seconds(std::process::id())
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
        filter: Default::default(),
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
    let evs = events(n, "bench-host", 0x57ac);
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
