//! Shipping and ingest on this machine, against baselines measured in the same run.
//!
//! Parts (`RAMPART_BENCH_PARTS`, comma-separated; default all):
//!
//! * `sqlite`: baseline: the events as JSON lines into a file (buffered, one fsync); the
//!   agent's durable queue alone (`Shipper::send_all` with a file output); the server's half
//!   alone (`parse_batch` + `SqliteStore::insert` of 5000-record batches, no network); and the
//!   full path: agent shipper -> mTLS (zstd batches) -> server -> SQLite (WAL), agent and server
//!   in this process on loopback, timed until the server acknowledged the last record, with one
//!   batch in flight, with 4 in flight, and with `synchronous: normal`.
//! * `clickhouse`: the same into a ClickHouse server this benchmark starts (Debian's
//!   `clickhouse-server`, as the store tests do): the store alone, then the full path.
//! * `agent`: the agent in a separate process (this executable again) shipping at a fixed rate
//!   (10,000 events/s, then half the full path's maximum) to the server in this process: the
//!   agent's CPU time (getrusage of its process) per second, and the lag from an event's
//!   append to the agent's queue to its commit in the server's store (p50, p99, max).
//!
//! * `limits`: the full path with the server's default limits against the same with limits
//!   that never bind (issue 16), alternating, three runs each.
//!
//! `cargo bench -p rampart-server --bench ingest`; `RAMPART_BENCH_EVENTS` (default 200,000)
//! sets the count of the throughput runs, `RAMPART_BENCH_SECONDS` (default 10) the length of
//! each fixed-rate run.
#![allow(clippy::unwrap_used, reason = "benchmark: a failure is a failed run")]

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{events, process_cpu_seconds};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_event::Event;
use rampart_server::ingest::{decode_body, parse_batch, parse_batch_capped, Sender};
use rampart_server::store::{
    AfterInsert, ClickHouseConfig, ClickHouseStore, InsertHook, InsertOutcome, SqliteStore,
};
use rampart_server::{Query, ServerConfig, Store, StoreConfig, StoredRecord};
use rampart_ship::{OutputConfig, ShipConfig};

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn baseline(evs: &[Event], dir: &Path) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
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
            filter: Default::default(),
            delivery: Default::default(),
        }],
    );
    let device = evs[0].device.clone();
    let shipper =
        rampart_ship::start(&cfg, device, Vec::new(), &tokio::runtime::Handle::current()).unwrap();
    let s2 = shipper.clone();
    let evs2 = evs.to_vec();
    let start = Instant::now();
    tokio::task::spawn_blocking(move || send_chunks(&s2, &evs2))
        .await
        .unwrap();
    let queued = evs.len() as f64 / start.elapsed().as_secs_f64();
    wait_drained(&shipper).await;
    let delivered = evs.len() as f64 / start.elapsed().as_secs_f64();
    shipper.shutdown(Duration::from_secs(1)).await;
    (queued, delivered)
}

/// The server's half alone: JSON-lines batches of 5000 parsed and inserted, no network.
async fn store_only(evs: &[Event], store: Arc<dyn Store>, unsent: bool) -> (f64, f64) {
    store_only_in(evs, store, unsent, 5000).await
}

