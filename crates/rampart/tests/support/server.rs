//! A real `rampart server` process for end-to-end tests: started on a free loopback port with
//! its own data directory, agents enrolled against it with the real enrollment client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{rampart_ok, spawn, Proc};

pub struct RampartServer {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub config: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RampartServer {
    /// Starts `rampart server` with `limits` (YAML lines below `limits:`, indented by two)
    /// and waits until it accepts connections.
    pub fn start(limits: &str) -> RampartServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("server.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\ndata_dir: {}\nlimits:\n  max_connections: 64\n{limits}",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let log = dir.path().join("server.log");
        let cfg = config.to_str().expect("utf-8").to_string();
        let proc = spawn(&["server", "--config", &cfg], Stdio::null(), &log);
        let s = RampartServer {
            proc,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(s.data().join("admin.token").exists()
            && std::net::TcpStream::connect(s.addr).is_ok())
        {
            assert!(
                Instant::now() < deadline,
                "the server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data().join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string()
    }

    /// Enrolls host `host` with a fresh token (the real enrollment client); returns the
    /// directory holding its `ca.crt`, `agent.crt`, `agent.key` and its agent id.
    pub fn enroll(&self, host: &str) -> (PathBuf, String) {
        let cfg = self.config.to_str().expect("utf-8");
        let token = rampart_ok(&[
            "server",
            "--config",
            cfg,
            "enroll-token",
            "--region",
            "eu-de",
        ]);
        let dir = self.dir.path().join(format!("agent-{host}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let e = rt
            .block_on(rampart_ship::enroll::enroll(
                &self.url(),
                token.trim(),
                host,
                &dir,
                false,
            ))
            .unwrap_or_else(|e| panic!("enrolling {host}: {e}"));
        (dir, e.agent_id)
    }

    /// Peak resident set of the server process, KiB (`VmHWM`).
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id()))
            .expect("the server is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// A stored evidence blob's path.
    pub fn evidence_blob(&self, sha256: &str) -> PathBuf {
        self.data().join("evidence/blobs").join(sha256)
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    rampart_ship::evidence::hash_file(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}
