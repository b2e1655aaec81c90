//! Synthetic fleet events for the tests and the benchmark.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::IpAddr;
use std::sync::Arc;

use rampart_event::{
    AuthInfo, AuthOutcome, Container, ContainerRuntime, Device, Endpoint, Event, EventId,
    EventKind, NetDirection, NetInfo, Process,
};

pub fn at(s: &str) -> u64 {
    rampart_fleet::deadline::parse_rfc3339(s).unwrap_or_else(|| panic!("bad time {s}"))
}

pub fn device(host: &str, region: &str) -> Arc<Device> {
    Arc::new(Device {
        hostname: host.into(),
        region: Some(region.into()),
    })
}

pub fn login(dev: &Arc<Device>, seq: u64, t: u64, ok: bool, src: &str) -> Event {
    let mut e = Event::new(
        EventId::new(0xa1, seq),
        t,
        EventKind::AuthLogin,
        dev.clone(),
    );
    e.auth = Some(AuthInfo {
        outcome: if ok {
            AuthOutcome::Success
        } else {
            AuthOutcome::Failure
        },
        user: "root".into(),
        method: Some("password".into()),
        src_ip: src.parse::<IpAddr>().ok(),
        src_port: Some(40_000),
        service: "sshd".into(),
        log_source: "journal".into(),
        message: String::new(),
    });
    e
}

pub fn process(name: &str, args: &[&str]) -> Arc<Process> {
    Arc::new(Process {
        pid: 4242,
        tid: 4242,
        ppid: 1,
        name: name.into(),
        exe: format!("/usr/bin/{name}"),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

pub fn connect(
    dev: &Arc<Device>,
    seq: u64,
    t: u64,
    dst: &str,
    port: u16,
    country: Option<&str>,
) -> Event {
    let mut e = Event::new(
        EventId::new(0xc0, seq),
        t,
        EventKind::NetConnect,
        dev.clone(),
    );
    e.syscall = Some("connect".into());
    e.result = Some(0);
    e.process = Some(process("ssh", &[dst]));
    e.network = Some(NetInfo {
        protocol: "tcp".into(),
        family: "ipv4".into(),
        direction: NetDirection::Outbound,
        src: Some(Endpoint {
            ip: "10.0.0.5".parse().unwrap_or(IpAddr::from([10, 0, 0, 5])),
            port: 50_000,
        }),
        dst: Some(Endpoint {
            ip: dst.parse().unwrap_or(IpAddr::from([10, 0, 0, 9])),
            port,
        }),
        unix_path: None,
        remote_names: Vec::new(),
        remote_country: country.map(str::to_string),
    });
    e
}

pub fn miner(dev: &Arc<Device>, seq: u64, t: u64, digest: &str) -> Event {
    let mut e = Event::new(
        EventId::new(0xee, seq),
        t,
        EventKind::ProcessExec,
        dev.clone(),
    );
    e.syscall = Some("execve".into());
    e.result = Some(0);
    e.process = Some(process("xmrig", &["-o", "stratum+tcp://pool.example:3333"]));
    let mut c = Container::unnamed("3715285be4b1aa00", ContainerRuntime::Docker);
    c.name = "web".into();
    c.image = "shop/web:1.4".into();
    c.image_digest = Some(digest.into());
    e.container = Some(Arc::new(c));
    e
}

/// A fleet server on ClickHouse `ch` with `pg` as its shared control store (issue 22's
/// scale-out), and the slot its fleet console is in once it runs.
pub async fn start(
    pg: &testkit::Postgres,
    ch: &testkit::ClickHouse,
    dir: &std::path::Path,
) -> (rampart_fleet::RunningServer, rampart_fleet::FleetSlot) {
    let mut cfg = rampart_server::ServerConfig::with_data_dir(dir);
    cfg.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.store = rampart_server::StoreConfig::Clickhouse {
        url: ch.url(),
        database: None,
        user: None,
        password_file: None,
    };
    cfg.control_store = Some(rampart_server::config::ControlStoreConfig {
        postgres: pg.url(),
        password_file: None,
    });
    let mut keep = None;
    let server = rampart_fleet::serve(cfg, |slot| {
        keep = Some(slot);
        rampart_server::ServerExtras::default()
    })
    .await
    .expect("fleet server");
    (server, keep.expect("fleet slot"))
}

/// The stored form of `ev` as agent `agent` sent it, stamped by its server at `ingested_ns`.
pub fn row(ev: &Event, agent: &str, ingested_ns: u64) -> rampart_server::StoredRecord {
    rampart_server::StoredRecord {
        id: ev.id.to_string(),
        kind: rampart_server::RecordKind::Event,
        event_type: ev.kind.as_str().into(),
        time_ns: ev.time_ns,
        day: rampart_server::store::day_of(ev.time_ns),
        host: ev.device.hostname.clone(),
        region: "eu-de".into(),
        agent_id: agent.into(),
        container_id: String::new(),
        container_name: String::new(),
        image: String::new(),
        rule: String::new(),
        priority: String::new(),
        severity: 1,
        ingested_ns,
        json: serde_json::to_string(ev).expect("event JSON"),
    }
}
