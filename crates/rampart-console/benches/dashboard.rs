//! Dashboard latency over a large SQLite store: the first page (HTML, assets, `me`, the
//! overview data) and the other main endpoints, over real HTTPS against the real server (fleet
//! layer and dashboard mounted as `rampart server` mounts them).
//!
//! ```sh
//! cargo bench -p rampart-console --bench dashboard              # 10,000,000 stored events
//! cargo bench -p rampart-console --bench dashboard -- 1000000   # fewer
//! ```
//!
//! The store is filled once through `Store::insert` (batches of 50,000 records, one transaction
//! each, so the summaries are kept as at ingest) and reused from
//! `/var/cache/rampart/bench/console-<N>/` (`RAMPART_BENCH_DIR` overrides the parent). Baselines
//! measured in the same run: `GET /healthz` on the same connection, and every endpoint on a
//! server with an empty store.
#![allow(clippy::unwrap_used, reason = "benchmark: a failure aborts it")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use rampart_server::store::{day_of, SqliteStore};
use rampart_server::StoredRecord;
use rampart_server::{RecordKind, Role, ServerConfig, ServerExtras, ServerHandle, Store};
use rampart_ship::client::HttpClient;

const HOSTS: usize = 500;
const CONTAINERS_PER_HOST: usize = 8;
const BATCH: usize = 50_000;
/// One record in this many is an alert.
const ALERT_EVERY: usize = 200;
const SPAN_NS: u64 = 7 * 86_400_000_000_000;
const PASSWORD: &str = "benchmark password";

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn host_name(h: usize) -> String {
    format!("host-{h:04}")
}

fn container_id(h: usize, c: usize) -> String {
    format!("{h:04x}{c:04x}{}", "0".repeat(56))
}

/// The `i`-th record of `n`, spread over the last 7 days before `end_ns`.
fn record(i: usize, n: usize, end_ns: u64) -> StoredRecord {
    let h = i % HOSTS;
    let c = (i / HOSTS) % CONTAINERS_PER_HOST;
    let host = host_name(h);
    let cid = container_id(h, c);
    let cname = format!("app-{c}");
    let t = end_ns - SPAN_NS + (i as u64) * (SPAN_NS / n as u64);
    let region = ["eu-de", "us-ca", "sg", "in"][h % 4];
    let id = format!("bench-{i:010}");
    let alert = i % ALERT_EVERY == ALERT_EVERY - 1;
    let (kind, ty, rule, json) = if alert {
        (
            RecordKind::Alert,
            "alert",
            "Terminal shell in container",
            format!(
                r#"{{"class_uid":2004,"metadata":{{"uid":"{id}"}},"message":"Shell in container (user=root cmdline=sh -c id container={cname})","type":"alert","time_ns":{t},"rule":"Terminal shell in container","priority":"Warning","tags":["container","shell"],"device":{{"hostname":"{host}","region":"{region}"}},"container":{{"uid":"{cid}","name":"{cname}","runtime":"docker","image":"registry.example/app:{c}"}},"process":{{"pid":{i},"name":"sh","exe":"/bin/sh","args":["sh","-c","id"],"cwd":"/","uid":0}}}}"#
            ),
        )
    } else {
        (
            RecordKind::Event,
            "process.exec",
            "",
            format!(
                r#"{{"class_uid":1007,"metadata":{{"uid":"{id}"}},"type":"process.exec","time_ns":{t},"device":{{"hostname":"{host}","region":"{region}"}},"container":{{"uid":"{cid}","name":"{cname}","runtime":"docker","image":"registry.example/app:{c}"}},"process":{{"pid":{i},"ppid":1,"name":"worker","exe":"/usr/local/bin/worker","args":["worker","--job","{i}","--queue","default"],"cwd":"/srv","uid":1000}}}}"#
            ),
        )
    };
    StoredRecord {
        id,
        kind,
        event_type: ty.into(),
        time_ns: t,
        day: day_of(t),
        host,
        region: region.into(),
        agent_id: format!("agt-{h:04}"),
        container_id: cid,
        container_name: cname,
        image: format!("registry.example/app:{c}"),
        rule: rule.into(),
        priority: if alert {
            "Warning".into()
        } else {
            String::new()
        },
        severity: if alert { 3 } else { 1 },
        ingested_ns: t,
        json,
    }
}

