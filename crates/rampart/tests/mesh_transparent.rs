//! `rampart mesh --transparent CONTAINER` end to end: `rampart server`, two agents enrolled as
//! vps1 and vps2, a `rampart mesh` for each; a busybox container on Docker's default bridge
//! connects to an address that only exists in the mesh configuration (`192.0.2.55:5432`,
//! TEST-NET-1, made unreachable inside the container so no packet for it leaves) and gets the backend's echo, because the agent's
//! `cgroup/connect4` program sends the connect to vps1's listener. SIGTERM to vps1's proxy
//! removes the redirection and the attachment: the same connect then goes nowhere.
//! Needs root, BPF and Docker; run under `flock /tmp/rampart-bpf-tests.lock`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;
use support::server::{echo_server, free_port, two_enrolled_hosts};
use support::spawn;
use testkit::TestContainer;

/// `echo MSG | nc 192.0.2.55 5432` in the container, at most 3 s.
fn nc(c: &TestContainer, msg: &str) -> String {
    let out = c.exec(&[
        "sh",
        "-c",
        &format!("echo {msg} | timeout 3 nc 192.0.2.55 5432"),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rampart_mesh_transparent_redirects_a_container_and_undoes_it_on_sigterm() {
    testkit::require!(Root, Docker);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let img = testkit::busybox_image();
    let c = TestContainer::run("mesh-cli-fe", &[&img, "sleep", "600"]);
    let ip = c.inspect("{{.NetworkSettings.IPAddress}}");
    let gw = c.inspect("{{.NetworkSettings.Gateway}}");
    assert!(
        !ip.is_empty() && !gw.is_empty(),
        "container on the default bridge"
    );
    // The address exists only in the mesh configuration: unreachable in the container (the
    // redirection happens before the route lookup, so only a redirected connect gets out).
    let pid = c.pid().to_string();
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid,
            "-n",
            "ip",
            "route",
            "add",
            "unreachable",
            "192.0.2.55/32",
        ])
        .output()
        .expect("nsenter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(nc(&c, "before"), "", "192.0.2.55 answered without the mesh");

    let (_server, url, _, t1, t2) = two_enrolled_hosts(d);
    let target = echo_server();
    let (inbound, listener) = (free_port(), free_port());
    let policy = "policy: ['frontend@vps1 -> backend@vps2:5432']\n";
    let m1 = d.join("mesh1.yaml");
    std::fs::write(
        &m1,
        format!(
            "fleet: acme\nhost: vps1\nca: {}\n{policy}peers: {{vps2: '127.0.0.1:{inbound}'}}\n\
             workloads: {{frontend: [{ip}]}}\noutbound:\n\
             \x20 - {{listen: '{gw}:{listener}', to: backend@vps2:5432, intercept: ['192.0.2.55:5432']}}\n",
            t1.join("ca.crt").display()
        ),
    )
    .expect("mesh1");
    let m2 = d.join("mesh2.yaml");
    std::fs::write(
        &m2,
        format!(
            "fleet: acme\nhost: vps2\nca: {}\n{policy}inbound: '127.0.0.1:{inbound}'\n\
             services: [{{name: backend, port: 5432, target: '{target}'}}]\n",
            t2.join("ca.crt").display()
        ),
    )
    .expect("mesh2");
    let pins = Path::new("/sys/fs/bpf/rampart-test").join(testkit::unique("mesh-cli"));
    let _p2 = spawn(
        &[
            "mesh",
            "--config",
            m2.to_str().expect("utf-8"),
            "--server",
            &url,
            "--tls-dir",
            t2.to_str().expect("utf-8"),
            "--queue",
            d.join("queue2").to_str().expect("utf-8"),
        ],
        Stdio::null(),
        &d.join("mesh2.log"),
    );
    let mut p1 = spawn(
        &[
            "mesh",
            "--config",
            m1.to_str().expect("utf-8"),
            "--server",
            &url,
            "--tls-dir",
            t1.to_str().expect("utf-8"),
            "--queue",
            d.join("queue1").to_str().expect("utf-8"),
            "--transparent",
            &c.name,
            "--pin-dir",
            pins.to_str().expect("utf-8"),
        ],
        Stdio::null(),
        &d.join("mesh1.log"),
    );
    let logs = || {
        format!(
            "vps1: {}\nvps2: {}",
            std::fs::read_to_string(d.join("mesh1.log")).unwrap_or_default(),
            std::fs::read_to_string(d.join("mesh2.log")).unwrap_or_default()
        )
    };
    let end = Instant::now() + Duration::from_secs(40);
    while !nc(&c, "through-the-mesh").contains("through-the-mesh") {
        assert!(Instant::now() < end, "never redirected\n{}", logs());
        std::thread::sleep(Duration::from_millis(300));
    }
    let link = pins.join("links").join(&c.id);
    assert!(link.exists(), "no attachment under {}", link.display());

    // SIGTERM: the proxy removes what it installed before it exits.
    // SAFETY: kill(2) on our own child, not yet reaped (the pid is still its).
    unsafe { libc::kill(p1.0.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p1.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < end,
            "rampart mesh did not stop\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit {status:?}\n{}", logs());
    assert!(!link.exists(), "still attached after SIGTERM");
    assert_eq!(nc(&c, "after"), "", "still redirected after SIGTERM");
    let _ = std::fs::remove_dir_all(&pins);
}
