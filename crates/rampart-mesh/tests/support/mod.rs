//! Shared by the mesh's tests and benchmark: a test CA that issues through Rampart's real CA
//! (`rampart_server::ca::Ca`), network namespaces standing in for hosts and containers, and
//! running a proxy inside one.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rampart_mesh::{CertRequest, IssuedCert, Issuer, Mesh, MeshConfig, MeshError};
use rampart_server::ca::Ca;
use rustls::pki_types::CertificateDer;

/// The fleet's CA with the server's bookkeeping: which serials each host holds, which hosts
/// are revoked (issuance refused, serials on the CRL).
pub struct TestCa {
    pub ca: Ca,
    pub dir: PathBuf,
    revoked: Mutex<HashSet<String>>,
    serials: Mutex<Vec<(String, Vec<u8>)>>,
}

impl TestCa {
    pub fn new(dir: &Path) -> Arc<TestCa> {
        Arc::new(TestCa {
            ca: Ca::load_or_create(dir).expect("CA"),
            dir: dir.to_path_buf(),
            revoked: Mutex::new(HashSet::new()),
            serials: Mutex::new(Vec::new()),
        })
    }

    pub fn cert(&self) -> CertificateDer<'static> {
        self.ca.cert().clone()
    }

    pub fn crl_path(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// Revokes a host: refuses it new certificates and lists every serial it holds on the CRL.
    pub fn revoke_host(&self, host: &str) {
        self.revoked.lock().expect("lock").insert(host.to_string());
        let now = SystemTime::now();
        let list: Vec<(Vec<u8>, SystemTime)> = self
            .serials
            .lock()
            .expect("lock")
            .iter()
            .filter(|(h, _)| h == host)
            .map(|(_, s)| (s.clone(), now))
            .collect();
        self.ca.write_crl(&list, 2).expect("CRL");
    }

    /// An empty CRL (nothing revoked), so proxies start with one.
    pub fn empty_crl(&self) {
        self.ca.write_crl(&[], 1).expect("CRL");
    }
}

impl Issuer for TestCa {
    fn issue(&self, req: &CertRequest) -> Result<IssuedCert, MeshError> {
        if self.revoked.lock().expect("lock").contains(&req.id.host) {
            return Err(MeshError::Issue {
                id: req.id.to_string(),
                reason: "host revoked".into(),
            });
        }
        let dns = req.server.then(|| req.id.proxy_dns_name());
        let c = self
            .ca
            .issue_mesh_cert(
                &req.public_key,
                &req.id.to_string(),
                dns.as_deref(),
                req.server,
                req.not_before,
                req.not_after,
            )
            .map_err(|e| MeshError::Issue {
                id: req.id.to_string(),
                reason: e.to_string(),
            })?;
        self.serials
            .lock()
            .expect("lock")
            .push((req.id.host.clone(), c.serial.clone()));
        Ok(IssuedCert {
            der: c.der,
            serial: c.serial,
        })
    }
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces created by the test, deleted (with their links) on drop.
pub struct Namespaces {
    pub names: Vec<String>,
}

impl Namespaces {
    pub fn new() -> Namespaces {
        Namespaces { names: Vec::new() }
    }