/// Two host inventories per host (the second is the newest).
fn host_inventories(end_ns: u64) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    for round in 0..2u64 {
        for h in 0..HOSTS {
            let host = host_name(h);
            let region = ["eu-de", "us-ca", "sg", "in"][h % 4];
            let id = format!("bench-invh-{h}-{round}");
            let t = end_ns - 3_600_000_000_000 + round * 1_800_000_000_000 + h as u64;
            let json = format!(
                r#"{{"class_uid":5001,"metadata":{{"uid":"{id}"}},"type":"inventory.host","time_ns":{t},"device":{{"hostname":"{host}","region":"{region}"}},"host_inventory":{{"agent_version":"0.1.{round}","kernel":"6.12.0","os":"Debian GNU/Linux 13","sensor":"ebpf","audit_score":80,"protections":[{{"name":"bpf_lsm","available":false,"detail":"lsm=bpf not active"}},{{"name":"seccomp","available":true}},{{"name":"user_namespaces","available":true}},{{"name":"cgroup_v2","available":true}}],"containers_running":{CONTAINERS_PER_HOST}}}}}"#
            );
            out.push(StoredRecord {
                id,
                kind: RecordKind::Event,
                event_type: "inventory.host".into(),
                time_ns: t,
                day: day_of(t),
                host,
                region: region.into(),
                agent_id: format!("agt-{h:04}"),
                container_id: String::new(),
                container_name: String::new(),
                image: String::new(),
                rule: String::new(),
                priority: String::new(),
                severity: 1,
                ingested_ns: t,
                json,
            });
        }
    }
    out
}

/// The newest inventory of each container (stored last, so it is the newest).
fn container_inventories(end_ns: u64) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    for h in 0..HOSTS {
        for c in 0..CONTAINERS_PER_HOST {
            let host = host_name(h);
            let cid = container_id(h, c);
            let region = ["eu-de", "us-ca", "sg", "in"][h % 4];
            let id = format!("bench-inv-{h}-{c}");
            let t = end_ns - 1_000_000_000 + (h * CONTAINERS_PER_HOST + c) as u64;
            let json = format!(
                r#"{{"class_uid":5001,"metadata":{{"uid":"{id}"}},"type":"inventory.container","time_ns":{t},"device":{{"hostname":"{host}","region":"{region}"}},"container":{{"uid":"{cid}","name":"app-{c}","runtime":"docker","image":"registry.example/app:{c}"}},"container_inventory":{{"image":"registry.example/app:{c}","image_id":"sha256:{}","signature":"verified","vulnerabilities":{{"critical":{},"high":3,"medium":9,"low":14}},"db_version":"2026-11-28","compliance_score":72,"compliance_failed":3}}}}"#,
                "ab".repeat(32),
                c % 3
            );
            out.push(StoredRecord {
                id,
                kind: RecordKind::Event,
                event_type: "inventory.container".into(),
                time_ns: t,
                day: day_of(t),
                host,
                region: region.into(),
                agent_id: format!("agt-{h:04}"),
                container_id: cid,
                container_name: format!("app-{c}"),
                image: format!("registry.example/app:{c}"),
                rule: String::new(),
                priority: String::new(),
                severity: 1,
                ingested_ns: t,
                json,
            });
        }
    }
    out
}

