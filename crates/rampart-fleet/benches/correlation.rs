//! Correlation throughput: synthetic events of 1,000 hosts (logins, connections, process
//! starts, a few miners) through the fleet correlator with the default fleet rules, against the
//! same events through an engine with no rules (the baseline: JSON parsing, grouping and
//! bookkeeping without rule evaluation), and through 50 generated stateful rules (thresholds,
//! distinct counts and sequences over hosts, sources and destinations).
//! `cargo bench -p rampart-fleet --bench correlation`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use rampart_fleet::{Correlator, FleetConfig};
use rampart_rules::{Engine, Loader, Options};
use rampart_server::{RecordKind, StoredRecord};

const HOSTS: usize = 1_000;
const EVENTS: usize = 200_000;

fn records() -> Vec<StoredRecord> {
    let regions = ["eu-de", "in", "us-ca", "sg", "br", "jp", "cn", "au"];
    let devices: Vec<_> = (0..HOSTS)
        .map(|h| support::device(&format!("host-{h:04}"), regions[h % regions.len()]))
        .collect();
    let t0 = support::at("2026-03-02T00:00:00Z");
    (0..EVENTS)
        .map(|i| {
            let dev = &devices[(i * 7919) % HOSTS];
            let t = t0 + i as u64 * 5_000_000; // 200 events/s of event time
            let seq = i as u64;
            let ev = match i % 10 {
                0..=2 => support::login(dev, seq, t, i % 3 != 0, &format!("203.0.113.{}", i % 200)),
                3..=7 => support::connect(
                    dev,
                    seq,
                    t,
                    &format!("10.0.{}.{}", (i / 250) % 250, i % 250),
                    if i % 4 == 0 { 22 } else { 443 },
                    Some(["DE", "US", "FR", "NL"][i % 4]),
                ),
                _ => support::miner(dev, seq, t, &format!("sha256:{:04}", i % 50)),
            };
            StoredRecord {
                id: ev.id.to_string(),
                kind: RecordKind::Event,
                event_type: ev.kind.as_str().into(),
                time_ns: t,
                day: 0,
                host: dev.hostname.clone(),
                region: dev.region.clone().unwrap_or_default(),
                agent_id: String::new(),
                container_id: String::new(),
                container_name: String::new(),
                image: String::new(),
                rule: String::new(),
                priority: String::new(),
                severity: 1,
                ingested_ns: t,
                json: serde_json::to_string(&ev).unwrap_or_default(),
            }
        })
        .collect()
}

fn run(name: &str, mut c: Correlator, rows: &[StoredRecord]) -> f64 {
    let start = Instant::now();
    let mut alerts = 0;
    for chunk in rows.chunks(1_000) {
        alerts += c.process_records(chunk).len();
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = rows.len() as f64 / secs;
    println!(
        "{name:<28} {:>9} events in {secs:>6.3} s = {rate:>10.0} events/s, {alerts} fleet alerts, {} incidents",
        rows.len(),
        c.incidents().len()
    );
    rate
}

/// 50 correlation rules of the three kinds, over the fields the synthetic events carry.
fn fifty_rules() -> String {
    let mut y = String::new();
    for i in 0..50 {
        let text = match i % 5 {
            0 => format!(
                "- rule: bench failed logins {i}\n  condition: evt.kind = auth.login and auth.outcome = failure\n  correlation:\n    type: event_count\n    group-by: [evt.hostname]\n    timespan: 1m\n    condition: {{gte: {}}}\n",
                20 + i
            ),
            1 => format!(
                "- rule: bench spraying {i}\n  condition: evt.kind = auth.login and auth.outcome = failure\n  correlation:\n    type: value_count\n    field: evt.hostname\n    group-by: [auth.src_ip]\n    timespan: 5m\n    condition: {{gte: {}}}\n",
                50 + i
            ),
            2 => format!(
                "- rule: bench fan-out {i}\n  condition: evt.type = connect and fd.sport = 22\n  correlation:\n    type: value_count\n    field: fd.sip\n    group-by: [evt.hostname]\n    timespan: 10m\n    condition: {{gte: {}}}\n",
                30 + i
            ),
            3 => format!(
                "- rule: bench login then connect {i}\n  condition: evt.kind = auth.login or evt.type = connect\n  correlation:\n    type: temporal_ordered\n    group-by: [evt.hostname]\n    timespan: 2m\n    steps:\n      - condition: evt.kind = auth.login and auth.outcome = failure\n        count: {}\n      - condition: evt.kind = auth.login and auth.outcome = success\n      - condition: evt.type = connect\n        count: 3\n",
                10 + i
            ),
            _ => format!(
                "- rule: bench miner spread {i}\n  condition: evt.type = execve and proc.name = xmrig\n  correlation:\n    type: value_count\n    field: evt.hostname\n    group-by: [container.image.digest]\n    timespan: 1h\n    condition: {{gte: {}}}\n",
                40 + i
            ),
        };
        y.push_str(&text);
        y.push_str("  output: bench %correlation.count\n  priority: WARNING\n\n");
    }
    y
}

fn main() {
    let rows = records();
    let mut cfg = FleetConfig::new(None);
    cfg.country_learning_ns = 0;
    let empty = Loader::new()
        .compile(Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let baseline = Correlator::with_engine(cfg.clone(), Engine::new(Arc::new(empty)))
        .unwrap_or_else(|e| panic!("{e}"));
    let fleet = Correlator::new(cfg.clone()).unwrap_or_else(|e| panic!("{e}"));
    let mut loader = Loader::new();
    loader
        .add_str("bench-50.yaml", &fifty_rules())
        .unwrap_or_else(|e| panic!("{e}"));
    let fifty = loader
        .compile(Options::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fifty.rules().filter(|r| r.is_correlation()).count(), 50);
    let fifty = Correlator::with_engine(cfg, Engine::new(Arc::new(fifty)))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("correlation over {HOSTS} hosts, {EVENTS} events (JSON records as stored)");
    let b = run("baseline (no rules)", baseline, &rows);
    let f = run("fleet rules (3 + country)", fleet, &rows);
    let g = run("50 stateful rules", fifty, &rows);
    println!("fleet rules / baseline throughput: {:.2}", f / b);
    println!("50 stateful rules / baseline throughput: {:.2}", g / b);
}
