//! Shared by the ingest benchmarks of `rampart-server` and `rampart-fleet` (included with
//! `#[path]`): the events they ship and the CPU time they read.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "benchmark support: not every benchmark uses every helper; a failure is a failed run"
)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rampart_event::{
    Container, ContainerRuntime, Device, Endpoint, Event, EventId, EventKind, NetDirection,
    NetInfo, Process,
};

/// `n` `net.connect` events of one host in one container (926 bytes of JSON each), ids
/// `EventId::new(id_base, 0..n)`, times from now on.
pub fn events(n: u64, host: &str, id_base: u64) -> Vec<Event> {
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
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (0..n)
        .map(|i| {
            let mut e = Event::new(
                EventId::new(id_base, i),
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

/// CPU seconds (user + system) of process `pid` so far, from `/proc/PID/stat`.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the 12th
    // and 13th of them, in clock ticks of 1/100 s (USER_HZ, fixed by the kernel's ABI).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}