/// [`store_only`] with batches of `batch` records.
async fn store_only_in(
    evs: &[Event],
    store: Arc<dyn Store>,
    unsent: bool,
    batch: usize,
) -> (f64, f64) {
    let sender = Sender::local("agt-bench", "eu-de");
    let bodies: Vec<Vec<u8>> = evs
        .chunks(batch)
        .map(|c| {
            let mut b = Vec::new();
            for e in c {
                serde_json::to_writer(&mut b, e).unwrap();
                b.push(b'\n');
            }
            b
        })
        .collect();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    for body in bodies {
        let s = sender.clone();
        let parsed = tokio::task::spawn_blocking(move || parse_batch(&body, &s, None, now_ns()))
            .await
            .unwrap();
        assert!(parsed.rejected.is_empty());
        let o = store
            .insert_with(&parsed.rows, unsent, Box::new(|_| {}))
            .await
            .unwrap();
        assert_eq!(o.duplicates, 0);
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(
        store.count(&Query::default()).await.unwrap(),
        evs.len() as u64
    );
    (evs.len() as f64 / secs, cpu / secs)
}

/// A server in this process, an agent enrolled to it (TLS material in `dir/tls`).
async fn server_and_enrollment(
    dir: &Path,
    store: StoreConfig,
    layer: Option<rampart_server::StoreLayer>,
) -> (rampart_server::ServerHandle, String, PathBuf) {
    server_with_limits(dir, store, layer, None).await
}

/// [`server_and_enrollment`] with `limits` instead of the defaults.
async fn server_with_limits(
    dir: &Path,
    store: StoreConfig,
    layer: Option<rampart_server::StoreLayer>,
    limits: Option<rampart_server::config::Limits>,
) -> (rampart_server::ServerHandle, String, PathBuf) {
    let mut cfg = ServerConfig::with_data_dir(dir.join("server"));
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.store = store;
    if let Some(l) = limits {
        cfg.limits = l;
    }
    let server = match layer {
        Some(l) => rampart_server::start_with(cfg, l).await.unwrap(),
        None => rampart_server::start(cfg).await.unwrap(),
    };
    let url = server.url();
    let token = server
        .create_enroll_token("eu-de", 1, Duration::from_secs(600))
        .unwrap();
    let tls = dir.join("tls");
    rampart_ship::enroll::enroll(&url, &token, "bench-host", &tls, false)
        .await
        .unwrap();
    (server, url, tls)
}

fn server_output(url: &str, tls: &Path) -> OutputConfig {
    OutputConfig::Server {
        url: url.to_string(),
        tls_dir: tls.to_path_buf(),
        compression_level: None,
        name: None,
        filter: Default::default(),
    }
}

/// Agent shipper -> mTLS -> server -> `store`, in this process; events/s and cores busy.
async fn full(evs: &[Event], dir: &Path, store: StoreConfig, in_flight: usize) -> (f64, f64) {
    full_with_limits(evs, dir, store, in_flight, None).await
}

/// [`full`] with the server's `limits`.
async fn full_with_limits(
    evs: &[Event],
    dir: &Path,
    store: StoreConfig,
    in_flight: usize,
    limits: Option<rampart_server::config::Limits>,
) -> (f64, f64) {
    let (server, url, tls) = server_with_limits(dir, store, None, limits).await;
    let mut cfg = ship_config(&dir.join("agent"), vec![server_output(&url, &tls)]);
    cfg.batch.in_flight = in_flight;
    let shipper = rampart_ship::start(
        &cfg,
        evs[0].device.clone(),
        Vec::new(),
        &tokio::runtime::Handle::current(),
    )
    .unwrap();
    // The events handed to the agent, copied before the clock starts.
    let s2 = shipper.clone();
    let evs2 = evs.to_vec();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    tokio::task::spawn_blocking(move || send_chunks(&s2, &evs2))
        .await
        .unwrap();
    wait_drained(&shipper).await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let stored = server.store().count(&Query::default()).await.unwrap();
    assert_eq!(stored, evs.len() as u64, "every event stored once");
    shipper.shutdown(Duration::from_secs(1)).await;
    server.shutdown().await;
    (evs.len() as f64 / secs, cpu / secs)
}

fn sqlite(synchronous: &str) -> StoreConfig {
    StoreConfig::Sqlite {
        path: None,
        synchronous: Some(synchronous.into()),
        cache_mib: None,
    }
}

fn clickhouse(url: &str, database: &str) -> StoreConfig {
    StoreConfig::Clickhouse {
        url: url.to_string(),
        database: Some(database.into()),
        user: None,
        password_file: None,
    }
}

struct Paced {
    rate: u64,
    events: u64,
    agent_cpu_s: f64,
    wall_s: f64,
    behind_ms: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// The agent in another process at `rate` events/s for `seconds`, shipping to a server (SQLite,
/// default settings) in this process.
async fn paced(dir: &Path, rate: u64, seconds: u64) -> Paced {
    let lags = Arc::new(Mutex::new(Vec::new()));
    let l2 = lags.clone();
    let layer: rampart_server::StoreLayer = Box::new(move |inner| {
        // For every committed record: how long after its event time (set when the agent
        // appended it) the commit returned.
        let hook: InsertHook = Arc::new(move |rows: &[StoredRecord], _: &InsertOutcome| {
            let now = now_ns();
            let mut l = l2.lock().unwrap();
            l.extend(rows.iter().map(|r| now.saturating_sub(r.time_ns)));
        });
        Arc::new(AfterInsert::new(inner, hook)) as Arc<dyn Store>
    });
    let (server, url, tls) = server_and_enrollment(dir, sqlite("full"), Some(layer)).await;
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env("RAMPART_BENCH_ROLE", "agent")
        .env("RAMPART_BENCH_URL", &url)
        .env("RAMPART_BENCH_TLS", &tls)
        .env("RAMPART_BENCH_QUEUE", dir.join("agent"))
        .env("RAMPART_BENCH_RATE", rate.to_string())
        .env("RAMPART_BENCH_SECONDS", seconds.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "agent process: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("AGENT "))
        .unwrap_or_else(|| panic!("agent printed no result: {text}"));
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .unwrap()
            .parse()
            .unwrap()
    };
    let stored = server.store().count(&Query::default()).await.unwrap();
    let events = field("events") as u64;
    assert_eq!(stored, events, "every event stored once");
    server.shutdown().await;
    let mut l = std::mem::take(&mut *lags.lock().unwrap());
    l.sort_unstable();
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)] as f64 / 1e6;
    Paced {
        rate,
        events,
        agent_cpu_s: field("cpu_s"),
        wall_s: field("wall_s"),
        behind_ms: field("behind_ms") as u64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: l.last().copied().unwrap_or(0) as f64 / 1e6,
    }
}

