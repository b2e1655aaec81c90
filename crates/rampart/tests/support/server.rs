//! A real `rampart server` process for end-to-end tests: started on a free loopback port with
//! its own data directory, agents enrolled against it with the real enrollment client.

use std::io::{BufRead, BufReader};
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

/// A loopback port free when asked (another process may take it before it is used).
pub fn free_port() -> u16 {
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

/// Starts `rampart server` from `<dir>/server.yaml`: `listen: 127.0.0.1:0` (a port the kernel
/// picks), `data_dir: <dir>/data`, then `more` (further top-level YAML); its log goes to
/// `<dir>/server.log`. Waits (60 s at most) for the `listening <url>` line the server prints
/// once it accepts connections; returns the process, that URL and the configuration file.
pub fn start_in(dir: &Path, more: &str) -> (Proc, String, PathBuf) {
    let config = dir.join("server.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\n{more}",
            dir.join("data").display()
        ),
    )
    .expect("config");
    let log = dir.join("server.log");
    let mut p = spawn(
        &["server", "--config", config.to_str().expect("utf-8")],
        Stdio::piped(),
        &log,
    );
    let stdout = p.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("listening ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    (p, url, config)
}

/// Enrolls host `host` with the server at `url` through the command line: a fresh token
/// from `rampart server enroll-token --region eu-de` (server configuration `config`), then
/// `rampart enroll`, which writes the credentials into `tls`.
pub fn enroll_cli(config: &str, url: &str, tls: &Path, host: &str) {
    let token = rampart_ok(&[
        "server",
        "enroll-token",
        "--config",
        config,
        "--region",
        "eu-de",
    ]);
    rampart_ok(&[
        "enroll",
        "--server",
        url,
        "--token",
        token.trim(),
        "--dir",
        tls.to_str().expect("utf-8"),
        "--hostname",
        host,
    ]);
}

/// A server started in `dir` with two hosts enrolled through the command line, `vps1` and
/// `vps2` (credentials in `dir/tls1` and `dir/tls2`): the server, its URL, its configuration
/// file, and the two credential directories. The mesh tests' fleet.
pub fn two_enrolled_hosts(dir: &Path) -> (Proc, String, String, PathBuf, PathBuf) {
    let (server, url, config) = start_in(dir, "");
    let config = config.to_str().expect("utf-8").to_string();
    let (t1, t2) = (dir.join("tls1"), dir.join("tls2"));
    enroll_cli(&config, &url, &t1, "vps1");
    enroll_cli(&config, &url, &t2, "vps2");
    (server, url, config, t1, t2)
}

/// An echo server on loopback (a thread per connection, for the rest of the test): its
/// address.
pub fn echo_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut b = [0u8; 4096];
                while let Ok(n) = s.read(&mut b) {
                    if n == 0 || s.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    rampart_ship::evidence::hash_file(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}
