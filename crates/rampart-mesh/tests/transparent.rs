//! Transparent redirection with real containers, the real kernel hook and the two-host set-up of
//! `containers.rs`: the frontend container connects to the backend's real address
//! (`10.231.2.2:5432`, which also has a direct route, so a connect that is not redirected
//! visibly goes around the mesh in plaintext), and the agent's `cgroup/connect4` program sends
//! it to the vps1 proxy instead. Needs root, BPF and Docker; run under
//! `flock /tmp/rampart-bpf-tests.lock`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rampart_event::Event;
use rampart_kernel::enforce::{
    cgroup_id, Direction, Enforcer, NetPrefix, PortRule, Target, Verdict,
};
use rampart_mesh::{Mesh, Transparent};
use support::{config, contains, sh, two_hosts, Capture, RunningProxy, TestCa, TwoHosts};
use testkit::{unique, TestContainer};

/// A pin directory of its own, removed with everything attached under it when dropped.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = Enforcer::remove_all(&self.0);
    }
}

/// `echo MSG | nc 10.231.2.2 5432` in the container (the backend's real address), at most 3 s.
fn nc_backend(c: &TestContainer, msg: &str) -> String {
    let out = c.exec(&[
        "sh",
        "-c",
        &format!("echo {msg} | timeout 3 nc 10.231.2.2 5432"),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cgroup_of(c: &TestContainer) -> PathBuf {
    let unified = rampart_kernel::cgroup_layout()
        .unified
        .expect("a cgroup v2 hierarchy");
    let text = std::fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap();
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    unified.join(rel.trim_start_matches('/'))
}

fn own_cgroup() -> PathBuf {
    let unified = rampart_kernel::cgroup_layout().unified.unwrap();
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    unified.join(rel.trim_start_matches('/'))
}

/// Allowed connections the vps2 proxy counted from `who` (spiffe ID).
fn allowed_from(m: &Mesh, who: &str) -> u64 {
    m.edges()
        .iter()
        .filter(|((src, _), _)| src == who)
        .map(|(_, s)| s.allowed)
        .sum()
}

fn wait_denial(events: &mut tokio::sync::mpsc::Receiver<Event>, src: &str) -> Event {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(e) = events.try_recv() {
            let p = e.policy.as_ref().unwrap();
            if p.source_identity.as_deref() == Some(src) {
                return e;
            }
            continue;
        }
        assert!(Instant::now() < end, "no denial reported for {src}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn containers_keep_the_real_address_and_their_connects_go_through_the_mesh() {
    testkit::require!(Root, Docker);
    let TwoHosts {
        ns,
        h1,
        h2,
        fe,
        rogue,
        be,
    } = two_hosts("t", "t");
    // A direct path between the hosts' containers exists too: a connect that is not redirected
    // reaches the backend in plaintext, which the captures below would show.
    for h in [&h1, &h2] {
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
    ns.route(&h1, &["10.231.2.0/24", "via", "10.231.0.2"]);
    ns.route(&h2, &["10.231.1.0/24", "via", "10.231.0.1"]);
    ns.route(&h2, &["10.231.3.0/24", "via", "10.231.0.1"]);

    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    let common = format!(
        "fleet: acme\nca: /unused\npolicy: ['{}@vps1 -> {}@vps2:5432']\n",
        fe.name, be.name
    );
    let c1 = config(&format!(
        "{common}host: vps1\npeers: {{vps2: 10.231.0.2:15443}}\n\
         workloads: {{{}: [10.231.1.2], {}: [10.231.3.2]}}\n\
         outbound:\n  - {{listen: '10.231.1.1:15001', to: {}@vps2:5432, intercept: ['10.231.2.2:5432']}}\n",
        fe.name, rogue.name, be.name
    ));
    let c2 = config(&format!(
        "{common}host: vps2\ninbound: 10.231.0.2:15443\n\
         services: [{{name: {}, port: 5432, target: '10.231.2.2:5432'}}]\n",
        be.name
    ));
    let (tx, mut events) = tokio::sync::mpsc::channel::<Event>(64);
    let p2 = RunningProxy::start(
        Some(&h2),
        Mesh::new(c2, ca.cert(), ca.clone(), Some(tx.clone())).unwrap(),
    );
    let _p1 = RunningProxy::start(
        Some(&h1),
        Mesh::new(c1.clone(), ca.cert(), ca.clone(), Some(tx)).unwrap(),
    );
    let fe_id = format!("spiffe://acme/vps1/{}", fe.name);
    let rogue_id = format!("spiffe://acme/vps1/{}", rogue.name);

    // Control: before any redirection the container reaches the backend directly, and the
    // link carries its bytes in the clear.
    let cap = Capture::start(&h1, "l1", dir.path().join("direct.pcap"));
    let got = nc_backend(&fe, "DIRECT-BEFORE-7a1c");
    assert!(got.contains("DIRECT-BEFORE-7a1c"), "direct path: {got:?}");
    assert!(
        contains(&cap.stop(), b"DIRECT-BEFORE-7a1c"),
        "control capture"
    );
    assert_eq!(allowed_from(&p2.mesh, &fe_id), 0);

    let pins = Pins(PathBuf::from("/sys/fs/bpf/rampart-test").join(unique("mesh")));
    let mut t = Transparent::open(&pins.0, &c1).unwrap();
    // The proxy's own cgroup is refused: its connections to the peers must never be redirected.
    let e = t.protect("self", &own_cgroup()).unwrap_err().to_string();
    assert!(e.contains("the mesh proxy itself runs in"), "{e}");
    let e = t.protect("root", Path::new("/sys/fs/cgroup")).unwrap_err();
    assert!(e.to_string().contains("the mesh proxy itself"), "{e}");
    t.protect(&fe.id, &cgroup_of(&fe)).unwrap();
    t.protect(&rogue.id, &cgroup_of(&rogue)).unwrap();
    // Idempotent.
    t.protect(&fe.id, &cgroup_of(&fe)).unwrap();

    // 1. The application keeps the real address; the bytes go through both proxies, and the
    //    link carries TLS records only.
    let marker = "TRANSPARENT-PAYLOAD-3f9b";
    let cap = Capture::start(&h1, "l1", dir.path().join("mesh.pcap"));
    let got = nc_backend(&fe, marker);
    assert!(got.contains(marker), "frontend got {got:?}");
    let pcap = cap.stop();
    assert!(!contains(&pcap, marker.as_bytes()), "plaintext on the link");
    assert!(contains(&pcap, &[0x17, 0x03, 0x03]), "no TLS records");
    assert_eq!(allowed_from(&p2.mesh, &fe_id), 1, "vps2 saw the frontend");
    assert!(t.redirected_total() >= 1);

    // 2. A redirected container without the allowed identity is refused at the remote proxy.
    let got = nc_backend(&rogue, "rogue-wants-in");
    assert!(got.is_empty(), "rogue got {got:?}");
    let d = wait_denial(&mut events, &rogue_id);
    assert_eq!(d.device.hostname, "vps2");
    assert_eq!(
        d.policy.unwrap().destination_identity.as_deref(),
        Some(format!("spiffe://acme/vps2/{}", be.name).as_str())
    );

    // 3. Segmentation still wins: a policy denying the real destination refuses the connect
    //    in the kernel; it is not redirected around the policy (vps2 sees nothing).
    let fe_cg = cgroup_id(&cgroup_of(&fe)).unwrap();
    {
        let mut enf = Enforcer::open(&pins.0).unwrap();
        let denied_before = enf.stats().net_denied;
        enf.put_net(
            91,
            Direction::Egress,
            NetPrefix {
                addr: IpAddr::from([10, 231, 2, 2]),
                len: 32,
            },
            &[PortRule {
                ports: (5432, 5432),
                proto: Some(6),
                verdict: Verdict::Deny,
                rule_id: 1,
            }],
        )
        .unwrap();
        enf.set_target(
            fe_cg,
            &Target {
                policy: 91,
                egress: true,
                egress_default: Verdict::Allow,
                ..Target::none()
            },
        )
        .unwrap();
        let out = fe.exec(&["sh", "-c", "echo no | timeout 3 nc 10.231.2.2 5432"]);
        assert!(out.stdout.is_empty(), "denied connect answered");
        assert!(
            !out.status.success(),
            "nc succeeded: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            allowed_from(&p2.mesh, &fe_id),
            1,
            "a denied connect reached vps2"
        );
        assert!(
            enf.stats().net_denied > denied_before,
            "the kernel did not deny"
        );
        // The policy allowing it again: through the mesh again.
        enf.remove_target(fe_cg).unwrap();
        enf.remove_policy(91).unwrap();
    }
    assert!(nc_backend(&fe, "after-policy").contains("after-policy"));
    assert_eq!(allowed_from(&p2.mesh, &fe_id), 2);

    // 4. A removed container: its redirections and its attachment go.
    let rogue_key = rogue.id.clone();
    drop(rogue);
    assert!(t.release(&rogue_key).unwrap());
    let enf = Enforcer::open(&pins.0).unwrap();
    assert!(!enf.attached_cgroups().contains(&rogue_key));

    // 5. Stopping the mesh (dropping its redirections) detaches the hook: the same connect now
    //    goes directly, in plaintext, and the proxy sees nothing.
    drop(t);
    assert!(
        enf.mesh_redirects().is_empty(),
        "{:?}",
        enf.mesh_redirects()
    );
    assert!(
        enf.attached_cgroups().is_empty(),
        "{:?}",
        enf.attached_cgroups()
    );
    let cap = Capture::start(&h1, "l1", dir.path().join("after.pcap"));
    let got = nc_backend(&fe, "DIRECT-AFTER-5e2d");
    assert!(
        got.contains("DIRECT-AFTER-5e2d"),
        "direct after stop: {got:?}"
    );
    assert!(
        contains(&cap.stop(), b"DIRECT-AFTER-5e2d"),
        "not direct after stop"
    );
    assert_eq!(allowed_from(&p2.mesh, &fe_id), 2);
}
