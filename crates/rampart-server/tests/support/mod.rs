//! Shared test support: a throwaway ClickHouse server, records to store, child processes.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test support: not every test binary uses every helper; a failure is a test failure"
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_server::store::{day_of, RecordKind, StoredRecord};

pub const CLICKHOUSE_BIN: &str = "/usr/sbin/clickhouse-server";

/// A free loopback TCP port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A ClickHouse server on loopback ports with its data in a temporary directory; killed and
/// removed when dropped.
pub struct ClickHouse {
    child: Child,
    pub http_port: u16,
    _dir: tempfile::TempDir,
}

impl ClickHouse {
    /// Starts one, or returns `None` (after a loud SKIPPED line) when clickhouse-server is not
    /// installed outside CI; in CI a missing server fails the test (scripts/packages.txt
    /// installs it).
    pub fn start() -> Option<ClickHouse> {
        if !Path::new(CLICKHOUSE_BIN).exists() {
            let msg =
                format!("{CLICKHOUSE_BIN} is not installed (apt-get install clickhouse-server)");
            if testkit::in_ci() {
                panic!("CI=true and {msg}");
            }
            eprintln!("\n=== SKIPPED: {msg} ===\n");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let http_port = free_port();
        let tcp_port = free_port();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
  </users>
  <profiles><default></default></profiles>
  <quotas><default></default></quotas>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
"#,
            d = d.display()
        );
        std::fs::write(d.join("config.xml"), config).unwrap();
        let child = Command::new(CLICKHOUSE_BIN)
            .arg(format!("--config-file={}", d.join("config.xml").display()))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ch = ClickHouse {
            child,
            http_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok();
            if ok && ch.ping() {
                return Some(ch);
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.contains("Ok.")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The server's process id (the benchmark reads its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
