//! Container and image audits against a real dockerd: containers and images configured well
//! and badly, each check asserted both ways; the SARIF output validated against the official
//! SARIF 2.1.0 schema.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_status, assert_valid_sarif, docker, finding};
use rampart_audit::ContainerAuditOptions;
use rampart_event::ComplianceStatus::{Fail, NotApplicable, Pass, Warning};
use rampart_event::{ComplianceFinding, Severity};
use testkit::{docker_ok, TestContainer};

/// A free TCP port on the host in `range` (bound and released).
fn free_port(range: std::ops::Range<u16>) -> u16 {
    range
        .into_iter()
        .find(|p| TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free port")
}

/// A whole-disk block device of this host (for a block-IO throttle).
fn block_device() -> String {
    let mut disks: Vec<String> = std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("zram") && !n.starts_with("ram"))
        .collect();
    disks.sort();
    format!("/dev/{}", disks.first().expect("a disk"))
}

struct Network(String);
impl Drop for Network {
    fn drop(&mut self) {
        let _ = testkit::docker(["network", "rm", &self.0]);
    }
}

/// Runs the container's init process as a shell script named `sshd`, so its command is sshd.
const SSHD: &str = "printf '#!/bin/sh\\nwhile :; do sleep 1; done\\n' > /tmp/sshd; chmod +x /tmp/sshd; exec /tmp/sshd";