/// The child process of [`paced`]: the agent's shipper (queue + server output, default
/// settings) fed `rate` events/s in 10 ms steps, each event's time set as it is appended.
fn agent_role() {
    let env = |k: &str| std::env::var(k).unwrap();
    let rate: u64 = env("RAMPART_BENCH_RATE").parse().unwrap();
    let seconds: u64 = env("RAMPART_BENCH_SECONDS").parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = ShipConfig::new(PathBuf::from(env("RAMPART_BENCH_QUEUE")).join("queue"));
    // As measured in docs/benchmarks.md (the default is 1).
    cfg.batch.in_flight = 4;
    cfg.outputs = vec![server_output(
        &env("RAMPART_BENCH_URL"),
        Path::new(&env("RAMPART_BENCH_TLS")),
    )];
    let mut evs = events(rate * seconds, "bench-host", 0xa9e7);
    let shipper = rt
        .block_on(async {
            rampart_ship::start(
                &cfg,
                evs[0].device.clone(),
                Vec::new(),
                &rt.handle().clone(),
            )
        })
        .unwrap();
    let step = Duration::from_millis(10);
    let per_step = (rate / 100).max(1) as usize;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut behind = Duration::ZERO;
    for (i, chunk) in evs.chunks_mut(per_step).enumerate() {
        let due = start + step * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            behind = behind.max(now - due);
        }
        let t = now_ns();
        for e in chunk.iter_mut() {
            e.time_ns = t;
        }
        let r = shipper.send_all(chunk).unwrap();
        assert_eq!(r.dropped, 0);
    }
    rt.block_on(wait_drained(&shipper));
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "AGENT events={} cpu_s={cpu:.4} wall_s={wall:.4} behind_ms={}",
        evs.len(),
        behind.as_millis()
    );
    rt.block_on(shipper.shutdown(Duration::from_secs(1)));
}

