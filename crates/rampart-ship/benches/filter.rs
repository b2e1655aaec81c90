//! What a per-output `filter:` costs, against baselines measured in the same run.
//!
//! * *match*: `OutputFilter::accepts_json` on each record (borrowed fields only) against
//!   parsing the record into a `serde_json::Value` (what a filter on the generic JSON tree
//!   would cost).
//! * *shipper*: 200,000 records (one alert per 1000 events) through the durable queue to a
//!   file output, time until all are acknowledged: no filter (baseline), a filter that keeps
//!   everything (`hosts: ['*']`: every record parsed, all written) and one that keeps the
//!   alerts only (`kinds: [alert]`).
//!
//! `cargo bench -p rampart-ship --bench filter` (`RAMPART_BENCH_EVENTS` sets the count).
#![allow(clippy::unwrap_used, reason = "benchmark: a failure is a failed run")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{
    Alert, Container, ContainerRuntime, Device, Event, EventId, EventKind, Priority,
};
use rampart_ship::{OutputFilter, ShipConfig};

fn records(n: u64) -> Vec<Vec<u8>> {
    let device = Arc::new(Device {
        hostname: "vps1".into(),
        region: Some("eu-de".into()),
    });
    let mut c = Container::unnamed("c0ffee".repeat(10), ContainerRuntime::Docker);
    c.name = "web".into();
    c.image = "nginx:1.25".into();
    let c = Arc::new(c);
    (0..n)
        .map(|i| {
            if i % 1000 == 999 {
                let a = Alert {
                    id: EventId::new(1, i),
                    time_ns: i,
                    rule: "Terminal shell in container".into(),
                    description: String::new(),
                    priority: Priority::Warning,
                    tags: vec!["mitre_execution".into()].into(),
                    output: "shell".into(),
                    output_fields: Default::default(),
                    source: "syscall".into(),
                    device: device.clone(),
                    container: Some(c.clone()),
                    process: None,
                    events: vec![],
                };
                serde_json::to_vec(&a).unwrap()
            } else {
                let mut e = Event::new(
                    EventId::new(1, i),
                    i,
                    EventKind::ProcessExec,
                    device.clone(),
                );
                e.container = Some(c.clone());
                serde_json::to_vec(&e).unwrap()
            }
        })
        .collect()
}

fn ship(recs: &[Vec<u8>], filter: &str, rt: &tokio::runtime::Runtime) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "queue: {{dir: {}}}\noutputs:\n  - type: file\n    path: {}\n    filter: {filter}\n",
        dir.path().join("q").display(),
        dir.path().join("out.jsonl").display()
    );
    let cfg: ShipConfig = serde_yaml::from_str(&yaml).unwrap();
    let s =
        rampart_ship::start(&cfg, Arc::new(Device::default()), Vec::new(), rt.handle()).unwrap();
    let t = Instant::now();
    for chunk in recs.chunks(1000) {
        s.send_json(chunk).unwrap();
    }
    while s.stats().outputs[0].pending > 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t.elapsed();
    rt.block_on(s.shutdown(Duration::from_secs(1)));
    took
}

fn main() {
    let n: u64 = std::env::var("RAMPART_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let recs = records(n);
    let bytes: usize = recs.iter().map(Vec::len).sum();
    println!(
        "{n} records, {} bytes of JSON on average",
        bytes / recs.len()
    );
    let f: OutputFilter =
        serde_yaml::from_str("{min_priority: warning, hosts: ['vps*'], images: ['nginx:*']}")
            .unwrap();
    let t = Instant::now();
    let mut values = 0usize;
    for r in &recs {
        values +=
            serde_json::from_slice::<serde_json::Value>(r).map_or(0, |v| v.is_object() as usize);
    }
    let base = t.elapsed();
    let t = Instant::now();
    let kept = recs.iter().filter(|r| f.accepts_json(r)).count();
    let matched = t.elapsed();
    assert_eq!(values, recs.len());
    assert_eq!(kept as u64, n / 1000);
    let per = |d: Duration| d.as_nanos() as f64 / n as f64;
    println!("match: serde_json::Value parse (baseline) {:.0} ns/record; accepts_json {:.0} ns/record ({:.2}x)", per(base), per(matched), matched.as_secs_f64() / base.as_secs_f64());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..2 {
        let none = ship(&recs, "{}", &rt);
        let all = ship(&recs, "{hosts: ['*']}", &rt);
        let alerts = ship(&recs, "{kinds: [alert]}", &rt);
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "shipper round {round}: no filter (baseline) {:.0} records/s; hosts ['*'] (all parsed, all written) {:.0}/s ({:.2}x the baseline's time); kinds [alert] (0.1% written) {:.0}/s ({:.2}x)",
            rate(none),
            rate(all),
            all.as_secs_f64() / none.as_secs_f64(),
            rate(alerts),
            alerts.as_secs_f64() / none.as_secs_f64()
        );
    }
}