fn wait_for_comm(c: &TestContainer, comm: &str) {
    let pid = c.pid();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} never ran {comm}", c.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_configured_well_and_badly() {
    testkit::require!(Root, Docker);
    let img = testkit::busybox_image();
    let net = Network(testkit::unique("rampart-audit-net"));
    docker_ok(["network", "create", &net.0]);
    let local_port = free_port(20000..30000).to_string();
    let low_port = free_port(900..1000).to_string();
    let cgroup_parent = format!("/rampart-audit-{}", std::process::id());
    // Declared before the containers, so it is dropped after them, even when a check fails.
    let _parent_cleanup = CgroupParent(cgroup_parent.clone());
    let disk = block_device();

    let good = TestContainer::run(
        "audit-good",
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_BIND_SERVICE",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            "--user",
            "65534:65534",
            "--memory",
            "64m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "50",
            "--device-write-bps",
            &format!("{disk}:50mb"),
            "--restart",
            "on-failure:3",
            "--health-cmd",
            "true",
            "--health-interval",
            "5s",
            "--network",
            &net.0,
            "-p",
            &format!("127.0.0.1:{local_port}:8080"),
            &img,
            "sleep",
            "600",
        ],
    );
    let bad = TestContainer::run(
        "audit-bad",
        &[
            "--cap-add=ALL",
            "--cap-drop=SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--network",
            "host",
            "--pid",
            "host",
            "--ipc",
            "host",
            "--uts",
            "host",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            "/etc:/host-etc",
            "--device",
            "/dev/zero:/dev/zero2",
            "--restart",
            "always",
            "--cgroup-parent",
            &cgroup_parent,
            &img,
            "sh",
            "-c",
            SSHD,
        ],
    );
    let bridge = TestContainer::run(
        "audit-bridge",
        &[
            "-p",
            &format!("{low_port}:8080"),
            "-v",
            "/etc/localtime:/etc/localtime:ro",
            &img,
            "sleep",
            "600",
        ],
    );
    wait_for_comm(&bad, "sshd");

    let d = docker().await;
    let opts = ContainerAuditOptions {
        allowed_registries: vec!["registry.example.com".into()],
        ..ContainerAuditOptions::default()
    };
    let names = [good.name.clone(), bad.name.clone(), bridge.name.clone()];
    let report = rampart_audit::audit_containers(&d, &names, &opts)
        .await
        .expect("audit");
    assert_eq!(report.subjects.len(), 3);
    let g = &report.subjects[0];
    let b = &report.subjects[1];
    let br = &report.subjects[2];
    assert_eq!(g.resource.name, good.name);
    assert_eq!(g.resource.uid, good.id);

    // Checks that pass on the good container and fail on the privileged-like one.
    for id in [
        "5.4",
        "5.5",
        "5.6",
        "5.10",
        "5.11",
        "5.12",
        "5.13",
        "5.15",
        "5.16",
        "5.17",
        "5.18",
        "5.21",
        "5.22",
        "5.26",
        "5.27",
        "5.29",
        "5.32",
        "RAMPART-C-ROOT",
        "RAMPART-C-BLKIO",
    ] {
        assert_status(g, id, Pass);
        assert_status(b, id, Fail);
    }
    // sshd runs only in the bad one.
    assert_status(g, "5.7", Pass);
    assert_status(b, "5.7", Fail);
    // Published ports: the good one binds one address above 1024; the bridge one binds every
    // address below 1024 on the default bridge.
    for id in ["5.8", "5.14", "5.30"] {
        assert_status(g, id, Pass);
        assert_status(br, id, Fail);
    }
    // /etc/localtime read-only is not a sensitive mount; /etc read-write is, and high.
    assert_status(br, "5.6", Pass);
    let sens = finding(b, "5.6");
    assert!(
        sens.evidence.contains("/etc:/host-etc (read-write)"),
        "{}",
        sens.evidence
    );
    assert_eq!(sens.severity, Severity::High);
    // Privileged in all but name, from the measured capability and seccomp state.
    let p = finding(b, "5.5");
    assert!(
        p.evidence.contains("including SYS_ADMIN and SYS_MODULE"),
        "{}",
        p.evidence
    );
    assert!(p.evidence.contains("SYS_RESOURCE"), "{}", p.evidence);
    assert_eq!(p.severity, Severity::Critical);
    assert!(finding(b, "5.32").evidence.contains("/var/run/docker.sock"));
    assert!(finding(b, "5.4").evidence.contains("SYS_ADMIN"));
    assert_status(b, "5.25", Warning);
    assert_status(g, "5.25", Pass);
    // No user-namespace remapping on the shared daemon: root is host root in both.
    assert_status(b, "RAMPART-C-USERNS", Fail);
    assert_status(g, "RAMPART-C-USERNS", Fail);
    assert_status(g, "5.31", NotApplicable);
    // Locally built image: not from the allowed registry, no registry digest.
    assert_status(g, "4.2", Fail);
    assert_status(g, "RAMPART-C-SIGNATURE", Fail);
    if !common::apparmor() {
        assert_status(g, "5.2", NotApplicable);
    }

    assert!(g.score() >= 85, "good container score {}", g.score());
    assert!(b.score() <= 30, "bad container score {}", b.score());
    assert!(report.fails_at(Severity::Critical));

    // Registry check both ways and not applicable without a list.
    for (allowed, want) in [
        (vec!["docker.io".to_string()], Pass),
        (vec![], NotApplicable),
    ] {
        let opts = ContainerAuditOptions {
            allowed_registries: allowed,
            ..ContainerAuditOptions::default()
        };
        let r = rampart_audit::audit_containers(&d, std::slice::from_ref(&good.name), &opts)
            .await
            .expect("audit");
        assert_status(&r.subjects[0], "4.2", want);
        assert!(
            !r.fails_at(Severity::High),
            "the good container has no high failure"
        );
    }

    // The OCSF lines parse back into the same findings; the SARIF validates.
    let lines = report.ocsf_lines();
    let back: Vec<ComplianceFinding> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("ocsf line"))
        .collect();
    assert_eq!(
        back.len(),
        report
            .subjects
            .iter()
            .map(|s| s.findings.len())
            .sum::<usize>()
    );
    let first: serde_json::Value =
        serde_json::from_str(lines.lines().next().expect("line")).expect("json");
    assert_eq!(first["class_uid"], 2003);
    let sarif = report.sarif();
    assert_valid_sarif(&sarif);
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(results
        .iter()
        .any(|r| r["ruleId"] == "5.5" && r["kind"] == "fail" && r["level"] == "error"));
    assert!(results
        .iter()
        .any(|r| r["ruleId"] == "5.5" && r["kind"] == "pass"));
    let json = report.json();
    assert_eq!(json["subjects"][0]["score"], g.score());
}

