//! Shared test support: a throwaway ClickHouse server, records to store, child processes.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test support: not every test binary uses every helper; a failure is a test failure"
)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rampart_server::store::{day_of, RecordKind, StoredRecord};

/// A free loopback TCP port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A ClickHouse server on loopback ports with its data in a temporary directory, killed and
/// removed when dropped; `start` returns `None` after a loud SKIPPED line when
/// clickhouse-server is not installed outside CI, and fails in CI (scripts/packages.txt
/// installs it).
#[allow(unused_imports, reason = "not every test binary starts ClickHouse")]
pub use testkit::ClickHouse;

/// Kills a child process on drop (tests must not leave servers behind).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stored record for the store suite.
pub fn record(id: &str, kind: RecordKind, time_ns: u64, host: &str, region: &str) -> StoredRecord {
    let event_type = match kind {
        RecordKind::Alert => "alert".to_string(),
        RecordKind::Event => "process.exec".to_string(),
    };
    StoredRecord {
        id: id.to_string(),
        kind,
        event_type: event_type.clone(),
        time_ns,
        day: day_of(time_ns),
        host: host.to_string(),
        region: region.to_string(),
        agent_id: format!("agt-{host}"),
        container_id: format!("{:0>64}", host.len()),
        container_name: format!("{host}-web"),
        image: "nginx:1.25".into(),
        rule: if kind == RecordKind::Alert {
            "Shell in container".into()
        } else {
            String::new()
        },
        priority: if kind == RecordKind::Alert {
            "Warning".into()
        } else {
            String::new()
        },
        severity: if kind == RecordKind::Alert { 3 } else { 1 },
        ingested_ns: time_ns + 1,
        json: serde_json::json!({"metadata": {"uid": id}, "type": event_type, "time_ns": time_ns,
                                 "device": {"hostname": host, "region": region}})
        .to_string(),
    }
}

/// The test executable itself, to run a child role in another process.
pub fn self_exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// Runs the (ignored) test function `name` of this test binary as a child process with `env`
/// set.
pub fn spawn_role(name: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(self_exe());
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}