    /// Creates `<prefix><name>` with loopback up; returns the full name.
    pub fn add(&mut self, name: &str) -> String {
        let full = format!("rm{}{name}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["netns", "del", &full]).output();
        sh(&["ip", "netns", "add", &full]);
        self.names.push(full.clone());
        sh(&["ip", "-n", &full, "link", "set", "lo", "up"]);
        full
    }

    /// A veth pair `a_if` in `a` (address `a_addr`, CIDR form) and `b_if` in `b`.
    pub fn link(&self, a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
        sh(&[
            "ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b,
        ]);
        for (ns, ifc, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", ifc]);
            sh(&["ip", "-n", ns, "link", "set", ifc, "up"]);
        }
    }

    pub fn route(&self, ns: &str, args: &[&str]) {
        let mut v = vec!["ip", "-n", ns, "route", "add"];
        v.extend_from_slice(args);
        sh(&v);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// Gives the container `pid` an interface `eth1` with `c_addr`, joined to `host_if` (`h_addr`)
/// in the host namespace `host`, and a default route through it.
pub fn attach(host: &str, host_if: &str, h_addr: &str, pid: u32, c_addr: &str) {
    let pid = pid.to_string();
    sh(&[
        "ip", "link", "add", host_if, "netns", host, "type", "veth", "peer", "name", "eth1",
        "netns", &pid,
    ]);
    sh(&["ip", "-n", host, "addr", "add", h_addr, "dev", host_if]);
    sh(&["ip", "-n", host, "link", "set", host_if, "up"]);
    let gw = h_addr.split('/').next().unwrap_or_default();
    for args in [
        vec!["ip", "addr", "add", c_addr, "dev", "eth1"],
        vec!["ip", "link", "set", "eth1", "up"],
        vec!["ip", "route", "add", "default", "via", gw],
    ] {
        let mut v = vec!["nsenter", "-t", pid.as_str(), "-n"];
        v.extend(args);
        sh(&v);
    }
}

/// The mesh's Docker topology: two hosts (network namespaces linked by 10.231.0.1/.2), a
/// frontend (10.231.1.2) and a rogue container (10.231.3.2) on host 1, a backend on host 2
/// (10.231.2.2, `nc` echoing on port 5432), each container on its own link to its host.
/// Fields drop in order: the namespaces first, then the containers.
pub struct TwoHosts {
    pub ns: Namespaces,
    pub h1: String,
    pub h2: String,
    pub fe: testkit::TestContainer,
    pub rogue: testkit::TestContainer,
    pub be: testkit::TestContainer,
}

/// Builds [`TwoHosts`]; containers are named `mesh-<names>fe` (`rogue`, `be`), host namespaces
/// end in `<hosts>h1` and `<hosts>h2`, so that two tests in one binary do not collide.
pub fn two_hosts(names: &str, hosts: &str) -> TwoHosts {
    use testkit::TestContainer;
    let img = testkit::busybox_image();
    let idle = |what: &str| {
        TestContainer::run(
            &format!("mesh-{names}{what}"),
            &["--network", "none", &img, "sleep", "600"],
        )
    };
    let fe = idle("fe");
    let rogue = idle("rogue");
    let be = TestContainer::run(
        &format!("mesh-{names}be"),
        &[
            "--network",
            "none",
            &img,
            "nc",
            "-ll",
            "-p",
            "5432",
            "-e",
            "cat",
        ],
    );
    let mut ns = Namespaces::new();
    let h1 = ns.add(&format!("{hosts}h1"));
    let h2 = ns.add(&format!("{hosts}h2"));
    ns.link(&h1, "l1", "10.231.0.1/24", &h2, "l2", "10.231.0.2/24");
    attach(&h1, "c1", "10.231.1.1/24", fe.pid(), "10.231.1.2/24");
    attach(&h1, "c3", "10.231.3.1/24", rogue.pid(), "10.231.3.2/24");
    attach(&h2, "c2", "10.231.2.1/24", be.pid(), "10.231.2.2/24");
    TwoHosts {
        ns,
        h1,
        h2,
        fe,
        rogue,
        be,
    }
}

/// Moves the calling thread into the network namespace `ns`: sockets it creates from now on
/// live there.
pub fn enter(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
    // SAFETY: setns on a valid fd affects only the calling thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a new thread inside `ns` and returns its result.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .expect("thread in namespace")
}

/// A running proxy: its own thread (inside `ns` when given) with a single-threaded runtime.
pub struct RunningProxy {
    pub mesh: Arc<Mesh>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningProxy {
    pub fn start(ns: Option<&str>, mesh: Arc<Mesh>) -> RunningProxy {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns = ns.map(str::to_string);
        let m = mesh.clone();
        let thread = std::thread::spawn(move || {
            if let Some(ns) = &ns {
                enter(ns);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let run = m.run();
                tokio::pin!(run);
                // `run` binds before it serves; give it one poll, then report ready.
                tokio::select! {
                    r = &mut run => panic!("proxy stopped: {r:?}"),
                    _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                }
                let _ = ready_tx.send(());
                tokio::select! {
                    r = run => panic!("proxy stopped: {r:?}"),
                    _ = rx => {}
                }
            });
        });
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("proxy started");
        RunningProxy {
            mesh,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn config(yaml: &str) -> MeshConfig {
    MeshConfig::from_yaml("test", yaml).expect("config")
}

/// tcpdump on the inter-host link, writing a pcap file.
pub struct Capture {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl Capture {
    pub fn start(ns: &str, interface: &str, path: std::path::PathBuf) -> Capture {
        let mut child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "--immediate-mode",
                "-i",
                interface,
                "-U",
                "-s",
                "0",
                "-n",
                "-w",
            ])
            .arg(&path)
            .arg("tcp")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("tcpdump (apt-get install tcpdump)");
        let err = child.stderr.take().expect("stderr");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(err), &mut line)
            .expect("tcpdump stderr");
        assert!(line.contains("listening on"), "tcpdump: {line}");
        Capture { child, path }
    }

    pub fn stop(mut self) -> Vec<u8> {
        // Let the last packets reach the file (libpcap delivers in batches).
        std::thread::sleep(std::time::Duration::from_millis(500));
        // Our own child, not yet reaped: the pid is still its.
        // SAFETY: kill(2) with a pid we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        std::fs::read(&self.path).expect("pcap")
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
