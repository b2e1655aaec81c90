//! The agent's loop without a kernel: events sent as the sensor sends them go through the
//! enricher and the rules to the outputs; the run ends with a `sensor.drops` report that
//! counts what the parts beside the sensor dropped.

use std::sync::atomic::AtomicU64;

use super::*;

const CANARY_RULE: &str = "- rule: Canary exec\n  desc: the test's canary ran\n  condition: evt.type = execve and proc.name = canary-x\n  output: canary %proc.name\n  priority: WARNING\n";

fn exec(pid: u32, name: &str) -> Box<SensorEvent> {
    let device = Arc::new(Device {
        hostname: "test-host".into(),
        region: None,
    });
    let mut event = Event::new(
        EventId::new(99, u64::from(pid)),
        rampart_event::now_ns(),
        EventKind::ProcessExec,
        device,
    );
    event.process = Some(Arc::new(rampart_event::Process {
        pid,
        tid: pid,
        name: name.into(),
        exe: format!("/usr/bin/{name}"),
        args: vec![name.into()],
        ..Default::default()
    }));
    Box::new(SensorEvent {
        origin: rampart_event::Origin {
            pid,
            ..Default::default()
        },
        event,
    })
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("output written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn setup(dir: &Path) -> (AgentConfig, rampart_rules::Engine) {
    let rules = dir.join("canary.yaml");
    std::fs::write(&rules, CANARY_RULE).expect("rule file");
    let cfg = AgentConfig {
        outputs: vec![format!("jsonl:{}", dir.join("out/events.jsonl").display())],
        stats_file: dir.join("stats.json"),
        default_rules: false,
        rules: vec![rules],
        ..AgentConfig::default()
    };
    let (engine, actions) = load_rules(&cfg).expect("rules load");
    assert!(!actions, "the canary rule has no actions");
    (cfg, engine)
}

fn connect(pid: u32, remote: &str) -> Box<SensorEvent> {
    let mut se = exec(pid, "curl");
    se.event.kind = EventKind::NetConnect;
    se.event.network = Some(rampart_event::NetInfo {
        protocol: "tcp".into(),
        family: "inet".into(),
        direction: rampart_event::NetDirection::Outbound,
        src: Some(rampart_event::Endpoint {
            ip: "127.0.0.1".parse().expect("ip"),
            port: 40000,
        }),
        dst: Some(rampart_event::Endpoint {
            ip: remote.parse().expect("ip"),
            port: 443,
        }),
        unix_path: None,
        remote_names: Vec::new(),
        remote_country: None,
    });
    se
}

/// Issue 20 item 3: a configuration the configuration thread built is applied by the loop
/// between two events: the events before are evaluated by the old rules, those after by the
/// new ones (the agent's own rules kept beside the bundle's), and the GeoIP reader is swapped.
#[test]
fn a_configuration_applied_between_events_swaps_the_rules_and_the_geoip_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, engine) = setup(dir.path());
    let (mut agent, tx) = Agent::detached(cfg.clone(), engine, None).expect("agent");
    let (updates_tx, updates) = fleetconfig::Updates::for_test();
    agent.updates = Some(updates);
    agent.handle(*exec(10, "newcomer")).expect("handled");
    agent.handle(*connect(11, "10.1.2.3")).expect("handled");

    let bundle = dir.path().join("v1");
    std::fs::create_dir_all(bundle.join("rules")).expect("mkdir");
    std::fs::create_dir_all(bundle.join("geoip")).expect("mkdir");
    std::fs::write(
        bundle.join("rules/new.yaml"),
        "- rule: Newcomer exec\n  desc: x\n  condition: evt.type = execve and proc.name = newcomer\n  output: new %proc.name\n  priority: WARNING\n",
    )
    .expect("rule");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../rampart-container/tests/data/test-country.mmdb"),
        bundle.join("geoip/country.mmdb"),
    )
    .expect("GeoIP database");
    let loaded = fleetconfig::build(&cfg, Some(&bundle), 1).expect("builds");
    assert_eq!(loaded.rules, 2, "the agent's rule and the bundle's");
    updates_tx.send(loaded).expect("queued");
    agent.apply_updates();
    agent.handle(*exec(12, "newcomer")).expect("handled");
    agent.handle(*exec(13, "canary-x")).expect("handled");
    agent.handle(*connect(14, "10.1.2.3")).expect("handled");
    let metrics = agent.metrics.render();
    assert!(
        metrics.contains("rampart_agent_config_version 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rampart_agent_config_applied_total 1\n"),
        "{metrics}"
    );
    drop(tx);
    agent.run(None).expect("runs");

    let out = lines(&dir.path().join("out/events.jsonl"));
    let alerts_for = |pid: u64| {
        out.iter()
            .filter(|v| v["rule"].is_string() && v["process"]["pid"] == pid)
            .count()
    };
    assert_eq!(alerts_for(10), 0, "before the swap: no rule for newcomer");
    assert_eq!(alerts_for(12), 1, "after the swap: the bundle's rule");
    assert_eq!(alerts_for(13), 1, "the agent's own rule stays");
    let country = |pid: u64| {
        out.iter()
            .find(|v| v["type"] == "net.connect" && v["process"]["pid"] == pid)
            .map(|v| v["network"]["remote_country"].clone())
            .expect("connect written")
    };
    assert!(country(11).is_null(), "no GeoIP database before");
    assert_eq!(country(14), "CN", "the bundle's GeoIP database after");
}