async fn fill(dir: &Path, n: usize) {
    let marker = dir.join(format!("filled-{n}"));
    if marker.exists() {
        println!("reusing the store in {} ({n} records)", dir.display());
        return;
    }
    std::fs::create_dir_all(dir).unwrap();
    let _ = std::fs::remove_file(dir.join("events.db"));
    let store = SqliteStore::open(&dir.join("events.db"), false).unwrap();
    let end = now_ns();
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let rows: Vec<StoredRecord> = (i..(i + BATCH).min(n)).map(|j| record(j, n, end)).collect();
        store.insert(&rows).await.unwrap();
        i += rows.len();
        if i % 1_000_000 == 0 {
            println!(
                "  {i} records stored, {:.0} records/s",
                i as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    store.insert(&host_inventories(end)).await.unwrap();
    store.insert(&container_inventories(end)).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "filled {n} records in {secs:.0} s ({:.0} records/s)",
        n as f64 / secs
    );
    std::fs::write(&marker, format!("{secs:.0} s\n")).unwrap();
}

async fn start(dir: &Path) -> ServerHandle {
    let mut cfg = ServerConfig::with_data_dir(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let (fleet_layer, slot) = rampart_fleet::server_layer(rampart_fleet::FleetConfig::new(Some(
        rampart_fleet::db_path(dir),
    )))
    .unwrap();
    let console = rampart_console::Console::new(Some(slot));
    let live = console.store_layer();
    let server = rampart_server::start_extras(
        cfg,
        ServerExtras {
            store_layer: Some(Box::new(move |s| fleet_layer(live(s)))),
            routes: vec![console.routes()],
        },
    )
    .await
    .unwrap();
    let _ = server
        .context()
        .control()
        .add_user("bench", Role::Analyst, PASSWORD);
    server
}

struct Client {
    http: HttpClient,
    cookie: String,
    /// The empty store answers 404 for a host it does not know; that is its answer.
    allow_not_found: bool,
}

impl Client {
    async fn new(server: &ServerHandle, dir: &Path) -> Client {
        let roots = rampart_ship::tls::load_roots(&dir.join("ca/ca.crt")).unwrap();
        let tls = rampart_ship::tls::client_config(roots, None).unwrap();
        let mut http = HttpClient::new(&server.url(), Some(tls)).unwrap();
        let body = format!(r#"{{"username":"bench","password":"{PASSWORD}"}}"#);
        let r = http
            .request(
                Method::POST,
                "/ui/api/login",
                &[("content-type", "application/json")],
                Bytes::from(body),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let token = r
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap()
            .to_string();
        Client {
            http,
            cookie: token,
            allow_not_found: false,
        }
    }

    async fn get(&mut self, path: &str) -> usize {
        let r = self
            .http
            .request(Method::GET, path, &[("cookie", &self.cookie)], Bytes::new())
            .await
            .unwrap();
        assert!(
            r.status == 200 || (self.allow_not_found && r.status == 404),
            "{path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.body.len()
    }

    /// Times `paths` fetched one after the other, `runs` times (after 3 warm-up runs).
    async fn time(&mut self, paths: &[&str], runs: usize) -> (Vec<Duration>, usize) {
        let mut bytes = 0;
        for _ in 0..3.min(runs) {
            for p in paths {
                bytes = self.get(p).await;
            }
        }
        let mut out = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            for p in paths {
                self.get(p).await;
            }
            out.push(t.elapsed());
        }
        out.sort();
        (out, bytes)
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn bench_dir() -> PathBuf {
    std::env::var_os("RAMPART_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/rampart/bench"))
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = bench_dir().join(format!("console-{n}"));
        fill(&dir, n).await;
        let empty_dir = tempfile::tempdir().unwrap();
        let big = start(&dir).await;
        let empty = start(empty_dir.path()).await;
        let mut bc = Client::new(&big, &dir).await;
        let mut ec = Client::new(&empty, empty_dir.path()).await;
        ec.allow_not_found = true;
        let store: Arc<dyn Store> = big.store();
        let total = store
            .count(&rampart_server::Query::default())
            .await
            .unwrap();
        println!("store: {total} records, {} hosts", store.hosts().await.unwrap().len());

        let first_page: &[&str] = &[
            "/ui/",
            "/ui/assets/app.js",
            "/ui/assets/app.css",
            "/ui/api/me",
            "/ui/api/overview",
        ];
        let cases: Vec<(&str, Vec<&str>, usize)> = vec![
            ("GET /healthz (baseline)", vec!["/healthz"], 200),
            ("first page: HTML + app.js + app.css + me + overview", first_page.to_vec(), 50),
            ("GET /ui/api/overview", vec!["/ui/api/overview"], 50),
            ("GET /ui/api/alerts?limit=100", vec!["/ui/api/alerts?limit=100"], 50),
            ("GET /ui/api/incidents", vec!["/ui/api/incidents"], 50),
            ("GET /ui/api/containers (500 newest of 4,000)", vec!["/ui/api/containers"], 20),
            ("GET /ui/api/hosts/host-0099", vec!["/ui/api/hosts/host-0099"], 50),
            (
                "GET /ui/api/search?host=host-0042&type=process.exec&limit=100",
                vec!["/ui/api/search?host=host-0042&type=process.exec&limit=100"],
                20,
            ),
            ("GET /ui/api/search?limit=100 (newest records)", vec!["/ui/api/search?limit=100"], 50),
            (
                "GET /ui/api/search?rule=no-such-rule (an alert rule that matches nothing)",
                vec!["/ui/api/search?rule=no-such-rule&limit=100"],
                20,
            ),
            (
                "GET /ui/api/search?type=no.such.type&since=1h (matches nothing within an hour)",
                vec!["/ui/api/search?type=no.such.type&since=1h&limit=100"],
                5,
            ),
        ];
        let (h, _) = bc.time(&["/healthz"], 200).await;
        let base = pct(&h, 0.5);
        println!();
        println!("| request | records | p50 ms | p99 ms | × /healthz p50 | empty store p50 ms | × empty store | bytes |");
        println!("|---|---|---|---|---|---|---|---|");
        for (name, paths, runs) in cases {
            let (big_t, bytes) = bc.time(&paths, runs).await;
            let (empty_t, _) = ec.time(&paths, runs).await;
            let p50 = pct(&big_t, 0.5);
            let ep50 = pct(&empty_t, 0.5);
            println!(
                "| {name} | {total} | {} | {} | {:.1} | {} | {:.1} | {bytes} |",
                ms(p50),
                ms(pct(&big_t, 0.99)),
                p50.as_secs_f64() / base.as_secs_f64(),
                ms(ep50),
                p50.as_secs_f64() / ep50.as_secs_f64(),
            );
        }
        big.shutdown().await;
        empty.shutdown().await;
    });
}
