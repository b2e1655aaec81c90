//! User-namespace checks against a second dockerd with `--userns-remap`, started by the test:
//! userns-remap cannot be enabled on the shared daemon.
//!
//! The second daemon runs in private mount and network namespaces where /etc/subuid and
//! /etc/subgid are bind-mounted test files (mapping nobody:nogroup to 300000-365535), with its
//! own managed containerd, data and exec roots in a temporary directory, no bridge and no
//! iptables changes: nothing of the host's configuration or interfaces is touched.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::assert_status;
use rampart_audit::host::HostOptions;
use rampart_audit::ContainerAuditOptions;
use rampart_container::DockerClient;
use rampart_event::ComplianceStatus::{Fail, Pass};

const REMAP_BASE: u32 = 300_000;

struct SecondDaemon {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    cgroup_parent: String,
}

impl SecondDaemon {
    fn start() -> Option<SecondDaemon> {
        let dir = tempfile::Builder::new()
            .prefix("rampart-userns-")
            .tempdir_in("/var/tmp")
            .expect("tmp");
        let d = dir.path();
        std::fs::write(d.join("subuid"), format!("nobody:{REMAP_BASE}:65536\n")).expect("w");
        std::fs::write(
            d.join("subgid"),
            format!("nobody:{REMAP_BASE}:65536\nnogroup:{REMAP_BASE}:65536\n"),
        )
        .expect("w");
        let socket = d.join("docker.sock");
        let cgroup_parent = format!("/rampart-userns-{}", std::process::id());
        let ns = format!("rampart-userns-{}", std::process::id());
        let script = format!(
            "mount --bind {d}/subuid /etc/subuid && mount --bind {d}/subgid /etc/subgid && exec dockerd \
             --data-root {d}/data --exec-root {d}/exec -H unix://{sock} --pidfile {d}/docker.pid \
             --bridge none --iptables=false --ip-masq=false --userns-remap nobody:nogroup \
             --cgroup-parent {cgroup_parent} --containerd-namespace {ns} --containerd-plugins-namespace {ns}-plugins",
            d = d.display(),
            sock = socket.display(),
        );
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log");
        let child = Command::new("unshare")
            // Its own network namespace too: a dockerd started with --bridge none deletes the
            // host's docker0 interface (moby removeDefaultBridgeInterface).
            .args(["-m", "-n", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .ok()?;
        let daemon = SecondDaemon {
            child,
            dir,
            socket,
            cgroup_parent,
        };
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            let out = daemon.docker(&["info", "--format", "{{json .SecurityOptions}}"]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("name=userns")
            {
                return Some(daemon);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log =
            std::fs::read_to_string(daemon.dir.path().join("dockerd.log")).unwrap_or_default();
        panic!("second dockerd did not come up with userns-remap:\n{log}");
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        let host = format!("unix://{}", self.socket.display());
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        testkit::docker(&all)
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "remapped", "hostns"]);
        // SAFETY: signalling our own child (dockerd, exec'd by sh).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let rel = self.cgroup_parent.trim_start_matches('/');
        if let Ok(dirs) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in dirs.flatten() {
                let _ = std::fs::remove_dir(h.path().join(rel));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userns_remap_checks_against_a_second_dockerd() {
    testkit::require!(Root, Docker);
    if Command::new("unshare").arg("--version").output().is_err() {
        panic!("unshare (util-linux) is needed to start the second dockerd");
    }
    let img = testkit::busybox_image();
    let Some(daemon) = SecondDaemon::start() else {
        panic!("could not start the second dockerd");
    };
    // Move the test image over without a registry.
    testkit::load_images(&format!("unix://{}", daemon.socket.display()), &[&img]);
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "remapped",
        "--network",
        "none",
        &img,
        "sleep",
        "600",
    ]);
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hostns",
        "--userns",
        "host",
        "--network",
        "none",
        &img,
        "sleep",
        "600",
    ]);

    let client = DockerClient::connect(&daemon.socket)
        .await
        .expect("connect second daemon");
    let report = rampart_audit::audit_containers(
        &client,
        &["remapped".to_string(), "hostns".to_string()],
        &ContainerAuditOptions::default(),
    )
    .await
    .expect("audit");
    let remapped = &report.subjects[0];
    let hostns = &report.subjects[1];
    assert_status(remapped, "RAMPART-C-USERNS", Pass);
    assert!(
        common::finding(remapped, "RAMPART-C-USERNS")
            .evidence
            .contains(&format!("host uid {REMAP_BASE}")),
        "{}",
        common::finding(remapped, "RAMPART-C-USERNS").evidence
    );
    assert_status(remapped, "5.31", Pass);
    assert_status(hostns, "RAMPART-C-USERNS", Fail);
    assert_status(hostns, "5.31", Fail);
    // Root inside is still root inside, whatever it maps to.
    assert_status(remapped, "RAMPART-C-ROOT", Fail);

    // CIS 2.9 against the running remapping daemon.
    let host = rampart_audit::audit_host(
        Some(&client),
        &HostOptions {
            probe_bpf: false,
            ..HostOptions::default()
        },
    )
    .await
    .expect("host audit");
    assert_status(&host.subjects[0], "2.9", Pass);
}