#[test]
fn events_reach_the_outputs_with_their_alerts_and_the_run_ends_with_a_drop_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, engine) = setup(dir.path());
    let record = dir.path().join("record.jsonl");
    let stats_file = cfg.stats_file.clone();
    let (agent, tx) = Agent::detached(cfg, engine, Some(&record)).expect("agent");
    // Far more than one batch (256 per batch check), so the batch and flush logic runs.
    for pid in 1000..1600 {
        tx.send(exec(pid, "ls")).expect("queued");
    }
    tx.send(exec(4242, "canary-x")).expect("queued");
    drop(tx);
    agent
        .run(None)
        .expect("the loop ends when the sources are gone");

    let out = lines(&dir.path().join("out/events.jsonl"));
    let execs = out.iter().filter(|v| v["type"] == "process.exec").count();
    assert_eq!(execs, 601, "every event is written once");
    let alerts: Vec<_> = out.iter().filter(|v| v["rule"].is_string()).collect();
    assert_eq!(
        alerts.len(),
        1,
        "one alert, for the canary only: {alerts:?}"
    );
    assert_eq!(alerts[0]["rule"], "Canary exec");
    // The alert follows the event it is about.
    let canary_at = out
        .iter()
        .position(|v| v["process"]["name"] == "canary-x")
        .expect("canary event written");
    let alert_at = out
        .iter()
        .position(|v| v["rule"] == "Canary exec")
        .expect("alert written");
    assert!(alert_at > canary_at);
    let last = out.last().expect("lines");
    assert_eq!(last["type"], "sensor.drops", "{last}");
    assert_eq!(last["stats"]["events"], 601, "{last}");
    assert_eq!(last["stats"]["drops_total"], 0, "{last}");

    // The record has the events and no alerts.
    let rec = lines(&record);
    assert_eq!(rec.len(), 601);
    assert!(rec.iter().all(|v| v["type"] == "process.exec"));
    // The stats file (the readiness signal) is gone once the agent stopped.
    assert!(!stats_file.exists());
}

#[test]
fn drops_beside_the_sensor_are_counted_in_the_last_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, engine) = setup(dir.path());
    let (mut agent, tx) = Agent::detached(cfg, engine, None).expect("agent");
    let watcher = Arc::new(AtomicU64::new(0));
    let responder = Arc::new(AtomicU64::new(0));
    agent.extra_drops = vec![watcher.clone(), responder.clone()];
    watcher.store(5, Ordering::Relaxed);
    responder.store(2, Ordering::Relaxed);
    tx.send(exec(77, "canary-x")).expect("queued");
    drop(tx);
    agent.run(None).expect("runs");
    let out = lines(&dir.path().join("out/events.jsonl"));
    let last = out.last().expect("lines");
    assert_eq!(last["type"], "sensor.drops");
    assert_eq!(last["stats"]["drops_userspace"], 7, "{last}");
    assert_eq!(last["stats"]["drops_total"], 7, "{last}");
}

#[test]
fn a_run_with_a_duration_stops_while_the_sources_stay_attached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, engine) = setup(dir.path());
    let (agent, tx) = Agent::detached(cfg, engine, None).expect("agent");
    tx.send(exec(5, "canary-x")).expect("queued");
    let started = Instant::now();
    agent
        .run(Some(Duration::from_millis(300)))
        .expect("stops at the duration");
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(tx);
    let out = lines(&dir.path().join("out/events.jsonl"));
    assert_eq!(out.iter().filter(|v| v["rule"] == "Canary exec").count(), 1);
    assert_eq!(out.last().expect("lines")["type"], "sensor.drops");
}

