//! Shared set-up of the tests: a private pin and state directory per test, Docker facts, and
//! reachability checks between containers the test created.
#![allow(dead_code, reason = "each test binary uses part of this")]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_container::DockerClient;
use rampart_kernel::enforce::Enforcer;
use rampart_respond::facts::{self, ContainerFacts};
use rampart_respond::{EnforceConfig, PolicyEnforcer};
use testkit::{docker, docker_ok, unique, TestContainer};

/// A private enforcement state, removed with everything attached when dropped.
pub struct Env {
    pub cfg: EnforceConfig,
    _state: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub docker: DockerClient,
}

impl Env {
    pub fn new() -> Env {
        let state = tempfile::tempdir().unwrap();
        let cfg = EnforceConfig {
            pin_dir: PathBuf::from("/sys/fs/bpf/rampart-test").join(unique("respond")),
            state_dir: state.path().to_path_buf(),
            ..EnforceConfig::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let docker = rt
            .block_on(DockerClient::connect(Path::new(
                rampart_container::DEFAULT_SOCKET,
            )))
            .unwrap();
        Env {
            cfg,
            _state: state,
            rt,
            docker,
        }
    }

    pub fn enforcer(&self) -> PolicyEnforcer {
        PolicyEnforcer::open(self.cfg.clone()).unwrap()
    }

    /// Facts of the test's own containers (the machine may run others; they stay out).
    pub fn facts(&self, cs: &[&TestContainer]) -> Vec<ContainerFacts> {
        cs.iter()
            .map(|c| {
                self.rt
                    .block_on(facts::inspect(&self.docker, &c.id))
                    .unwrap()
            })
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Enforcer::remove_all(&self.cfg.pin_dir);
    }
}

/// A Docker network of the test's own (internal: no route out), removed when dropped.
pub struct Network(pub String);

impl Network {
    pub fn new() -> Network {
        let n = Network(unique("rp-net"));
        docker_ok(["network", "create", "--internal", &n.0]);
        n
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(["network", "rm", &self.0]);
    }
}

/// Listens on 8080 and 22 and answers `hello` to every connection.
pub const SERVER: &str = "nc -ll -p 8080 -e echo hello & nc -ll -p 22 -e echo hello & wait";

pub fn server(prefix: &str, net: &Network) -> TestContainer {
    let img = testkit::busybox_image();
    TestContainer::run(prefix, &["--network", &net.0, &img, "sh", "-c", SERVER])
}

pub fn ip_of(c: &TestContainer) -> IpAddr {
    c.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
        .parse()
        .unwrap()
}

/// `echo | nc -w 2 IP PORT` from `from`: true when the listener's greeting came back.
pub fn reaches(from: &TestContainer, to: &TestContainer, port: u16) -> bool {
    let out = from.exec(&["sh", "-c", &format!("echo | nc -w 2 {} {port}", ip_of(to))]);
    String::from_utf8_lossy(&out.stdout).contains("hello")
}

/// Waits until `f` holds (up to 10 s).
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
