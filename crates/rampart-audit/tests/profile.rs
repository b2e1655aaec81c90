//! Seccomp learning end to end: learn a busybox httpd workload, rerun it under the learned
//! profile, it serves (from the test over the container's IP on a network the test created,
//! and via `docker exec` wget to localhost), while a syscall outside the list fails. Learned
//! both unconfined and under the learning profile; the latter is tighter.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_audit::harden::{self, HardenOptions};
use rampart_audit::learn::{self, LearnMode, LearnOptions, Recording};
use rampart_audit::seccomp::{self, SeccompProfile};
use testkit::{docker_ok, TestContainer};

struct Network(String);
impl Drop for Network {
    fn drop(&mut self) {
        let _ = testkit::docker(["network", "rm", &self.0]);
    }
}

const HTTPD: [&str; 6] = ["httpd", "-f", "-p", "8080", "-h", "/etc"];

fn ip(c: &TestContainer, net: &str) -> Option<String> {
    let out = testkit::docker([
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        &c.name,
    ]);
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// GET /passwd from the container's httpd over its IP; the body.
fn fetch(ip: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&format!("{ip}:8080").parse().ok()?, Duration::from_secs(2))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /passwd HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn wait_serving(c: &TestContainer, net: &str) -> String {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        if let Some(ip) = ip(c, net) {
            if fetch(&ip).is_some_and(|b| b.contains("root:x:0:0")) {
                return ip;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = testkit::docker(["logs", &c.name]);
    panic!(
        "{} does not serve /passwd; state {}; logs: {}{}",
        c.name,
        c.inspect("{{.State.Status}} exit {{.State.ExitCode}} error {{.State.Error}}"),
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
}

/// Traffic while learning: fetches over the network and wget via docker exec, until stopped.
fn traffic(
    c_name: String,
    net: String,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let c = TestContainer {
            id: String::new(),
            name: c_name,
        };
        while !stop.load(Ordering::Relaxed) {
            if let Some(ip) = ip(&c, &net) {
                if fetch(&ip).is_some_and(|b| b.contains("root:x:0:0")) {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
            let out = c.exec(&["wget", "-q", "-O", "-", "http://127.0.0.1:8080/passwd"]);
            if out.status.success() {
                served.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Not ours to remove: the test owns the container.
        std::mem::forget(c);
    })
}

async fn learn_httpd(seccomp_opt: &str, net: &Network) -> (Recording, TestContainer) {
    let img = testkit::busybox_image();
    let mut args = vec![
        "--security-opt",
        seccomp_opt,
        "--network",
        &net.0,
        img.as_str(),
    ];
    args.extend(HTTPD);
    let c = TestContainer::run("audit-learn", &args);
    wait_serving(&c, &net.0);
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let t = traffic(c.name.clone(), net.0.clone(), stop.clone(), served.clone());
    let docker = common::docker().await;
    let rec = learn::learn(
        &docker,
        &c.name,
        &LearnOptions {
            duration: Duration::from_secs(6),
            restart: true,
            ..LearnOptions::default()
        },
    )
    .await
    .expect("learn");
    stop.store(true, Ordering::Relaxed);
    t.join().expect("traffic");
    assert!(
        served.load(Ordering::Relaxed) >= 4,
        "traffic reached the workload while learning"
    );
    assert!(rec.restarted);
    assert_eq!(rec.lost, 0);
    (rec, c)
}

/// Runs the workload under `profile`, checks it serves both ways, and that `ln` (link/linkat,
/// never learned) is refused while the unconfined learning container may do it.
fn check_profile(profile: &Path, net: &Network, learned_in: &TestContainer, rec: &Recording) {
    for n in ["link", "linkat"] {
        assert!(
            !rec.syscalls.names.contains_key(n),
            "{n} was learned; the denial check needs a syscall outside the list"
        );
    }
    // What the runtime does depending on timing is allowed even when this recording missed it
    // (rt_sigreturn of runc init's preemption signal: without it a loaded machine kills some
    // starts).
    let allowed = SeccompProfile::load(profile)
        .expect("load")
        .allowed()
        .expect("allow-list");
    for n in seccomp::RUNTIME_TIMING {
        assert!(allowed.contains(n), "{n} not allowed: {allowed:?}");
    }
    let img = testkit::busybox_image();
    let opt = format!("seccomp={}", profile.display());
    let mut args = vec![
        "--security-opt",
        opt.as_str(),
        "--network",
        &net.0,
        img.as_str(),
    ];
    args.extend(HTTPD);
    let c = TestContainer::run("audit-profiled", &args);
    let ip = wait_serving(&c, &net.0);
    let body = fetch(&ip).expect("served over the network");
    assert!(
        body.starts_with("HTTP/1.") && body.contains("root:x:0:0"),
        "{body}"
    );
    let out = c.exec(&["wget", "-q", "-O", "-", "http://127.0.0.1:8080/passwd"]);
    assert!(
        out.status.success(),
        "wget under the profile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("root:x:0:0"));
    // The container really runs under a filter.
    let pid = c.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    // A syscall outside the list is refused with EPERM ...
    let out = c.exec(&["ln", "/etc/passwd", "/tmp/hard"]);
    assert!(
        !out.status.success(),
        "link must be refused under the profile"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Operation not permitted"), "{err}");
    // ... while the same command works without the profile.
    let out = learned_in.exec(&["ln", "/etc/passwd", "/tmp/hard"]);
    assert!(
        out.status.success(),
        "ln without the profile: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_profiles_run_the_workload_and_refuse_the_rest() {
    testkit::require!(Root, Docker, Bpf);
    let net = Network(testkit::unique("rampart-audit-prof"));
    docker_ok(["network", "create", &net.0]);
    let dir = tempfile::tempdir().expect("tmp");

    // 1. Learned unconfined: the runtime's set-up is in the profile too.
    let (rec_u, c_u) = learn_httpd("seccomp=unconfined", &net).await;
    assert_eq!(rec_u.mode, LearnMode::Unconfined);
    for n in ["execve", "accept4", "read", "write", "exit_group"] {
        assert!(
            rec_u.syscalls.names.contains_key(n)
                || (n == "accept4" && rec_u.syscalls.names.contains_key("accept")),
            "{n} missing: {:?}",
            rec_u.syscalls.names.keys()
        );
    }
    assert!(
        rec_u.syscalls.names.contains_key("pivot_root"),
        "runc's set-up is recorded unconfined"
    );
    let p_u = dir.path().join("unconfined.json");
    rec_u.profile().save(&p_u).expect("save");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p_u).expect("read")).expect("json");
    assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(
        v["archMap"][0]["subArchitectures"],
        serde_json::json!(["SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    );
    check_profile(&p_u, &net, &c_u, &rec_u);

    // 2. Learned under the allow-all learning profile: only what runs under a filter.
    let learning = dir.path().join("learn.json");
    seccomp::learning_profile().save(&learning).expect("save");
    let (rec_l, c_l) = learn_httpd(&format!("seccomp={}", learning.display()), &net).await;
    assert_eq!(rec_l.mode, LearnMode::LearningProfile);
    assert!(
        !rec_l.syscalls.names.contains_key("pivot_root"),
        "set-up before the filter is not recorded"
    );
    let set_u: std::collections::BTreeSet<_> = rec_u.syscalls.names.keys().collect();
    let set_l: std::collections::BTreeSet<_> = rec_l.syscalls.names.keys().collect();
    assert!(
        set_l.len() < set_u.len(),
        "learning profile {} < unconfined {}",
        set_l.len(),
        set_u.len()
    );
    let p_l = dir.path().join("tight.json");
    rec_l.profile().save(&p_l).expect("save");
    check_profile(&p_l, &net, &c_l, &rec_l);

    // 3. Merging both recordings gives their union, which still refuses link.
    let a = SeccompProfile::load(&p_u).expect("load");
    let b = SeccompProfile::load(&p_l).expect("load");
    let merged = seccomp::merge(&[(p_u.as_path(), &a), (p_l.as_path(), &b)]).expect("merge");
    let allowed = merged.allowed().expect("allow-list");
    let learned: std::collections::BTreeSet<_> = set_u
        .union(&set_l)
        .map(|n| n.as_str())
        .chain(seccomp::RUNTIME_TIMING)
        .collect();
    assert_eq!(allowed.len(), learned.len());
    assert!(!allowed.contains("link"));

    // 4. The hardening proposal of the learned container drops what it did not use.
    let docker = common::docker().await;
    let inspect = docker.inspect_container(&c_l.name).await.expect("inspect");
    let image = docker
        .inspect_image(inspect.image.as_deref().unwrap_or_default())
        .await
        .expect("image");
    let proposal = harden::propose(
        &inspect,
        &image,
        &rec_l,
        &HardenOptions {
            profile_path: Some(p_l.display().to_string()),
            ..HardenOptions::default()
        },
    );
    let line = proposal.run_line();
    assert!(line.contains("--read-only"), "{line}");
    assert!(
        line.contains(&format!("--security-opt seccomp={}", p_l.display())),
        "{line}"
    );
    assert!(
        line.contains("--pids-limit") && line.contains("--memory"),
        "{line}"
    );
    if rec_l.capabilities.is_some() {
        assert!(line.contains("--cap-drop ALL"), "{line}");
        // httpd on port 8080 as root needs none of Docker's default capabilities but the ones
        // it was seen using.
        let used = rec_l.used_capabilities().expect("caps");
        for cap in proposal.cap_add.clone().unwrap_or_default() {
            assert!(used.contains(&cap), "{cap} proposed but not used");
        }
    }
}