#[test]
fn a_bad_output_spec_is_the_users_input() {
    let cfg = AgentConfig {
        outputs: vec!["tcp://somewhere".into()],
        default_rules: false,
        ..AgentConfig::default()
    };
    let (engine, _) = load_rules(&cfg).expect("no rules");
    let err = Agent::detached(cfg, engine, None).err().expect("refused");
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("tcp://somewhere"), "{err}");
}

fn ship_section(dir: &Path, outputs_yaml: &str) -> rampart_ship::ShipConfig {
    serde_yaml::from_str(&format!(
        "queue: {{dir: {}}}\noutputs:\n{outputs_yaml}",
        dir.join("queue").display()
    ))
    .expect("ship section")
}

/// `outputs: [jsonl:PATH]` and its long form under `ship: outputs:` are one output: the same
/// ship configuration, the same file written, and no queue opened for it.
#[test]
fn the_outputs_shorthand_is_a_spelling_of_a_direct_ship_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cfg, engine) = setup(dir.path());
    let path = dir.path().join("out/events.jsonl");
    let short = output::direct_configs(&cfg.outputs, &[]).expect("shorthand");
    cfg.outputs = Vec::new();
    cfg.ship = Some(ship_section(
        dir.path(),
        &format!(
            "  - {{type: file, path: {p}, name: \"jsonl:{p}\", delivery: direct}}\n",
            p = path.display()
        ),
    ));
    let long = output::direct_configs(&cfg.outputs, &cfg.ship.as_ref().expect("set").outputs)
        .expect("long form");
    assert_eq!(short, long);
    let (agent, tx) = Agent::detached(cfg, engine, None).expect("agent");
    tx.send(exec(5, "canary-x")).expect("queued");
    drop(tx);
    agent.run(None).expect("runs");
    let out = lines(&path);
    assert_eq!(out.iter().filter(|v| v["rule"] == "Canary exec").count(), 1);
    assert!(
        !dir.path().join("queue").exists(),
        "direct outputs need no queue"
    );
}

/// A `filter:` on a direct output (the long form of a shorthand) is applied in the loop:
/// the alerts file gets the alert only, the shorthand output everything.
#[test]
fn a_filter_on_a_direct_output_keeps_only_what_it_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cfg, engine) = setup(dir.path());
    let alerts = dir.path().join("alerts.jsonl");
    cfg.ship = Some(ship_section(
        dir.path(),
        &format!(
            "  - {{type: file, path: {}, delivery: direct, filter: {{kinds: [alert]}}}}\n",
            alerts.display()
        ),
    ));
    let (agent, tx) = Agent::detached(cfg, engine, None).expect("agent");
    let metrics = agent.metrics.clone();
    tx.send(exec(5, "ls")).expect("queued");
    tx.send(exec(6, "canary-x")).expect("queued");
    drop(tx);
    agent.run(None).expect("runs");
    let got = lines(&alerts);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["rule"], "Canary exec");
    let all = lines(&dir.path().join("out/events.jsonl"));
    assert_eq!(
        all.len(),
        4,
        "2 events, the alert, the drop report: {all:?}"
    );
    let text = metrics.render();
    assert!(
        text.contains("rampart_ship_filtered_total{output=\"file\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("rampart_ship_sent_records_total{output=\"file\"} 1"),
        "{text}"
    );
}

/// A direct output that cannot write (a full disk: /dev/full) loses records, counted in
/// the metrics, and the loop goes on.
#[test]
fn failed_direct_writes_are_counted_in_the_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut cfg, engine) = setup(dir.path());
    cfg.outputs.push("jsonl:/dev/full".into());
    let (agent, tx) = Agent::detached(cfg, engine, None).expect("agent");
    let metrics = agent.metrics.clone();
    tx.send(exec(6, "canary-x")).expect("queued");
    drop(tx);
    agent
        .run(None)
        .expect("a failing output does not stop the agent");
    // The event, its alert and the drop report, all lost on /dev/full, all on the other file.
    assert_eq!(lines(&dir.path().join("out/events.jsonl")).len(), 3);
    let text = metrics.render();
    assert!(
        text.contains("rampart_agent_dropped_total{stage=\"output\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("rampart_ship_dropped_total{output=\"jsonl:/dev/full\",reason=\"write\"} 3"),
        "{text}"
    );
}
