//! The two-host mesh with real containers from the one dockerd: each container is started with
//! `--network none` and given one veth into its "host" namespace, so it is reachable only through
//! that host. The applications are busybox `nc` (an echo server on vps2, a client on vps1).
//! Needs root and Docker.

mod support;

use std::time::{Duration, Instant};

use rampart_event::Event;
use rampart_mesh::Mesh;
use support::{config, contains, two_hosts, Capture, RunningProxy, TestCa, TwoHosts};
use testkit::TestContainer;

/// `echo MSG | nc ADDR 5432` inside the container, for at most 3 s; returns what came back.
fn nc(c: &TestContainer, addr: &str, msg: &str) -> String {
    let out = c.exec(&[
        "sh",
        "-c",
        &format!("echo {msg} | timeout 3 nc {addr} 5432"),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn docker_containers_on_two_hosts_talk_through_the_mesh_only() {
    testkit::require!(Root, Docker);
    let TwoHosts {
        ns: _ns,
        h1,
        h2,
        fe,
        rogue,
        be,
    } = two_hosts("", "k");

    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new(&dir.path().join("ca"));
    let common = format!(
        "fleet: acme\nca: /unused\npolicy: ['{}@vps1 -> {}@vps2:5432']\n",
        fe.name, be.name
    );
    let c1 = config(&format!(
        "{common}host: vps1\npeers: {{vps2: 10.231.0.2:15443}}\n\
         workloads: {{{}: [10.231.1.2], {}: [10.231.3.2]}}\n\
         outbound:\n  - {{listen: '10.231.1.1:5432', to: {}@vps2:5432}}\n  - {{listen: '10.231.3.1:5432', to: {}@vps2:5432}}\n",
        fe.name, rogue.name, be.name, be.name
    ));
    let c2 = config(&format!(
        "{common}host: vps2\ninbound: 10.231.0.2:15443\n\
         services: [{{name: {}, port: 5432, target: '10.231.2.2:5432'}}]\n",
        be.name
    ));
    let (tx, mut events) = tokio::sync::mpsc::channel::<Event>(64);
    let _p2 = RunningProxy::start(
        Some(&h2),
        Mesh::new(c2, ca.cert(), ca.clone(), Some(tx.clone())).expect("m2"),
    );
    let _p1 = RunningProxy::start(
        Some(&h1),
        Mesh::new(c1, ca.cert(), ca.clone(), Some(tx)).expect("m1"),
    );

    let marker = "MESH-CONTAINER-PAYLOAD-4d2e";
    let cap = Capture::start(&h1, "l1", dir.path().join("c.pcap"));
    let got = nc(&fe, "10.231.1.1", marker);
    assert!(got.contains(marker), "frontend container got {got:?}");
    let pcap = cap.stop();
    assert!(!contains(&pcap, marker.as_bytes()), "plaintext on the link");
    assert!(
        contains(&pcap, &[0x17, 0x03, 0x03]),
        "no TLS records on the link"
    );

    let got = nc(&rogue, "10.231.3.1", "rogue-wants-in");
    assert!(got.is_empty(), "rogue container got {got:?}");
    let end = Instant::now() + Duration::from_secs(5);
    let denial = loop {
        if let Ok(e) = events.try_recv() {
            break e;
        }
        assert!(Instant::now() < end, "no denial reported");
        std::thread::sleep(Duration::from_millis(20));
    };
    let p = denial.policy.expect("policy facet");
    assert_eq!(denial.device.hostname, "vps2");
    assert_eq!(
        p.source_identity.as_deref(),
        Some(format!("spiffe://acme/vps1/{}", rogue.name).as_str())
    );
    assert_eq!(
        p.destination_identity.as_deref(),
        Some(format!("spiffe://acme/vps2/{}", be.name).as_str())
    );
    // The frontend still gets through after the refusal.
    assert!(nc(&fe, "10.231.1.1", "again").contains("again"));
}
