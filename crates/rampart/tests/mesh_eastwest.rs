//! Issue 21: a container connecting in plaintext to another fleet host's container (outside the
//! mesh) raises an alert naming the container, its host and the remote address. Two "hosts" are
//! network namespaces joined by a veth link; the containers come from the one dockerd
//! (`--network none`, one veth each into their host). The agent (real BPF sensor) runs with the
//! east-west rule of docs/mesh.md listing the other host's container network.
//! Needs root, Docker, BPF; run under /tmp/rampart-bpf-tests.lock.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{busybox_image, TestContainer};

fn sh(args: &[&str]) {
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

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

fn attach(host: &str, host_if: &str, h_addr: &str, pid: u32, c_addr: &str) {
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

struct Agent {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Our own child, not yet reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(rules: &str) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("events.jsonl");
        let stats = dir.path().join("stats.json");
        let cfg = dir.path().join("agent.yaml");
        let rules_file = dir.path().join("eastwest.yaml");
        std::fs::write(&rules_file, rules).expect("rules");
        std::fs::write(
            &cfg,
            format!(
                "stats_file: {}\nrule_actions: off\nauth_journal: false\nrule_matching: all\n",
                stats.display()
            ),
        )
        .expect("config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
        cmd.args(["agent", "--config"])
            .arg(&cfg)
            .arg("--output")
            .arg(format!("jsonl:{}", out.display()))
            .arg("--rules")
            .arg(&rules_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl in the child before exec; the agent stops when the test process dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn rampart agent");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stats.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("agent exited during start: {status:?}");
            }
            assert!(Instant::now() < deadline, "agent not ready after 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Agent {
            child,
            out,
            _dir: dir,
        }
    }

    fn alerts(&self, rule: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["rule"] == rule)
            .collect()
    }
}

const RULE: &str = "Plaintext east-west connection";

#[test]
fn a_plaintext_connection_to_another_hosts_container_raises_the_east_west_alert() {
    testkit::require!(Root, Docker, Bpf);
    let img = busybox_image();
    let fe = TestContainer::run("mesh-ew-fe", &["--network", "none", &img, "sleep", "300"]);
    let be = TestContainer::run(
        "mesh-ew-be",
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
    let tag = std::process::id() % 100_000;
    let (h1, h2) = (format!("rmew{tag}h1"), format!("rmew{tag}h2"));
    let _ns = Netns(vec![h1.clone(), h2.clone()]);
    for h in [&h1, &h2] {
        sh(&["ip", "netns", "add", h]);
        sh(&["ip", "-n", h, "link", "set", "lo", "up"]);
        sh(&[
            "ip",
            "netns",
            "exec",
            h,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
    }
    sh(&[
        "ip", "link", "add", "l1", "netns", &h1, "type", "veth", "peer", "name", "l2", "netns", &h2,
    ]);
    sh(&["ip", "-n", &h1, "addr", "add", "10.231.0.1/24", "dev", "l1"]);
    sh(&["ip", "-n", &h2, "addr", "add", "10.231.0.2/24", "dev", "l2"]);
    sh(&["ip", "-n", &h1, "link", "set", "l1", "up"]);
    sh(&["ip", "-n", &h2, "link", "set", "l2", "up"]);
    attach(&h1, "c1", "10.231.1.1/24", fe.pid(), "10.231.1.2/24");
    attach(&h2, "c2", "10.231.2.1/24", be.pid(), "10.231.2.2/24");
    sh(&[
        "ip",
        "-n",
        &h1,
        "route",
        "add",
        "10.231.2.0/24",
        "via",
        "10.231.0.2",
    ]);
    sh(&[
        "ip",
        "-n",
        &h2,
        "route",
        "add",
        "10.231.1.0/24",
        "via",
        "10.231.0.1",
    ]);

    // The rule of docs/mesh.md, with vps2's container network as the other host's.
    let rules = format!(
        "- list: mesh_remote_container_nets\n  items: [10.231.2.0/24]\n\
         - rule: {RULE}\n  desc: a container reached another fleet host's container outside the mesh\n\
         \x20 condition: evt.type = connect and fd.typechar in (4, 6) and container.id != host and fd.snet in (mesh_remote_container_nets)\n\
         \x20 output: plaintext east-west connection from container %container.name on %evt.hostname to %fd.sip:%fd.sport (another host's container, not through the mesh)\n\
         \x20 priority: WARNING\n"
    );
    let agent = Agent::start(&rules);

    // Through the host's mesh address (the gateway): no alert. Directly to vps2's container:
    // the data arrives in plaintext, and the alert names both sides.
    let _ = fe.exec(&["sh", "-c", "echo via-mesh | timeout 2 nc 10.231.1.1 5432"]);
    let out = fe.exec(&[
        "sh",
        "-c",
        "echo direct-plaintext | timeout 2 nc 10.231.2.2 5432",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("direct-plaintext"),
        "the direct path works (the alert is about a real connection): {out:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let a = agent.alerts(RULE);
        if !a.is_empty() {
            break a;
        }
        assert!(Instant::now() < deadline, "no east-west alert");
        std::thread::sleep(Duration::from_millis(200));
    };
    let msg = alerts[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains(&fe.name), "{msg}");
    assert!(msg.contains("10.231.2.2:5432"), "{msg}");
    assert!(
        alerts.iter().all(|a| !a["message"]
            .as_str()
            .unwrap_or_default()
            .contains("10.231.1.1")),
        "the mesh address alerted: {alerts:?}"
    );
}