/// Removes a `--cgroup-parent` directory from every hierarchy (Docker leaves it behind).
struct CgroupParent(String);
impl Drop for CgroupParent {
    fn drop(&mut self) {
        let rel = self.0.trim_start_matches('/');
        if let Ok(dirs) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in dirs.flatten() {
                let _ = std::fs::remove_dir(h.path().join(rel));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
    }
}

/// Builds an image from a Dockerfile in a temporary context with one extra file.
fn build(tag: &str, dockerfile: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write");
    std::fs::write(dir.path().join("extra.txt"), "extra\n").expect("write");
    let out = std::process::Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Image(String);
impl Drop for Image {
    fn drop(&mut self) {
        let _ = testkit::docker(["rmi", "-f", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_configured_well_and_badly() {
    testkit::require!(Root, Docker);
    let base = testkit::busybox_image();
    let bad = Image(testkit::unique("rampart-test/audit-bad-image"));
    let good = Image(format!(
        "{}:1",
        testkit::unique("rampart-test/audit-good-image")
    ));
    build(
        &bad.0,
        &format!(
            "FROM {base}\nENV API_TOKEN=s3cr3tvalue\nRUN echo apt-get update\nADD extra.txt /extra.txt\nRUN cp /bin/busybox /bin/suidbox && chmod u+s /bin/suidbox\n"
        ),
    );
    build(
        &good.0,
        &format!("FROM {base}\nCOPY extra.txt /extra.txt\nUSER 65534\nHEALTHCHECK CMD true\n"),
    );
    let d = docker().await;
    let allowed = vec!["docker.io".to_string()];
    let rb = rampart_audit::audit_image(&d, &bad.0, &allowed)
        .await
        .expect("audit bad");
    let rg = rampart_audit::audit_image(&d, &good.0, &allowed)
        .await
        .expect("audit good");
    let b = &rb.subjects[0];
    let g = &rg.subjects[0];
    for id in ["4.1", "4.6", "4.7", "4.8", "4.9", "4.10", "RAMPART-I-TAG"] {
        assert_status(g, id, Pass);
        assert_status(b, id, Fail);
    }
    assert!(
        finding(b, "4.8").evidence.contains("/bin/suidbox (104755)"),
        "{}",
        finding(b, "4.8").evidence
    );
    let secrets = finding(b, "4.10");
    assert!(
        secrets.evidence.contains("API_TOKEN=s3"),
        "{}",
        secrets.evidence
    );
    assert!(
        !secrets.evidence.contains("s3cr3tvalue"),
        "the secret itself is not shown"
    );
    assert!(g.score() > b.score());
    assert_valid_sarif(&rb.sarif());
    // The container created to read the files is gone.
    let left = docker_ok(["ps", "-a", "--filter", &format!("ancestor={}", bad.0), "-q"]);
    assert!(left.is_empty(), "leftover containers: {left}");
}

/// CIS 5.24 and 5.28 against a real dockerd (5.23, a privileged exec, cannot start on this
/// host: dockerd refuses the capabilities; it is unit-tested on the facts): an exec as root is
/// found while it runs, an exec as the container's own user passes, a container without exec
/// is not applicable; a container whose tag was built again since it started is told to be
/// recreated, one whose tag still names its image passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sessions_and_stale_images() {
    testkit::require!(Root, Docker);
    let base = testkit::busybox_image();
    let tag = format!("rampart-test/audit-fresh-{}:1", std::process::id());
    let _image = Image(tag.clone());
    docker_ok(["tag", &base, &tag]);
    let stale = TestContainer::run("audit-stale", &["--user", "65534", &tag, "sleep", "600"]);
    let own = TestContainer::run("audit-own", &["--user", "65534", &base, "sleep", "600"]);
    let none = TestContainer::run("audit-noexec", &[&base, "sleep", "600"]);
    docker_ok(["exec", "-d", "-u", "root", &stale.name, "sleep", "120"]);
    docker_ok(["exec", "-d", "-u", "0:0", &stale.name, "sleep", "121"]);
    docker_ok(["exec", "-d", &own.name, "sleep", "122"]);
    // The tag moves to a new image after `stale` was created from it.
    build(&tag, &format!("FROM {base}\nLABEL rampart.test=rebuilt\n"));

    let d = docker().await;
    let names = [stale.name.clone(), own.name.clone(), none.name.clone()];
    let report = rampart_audit::audit_containers(&d, &names, &ContainerAuditOptions::default())
        .await
        .expect("audit");
    let (s, o, n) = (
        &report.subjects[0],
        &report.subjects[1],
        &report.subjects[2],
    );
    assert_status(s, "5.24", Warning);
    let ev = &finding(s, "5.24").evidence;
    assert!(ev.contains("sleep 120") && ev.contains("sleep 121"), "{ev}");
    assert_status(s, "5.23", Pass);
    assert_status(o, "5.24", Pass);
    assert_status(o, "5.23", Pass);
    assert_status(n, "5.24", NotApplicable);
    assert_status(n, "5.23", NotApplicable);
    assert_status(s, "5.28", Warning);
    assert!(
        finding(s, "5.28").evidence.contains("recreate"),
        "{:?}",
        finding(s, "5.28").evidence
    );
    assert_status(o, "5.28", Pass);
}