fn main() {
    if std::env::var("RAMPART_BENCH_ROLE").as_deref() == Ok("agent") {
        agent_role();
        return;
    }
    let n: u64 = std::env::var("RAMPART_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seconds: u64 = std::env::var("RAMPART_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let parts = std::env::var("RAMPART_BENCH_PARTS").unwrap_or("sqlite,clickhouse,agent".into());
    let part = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let evs = events(n, "bench-host", 0xbe7c);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    println!(
        "events: {n} (net.connect, ~{} bytes of JSON each); load average at start: {}",
        serde_json::to_vec(&evs[0]).unwrap().len(),
        load_average()
    );
    let mut max_rate: Option<f64> = None;
    if part("parse") {
        // The server's JSON work alone, for profiling: parse_batch of 5000-record bodies.
        let sender = Sender::local("agt-bench", "eu-de");
        let mut body = Vec::new();
        for e in &evs[..5000.min(evs.len())] {
            serde_json::to_writer(&mut body, e).unwrap();
            body.push(b'\n');
        }
        let cpu0 = cpu_seconds();
        let rounds = (n as usize / 5000).max(1);
        for _ in 0..rounds {
            let p = parse_batch(&body, &sender, None, now_ns());
            assert!(p.rejected.is_empty());
        }
        let per = (cpu_seconds() - cpu0) / (rounds * 5000) as f64 * 1e6;
        println!("parse     parse_batch alone: {per:.2} µs of CPU per event");
        // The checks of issue 16 (the line cap, the enrolled host name written into every
        // record, event times clamped into [enrollment, now + 5 min]) against the same parse
        // without them (the in-process sender: no host rewrite, no lower time bound, no line
        // cap), alternating round by round so that both see the same machine.
        let enrolled = Sender {
            agent_id: "agt-bench".into(),
            region: "eu-de".into(),
            hostname: Some("bench-host".into()),
            enrolled_ns: now_ns() - 3_600_000_000_000,
        };
        // This thread's CPU clock (exact, where getrusage counts in scheduler ticks).
        let thread_cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime fills the struct we pass.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
        };
        let (mut with, mut without) = (0.0, 0.0);
        let checked = || {
            let cpu0 = thread_cpu();
            let p = parse_batch_capped(&body, &enrolled, None, now_ns(), 100_000).unwrap();
            assert!(p.rejected.is_empty() && p.identity_claims == 0 && p.clock_clamped == 0);
            thread_cpu() - cpu0
        };
        let unchecked = || {
            let cpu0 = thread_cpu();
            let p = parse_batch(&body, &sender, None, now_ns());
            assert!(p.rejected.is_empty());
            thread_cpu() - cpu0
        };
        // Which goes first alternates too (the first of a pair finds colder caches).
        let pairs = rounds.max(100);
        for round in 0..pairs {
            if round % 2 == 0 {
                with += checked();
                without += unchecked();
            } else {
                without += unchecked();
                with += checked();
            }
        }
        println!(
            "parse     with the ingest checks (enrolled host, clock bounds, line cap): {:.2} µs, without: {:.2} µs per event ({:.3}x)",
            with / (pairs * 5000) as f64 * 1e6,
            without / (pairs * 5000) as f64 * 1e6,
            with / without
        );
        // The decompression before it, of the batch as the agent sends it (zstd level 3).
        let z = zstd::bulk::compress(&body, 3).unwrap();
        let cpu0 = cpu_seconds();
        for _ in 0..rounds {
            assert_eq!(decode_body(&z, Some("zstd")).unwrap().len(), body.len());
        }
        let dec = (cpu_seconds() - cpu0) / (rounds * 5000) as f64 * 1e6;
        println!("parse     decode_body of the zstd batch: {dec:.2} µs of CPU per event");
        // The general path (a JSON tree, as every record took before the fast path): an
        // anonymiser that changes nothing forces it.
        let policy: rampart_ship::anonymise::AnonymiseConfig = serde_yaml::from_str("{}").unwrap();
        let a = rampart_ship::anonymise::Anonymiser::new(policy, &[7u8; 32]).unwrap();
        let cpu0 = cpu_seconds();
        for _ in 0..rounds {
            let p = parse_batch(&body, &sender, Some(&a), now_ns());
            assert!(p.rejected.is_empty());
        }
        let tree = (cpu_seconds() - cpu0) / (rounds * 5000) as f64 * 1e6;
        println!(
            "parse     ... through the JSON tree (anonymiser with an empty policy): {tree:.2} µs per event ({:.2}x)",
            tree / per
        );
    }
    if part("pages") {
        // The SQLite insert alone (records parsed beforehand), into a database created with
        // 4 KiB pages (SQLite's default, what `SqliteStore` created before) and into one
        // created by `SqliteStore::open` now (16 KiB pages): CPU per record.
        let sender = Sender::local("agt-bench", "eu-de");
        let batches: Vec<Vec<StoredRecord>> = evs
            .chunks(5000)
            .map(|c| {
                let mut b = Vec::new();
                for e in c {
                    serde_json::to_writer(&mut b, e).unwrap();
                    b.push(b'\n');
                }
                parse_batch(&b, &sender, None, now_ns()).rows
            })
            .collect();
        let mut per = Vec::new();
        for (name, page) in [
            ("4 KiB pages", Some(4096)),
            ("16 KiB pages (default)", None),
        ] {
            let path = d.join(format!("pages-{}.db", page.unwrap_or(0)));
            if let Some(size) = page {
                let c = rusqlite::Connection::open(&path).unwrap();
                c.execute_batch(&format!(
                    "PRAGMA page_size={size}; PRAGMA journal_mode=WAL;"
                ))
                .unwrap();
            }
            let store = SqliteStore::open(&path, true).unwrap();
            let cpu0 = cpu_seconds();
            let start = Instant::now();
            for b in &batches {
                rt.block_on(store.insert(b)).unwrap();
            }
            let wall = start.elapsed().as_secs_f64();
            let cpu = (cpu_seconds() - cpu0) / n as f64 * 1e6;
            per.push(cpu);
            // The checkpoint thread keeps the WAL near 64 MiB of records.
            std::thread::sleep(Duration::from_millis(300));
            let wal = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
            let db = std::fs::metadata(&path).map_or(0, |m| m.len());
            println!(
                "pages     SQLite insert alone, {name:<24} {cpu:>6.2} µs CPU per record ({:.2}x 4 KiB), {:>7.0} records/s; database {} MiB, WAL {} MiB",
                cpu / per[0],
                n as f64 / wall,
                db >> 20,
                wal >> 20
            );
        }
    }
    if part("sqlite") {
        let base = baseline(&evs, &d.join("b"));
        let (queued, delivered) = rt.block_on(queue_only(&evs, &d.join("q")));
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&d.join("store-only.db"), true).unwrap());
        let (alone, alone_cores) = rt.block_on(store_only(&evs, store, false));
        let (one, one_cores) = rt.block_on(full(&evs, &d.join("f1"), sqlite("full"), 1));
        // Several batches in flight (the default, 4; committed in queue order by the server).
        let many_in_flight = 4;
        let (many, many_cores) =
            rt.block_on(full(&evs, &d.join("f4"), sqlite("full"), many_in_flight));
        let (normal, normal_cores) =
            rt.block_on(full(&evs, &d.join("fn"), sqlite("normal"), many_in_flight));
        max_rate = Some(many);
        println!("baseline  JSON lines to a file, one fsync                  {base:>9.0} events/s");
        let row = |what: &str, v: f64, cores: Option<f64>| {
            let c = cores.map_or(String::new(), |c| format!(", {c:.2} cores busy"));
            println!(
                "{what:<58} {v:>9.0} events/s  {:.2}x baseline, {:.2}x store alone{c}",
                v / base,
                v / alone
            );
        };
        row(
            "queue     Shipper::send_all into the durable queue",
            queued,
            None,
        );
        row(
            "queue     ... and delivered by the file output",
            delivered,
            None,
        );
        row(
            "sqlite    store alone: parse_batch + insert, no network",
            alone,
            Some(alone_cores),
        );
        row(
            "sqlite    full path, 1 batch in flight, synchronous=full",
            one,
            Some(one_cores),
        );
        row(
            &format!("sqlite    full path, {many_in_flight} in flight (default), synchronous=full"),
            many,
            Some(many_cores),
        );
        row(
            &format!("sqlite    full path, {many_in_flight} in flight, synchronous=normal"),
            normal,
            Some(normal_cores),
        );
        println!("load average after sqlite: {}", load_average());
    }
    if part("limits") {
        // The full path (SQLite, 4 in flight) with the server's default limits (issue 16:
        // 256 MiB of batches in parsing, 100,000 lines, 64 MiB) and with them loosened so that
        // they never bind (64 GiB, no line cap): three runs of each, alternating.
        let loose = rampart_server::config::Limits {
            ingest_memory_bytes: 64 << 30,
            ingest_lines: usize::MAX,
            max_connections: 100_000,
            ..rampart_server::config::Limits::default()
        };
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for i in 0..3 {
            let d1 = d.join(format!("lim-{i}"));
            let d2 = d.join(format!("loose-{i}"));
            with.push(
                rt.block_on(full_with_limits(&evs, &d1, sqlite("full"), 4, None))
                    .0,
            );
            without.push(
                rt.block_on(full_with_limits(
                    &evs,
                    &d2,
                    sqlite("full"),
                    4,
                    Some(loose.clone()),
                ))
                .0,
            );
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (w, wo) = (median(&mut with), median(&mut without));
        println!(
            "limits    full path, 4 in flight, default limits: {w:.0} events/s, limits loosened: {wo:.0} events/s (median of 3 each: {:.3}x; runs {with:.0?} / {without:.0?})",
            w / wo
        );
    }
    if part("clickhouse") {
        match support::ClickHouse::start("ingest bench (clickhouse)") {
            None => println!("clickhouse: skipped (clickhouse-server not installed)"),
            Some(ch) => {
                let url = ch.url();
                let store: Arc<dyn Store> = Arc::new(
                    rt.block_on(ClickHouseStore::open(ClickHouseConfig {
                        url: url.clone(),
                        database: "bench_store".into(),
                        user: None,
                        password: None,
                    }))
                    .unwrap(),
                );
                let ch_cpu = || process_cpu_seconds(ch.pid());
                let timed = |c0: f64, w0: Instant| (ch_cpu() - c0) / w0.elapsed().as_secs_f64();
                let (c0, w0) = (ch_cpu(), Instant::now());
                let (alone, alone_cores) = rt.block_on(store_only(&evs, store, false));
                let alone_ch = timed(c0, w0);
                // The same records again under new ids, as a batch never sent before (what the
                // agent's first attempts are): no lookup of known ids.
                let fresh = events(n, "bench-host", 0xf4e5);
                let store2: Arc<dyn Store> = Arc::new(
                    rt.block_on(ClickHouseStore::open(ClickHouseConfig {
                        url: url.clone(),
                        database: "bench_store_unsent".into(),
                        user: None,
                        password: None,
                    }))
                    .unwrap(),
                );
                let (c0, w0) = (ch_cpu(), Instant::now());
                let (unsent, unsent_cores) = rt.block_on(store_only(&fresh, store2, true));
                let unsent_ch = timed(c0, w0);
                // clickhouse-server's own CPU per record by insert size (unsent, no lookup).
                for (i, batch) in [5000usize, 20_000, 50_000].into_iter().enumerate() {
                    let evs = events(n, "bench-host", 0xf500 + i as u64);
                    let store: Arc<dyn Store> = Arc::new(
                        rt.block_on(ClickHouseStore::open(ClickHouseConfig {
                            url: url.clone(),
                            database: format!("bench_size_{batch}"),
                            user: None,
                            password: None,
                        }))
                        .unwrap(),
                    );
                    let (c0, w0) = (ch_cpu(), Instant::now());
                    let (rate, _) = rt.block_on(store_only_in(&evs, store, true, batch));
                    let ch_cores = timed(c0, w0);
                    println!(
                        "clickhouse inserts of {batch:>6} records: {rate:>7.0} records/s, clickhouse-server {:.1} µs of CPU per record",
                        ch_cores / rate * 1e6
                    );
                }
                let many_in_flight = 4;
                let (c0, w0) = (ch_cpu(), Instant::now());
                let (one, one_cores) = rt.block_on(full(
                    &evs,
                    &d.join("c1"),
                    clickhouse(&url, "bench_full1"),
                    1,
                ));
                let one_ch = timed(c0, w0);
                let (c0, w0) = (ch_cpu(), Instant::now());
                let (many, many_cores) = rt.block_on(full(
                    &evs,
                    &d.join("c4"),
                    clickhouse(&url, "bench_full4"),
                    many_in_flight,
                ));
                let many_ch = timed(c0, w0);
                let row = |what: &str, v: f64, cores: f64, ch: f64| {
                    println!(
                        "{what:<58} {v:>9.0} events/s  {:.2}x store alone, {cores:.2} cores busy here + {ch:.2} in clickhouse-server",
                        v / alone
                    );
                };
                row(
                    "clickhouse store alone: parse_batch + insert, no TLS",
                    alone,
                    alone_cores,
                    alone_ch,
                );
                row(
                    "clickhouse store alone, unsent batches (no id lookup)",
                    unsent,
                    unsent_cores,
                    unsent_ch,
                );
                row(
                    "clickhouse full path, 1 batch in flight",
                    one,
                    one_cores,
                    one_ch,
                );
                row(
                    &format!("clickhouse full path, {many_in_flight} in flight (default)"),
                    many,
                    many_cores,
                    many_ch,
                );
                println!("load average after clickhouse: {}", load_average());
            }
        }
    }
    if part("agent") {
        let half = max_rate.map_or(10_000, |m| ((m / 2.0) as u64 / 100) * 100);
        for rate in [10_000u64, half] {
            let p = rt.block_on(paced(&d.join(format!("paced-{rate}")), rate, seconds));
            let ms_per_s = p.agent_cpu_s / p.wall_s * 1000.0;
            println!(
                "agent     {} events/s for {:.1} s ({} events): agent CPU {ms_per_s:.0} ms/s = {:.1}% of a core, {:.1}% per 10,000 events/s; pacing fell behind by at most {} ms",
                p.rate,
                p.wall_s,
                p.events,
                ms_per_s / 10.0,
                ms_per_s / 10.0 * 10_000.0 / p.rate as f64,
                p.behind_ms
            );
            println!(
                "lag       append -> committed at {} events/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                p.rate, p.p50_ms, p.p99_ms, p.max_ms
            );
        }
        println!("load average after agent: {}", load_average());
    }
}
