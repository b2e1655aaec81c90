//! Throwaway servers from Debian packages on loopback ports, for tests of a fleet of Rampart
//! servers: a PostgreSQL cluster ([`Postgres`]), an HAProxy TCP proxy ([`HaProxy`]) and a
//! ClickHouse server ([`ClickHouse`]). Each lives in its own temporary directory and is stopped
//! and removed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(prefix: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The newest installed PostgreSQL's `bin` directory (`/usr/lib/postgresql/<v>/bin`).
pub fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

/// A private PostgreSQL cluster on a loopback port (trust authentication for user `rampart`,
/// database `rampart`), run as the `postgres` user since `initdb` refuses root.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl Postgres {
    /// Starts one; `None` after a loud SKIPPED line when PostgreSQL is not installed outside
    /// CI (in CI it fails: scripts/packages.txt installs `postgresql`).
    pub fn start(test: &str) -> Option<Postgres> {
        let Some(bin) = postgres_bin() else {
            crate::skip(
                test,
                "PostgreSQL (/usr/lib/postgresql/*/bin/initdb: apt-get install postgresql)",
            );
            return None;
        };
        let dir = temp_dir("rampart-pg");
        run(Command::new("chown").args(["postgres:", dir.to_str().unwrap()]));
        let as_pg = |prog: &str| {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(prog));
            c
        };
        let data = dir.join("data");
        run(as_pg("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "rampart",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        let port = free_port();
        run(as_pg("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                dir.display()
            ))
            .arg("start"));
        let stop_on_failure = Postgres {
            dir: dir.clone(),
            bin: bin.clone(),
            port,
        };
        run(as_pg("createdb").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "rampart",
            "rampart",
        ]));
        Some(stop_on_failure)
    }

    fn pg_ctl(&self, args: &[&str]) {
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60"])
            .args(args));
    }

    /// Stops the cluster (`pg_ctl stop -m immediate`: connections cut, as by a crash).
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// Starts the stopped cluster again on the same port.
    pub fn start_again(&self) {
        self.pg_ctl(&[
            "-o",
            &format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                self.port,
                self.dir.display()
            ),
            "start",
        ]);
    }

    /// `postgres://rampart@127.0.0.1:<port>/rampart`.
    pub fn url(&self) -> String {
        format!("postgres://rampart@127.0.0.1:{}/rampart", self.port)
    }

    /// Runs `sql` with psql and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(self.url())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's HAProxy.
pub const HAPROXY_BIN: &str = "/usr/sbin/haproxy";

/// HAProxy in TCP mode on a loopback port, round-robin over `backends` with TCP health checks
/// every 200 ms (a backend is out after 2 failed checks), so TLS passes through to the servers.
pub struct HaProxy {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl HaProxy {
    /// Starts one; `None` after a loud SKIPPED line when HAProxy is not installed outside CI.
    pub fn start(test: &str, backends: &[SocketAddr]) -> Option<HaProxy> {
        if !Path::new(HAPROXY_BIN).exists() {
            crate::skip(test, "HAProxy (/usr/sbin/haproxy: apt-get install haproxy)");
            return None;
        }
        let dir = temp_dir("rampart-haproxy");
        let port = free_port();
        let mut cfg = format!(
            "global\n  maxconn 2000\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n  retries 2\n  option redispatch\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\nbackend be\n  balance roundrobin\n"
        );
        for (i, b) in backends.iter().enumerate() {
            cfg.push_str(&format!(
                "  server s{i} {b} check inter 200ms fall 2 rise 1\n"
            ));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new(HAPROXY_BIN)
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(HaProxy { child, dir, port })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's ClickHouse server.
pub const CLICKHOUSE_BIN: &str = "/usr/sbin/clickhouse-server";

/// A ClickHouse server on loopback ports with its data in a temporary directory (the same
/// configuration as rampart-server's store tests use).
pub struct ClickHouse {
    child: Child,
    dir: PathBuf,
    pub http_port: u16,
}

impl ClickHouse {
    /// Starts one; `None` after a loud SKIPPED line when it is not installed outside CI.
    pub fn start(test: &str) -> Option<ClickHouse> {
        if !Path::new(CLICKHOUSE_BIN).exists() {
            crate::skip(
                test,
                "clickhouse-server (apt-get install clickhouse-server)",
            );
            return None;
        }
        let dir = temp_dir("rampart-clickhouse");
        let d = &dir;
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
            dir,
            http_port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ch.ping() {
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(ch)
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

    /// `http://127.0.0.1:<http_port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The server's process id (the ingest benchmark reads its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
