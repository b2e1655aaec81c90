//! Two "hosts" on this machine, each a network namespace with its own proxy and identity, joined
//! by one veth link; the "containers" are network namespaces behind their host's namespace
//! (reachable only through it), with the test's threads standing in for the applications.
//! Needs root (namespaces, tcpdump).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{Event, EventKind};
use rampart_mesh::Mesh;
use support::{config, contains, in_ns, sh, Capture, Namespaces, RunningProxy, TestCa};

const LINK_IF: &str = "l1";
const BACKEND: &str = "10.231.2.2:5432";
const FE_GATEWAY: &str = "10.231.1.1:5432";
const ROGUE_GATEWAY: &str = "10.231.3.1:5432";

struct Fleet {
    h1: String,
    fe: String,
    rogue: String,
    ca: Arc<TestCa>,
    p1: RunningProxy,
    p2: RunningProxy,
    events: tokio::sync::mpsc::Receiver<Event>,
    /// Events received and not yet matched by a `wait_event`.
    backlog: Vec<Event>,
    backend_conns: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    // Last: the proxies stop before their namespaces go.
    _ns: Namespaces,
}

impl Fleet {
    fn new(tag: &str, ttl: u64, refresh: u64) -> Fleet {
        let mut ns = Namespaces::new();
        let h1 = ns.add(&format!("{tag}h1"));
        let h2 = ns.add(&format!("{tag}h2"));
        let fe = ns.add(&format!("{tag}fe"));
        let rogue = ns.add(&format!("{tag}ro"));
        let be = ns.add(&format!("{tag}be"));
        ns.link(&h1, LINK_IF, "10.231.0.1/24", &h2, "l2", "10.231.0.2/24");
        ns.link(&h1, "c1", "10.231.1.1/24", &fe, "eth0", "10.231.1.2/24");
        ns.link(&h1, "c3", "10.231.3.1/24", &rogue, "eth0", "10.231.3.2/24");
        ns.link(&h2, "c2", "10.231.2.1/24", &be, "eth0", "10.231.2.2/24");
        ns.route(&fe, &["default", "via", "10.231.1.1"]);
        ns.route(&rogue, &["default", "via", "10.231.3.1"]);
        ns.route(&be, &["default", "via", "10.231.2.1"]);
        ns.route(&h1, &["10.231.2.0/24", "via", "10.231.0.2"]);
        ns.route(&h2, &["10.231.1.0/24", "via", "10.231.0.1"]);
        ns.route(&h2, &["10.231.3.0/24", "via", "10.231.0.1"]);
        // Hosts route between their containers and the link, as Docker's bridge hosts do: the
        // plaintext control path below needs it; the mesh does not.
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

        let backend_conns = Arc::new(AtomicUsize::new(0));
        start_backend(&be, backend_conns.clone());

        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new(&dir.path().join("ca"));
        ca.empty_crl();
        let common = format!(
            "fleet: acme\nca: {}\ncrl: {}\ncrl_refresh_secs: {refresh}\ncert_ttl_secs: {ttl}\n\
             policy: ['frontend@vps1 -> backend@vps2:5432']\n",
            dir.path().join("ca/ca.crt").display(),
            ca.crl_path().display()
        );
        let c1 = config(&format!(
            "{common}host: vps1\npeers: {{vps2: 10.231.0.2:15443}}\n\
             workloads: {{frontend: [10.231.1.2], rogue: [10.231.3.2]}}\n\
             outbound:\n  - {{listen: '{FE_GATEWAY}', to: backend@vps2:5432}}\n  - {{listen: '{ROGUE_GATEWAY}', to: backend@vps2:5432}}\n"
        ));
        let c2 = config(&format!(
            "{common}host: vps2\ninbound: 10.231.0.2:15443\n\
             services: [{{name: backend, port: 5432, target: '{BACKEND}'}}]\n"
        ));
        let (tx, events) = tokio::sync::mpsc::channel(1024);
        let m1 = Mesh::new(c1, ca.cert(), ca.clone(), Some(tx.clone())).expect("mesh 1");
        let m2 = Mesh::new(c2, ca.cert(), ca.clone(), Some(tx)).expect("mesh 2");
        let p2 = RunningProxy::start(Some(&h2), m2);
        let p1 = RunningProxy::start(Some(&h1), m1);
        Fleet {
            _ns: ns,
            h1,
            fe,
            rogue,
            ca,
            p1,
            p2,
            events,
            backlog: Vec::new(),
            backend_conns,
            _dir: dir,
        }
    }

    fn drain(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            v.push(e);
        }
        v
    }

    /// Waits up to 5 s for an event `pred` accepts (also among those received earlier).
    fn wait_event(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let fresh = self.drain();
            self.backlog.extend(fresh);
            if let Some(i) = self.backlog.iter().position(&pred) {
                return self.backlog.remove(i);
            }
            if Instant::now() > end {
                panic!(
                    "no {what}; saw {:?}",
                    self.backlog.iter().map(|e| &e.policy).collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The "backend container": an echo server (so the payload marker crosses the link both ways).
fn start_backend(ns: &str, conns: Arc<AtomicUsize>) {
    let l = in_ns(ns, || TcpListener::bind(BACKEND).expect("backend bind"));
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            conns.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Opens a connection from inside `ns` (the socket stays in that namespace).
fn connect(ns: &str, addr: &str) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = addr.parse().expect("addr");
    in_ns(ns, move || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(s)
    })
}

/// Sends `msg` and reads the backend's answer; an error when the connection is closed first.
fn exchange(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

fn request(ns: &str, addr: &str, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = connect(ns, addr)?;
    exchange(&mut s, msg)
}

fn ack(msg: &[u8]) -> Vec<u8> {
    msg.to_vec()
}

#[test]
fn allowed_pair_exchanges_data_and_the_link_carries_only_tls() {
    testkit::require!(Root);
    let mut f = Fleet::new("a", 3600, 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = b"MESH-PAYLOAD-7f3a9c-SECRET".to_vec();

    let cap = Capture::start(&f.h1, LINK_IF, dir.path().join("mesh.pcap"));
    let mut s = connect(&f.fe, FE_GATEWAY).expect("frontend reaches its gateway");
    for i in 0..3 {
        let msg = [marker.clone(), format!("-{i}").into_bytes()].concat();
        assert_eq!(exchange(&mut s, &msg).expect("through the mesh"), ack(&msg));
    }
    // Bulk, so several full TLS records cross the link.
    let big = marker.repeat(2000);
    assert_eq!(exchange(&mut s, &big).expect("bulk"), ack(&big));
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let pcap = cap.stop();
    assert!(
        pcap.len() > big.len(),
        "the capture saw the traffic ({} bytes)",
        pcap.len()
    );
    assert!(
        !contains(&pcap, &marker),
        "application bytes on the inter-host link"
    );
    // TLS 1.3 application-data records (type 23, legacy version 3.3) and a handshake.
    assert!(
        contains(&pcap, &[0x17, 0x03, 0x03]),
        "no TLS application data records"
    );
    assert!(contains(&pcap, &[0x16, 0x03, 0x01]), "no TLS ClientHello");
    assert_eq!(f.backend_conns.load(Ordering::SeqCst), 1);
    let edges = f.p2.mesh.edges();
    let e = edges
        .get(&(
            "spiffe://acme/vps1/frontend".to_string(),
            "spiffe://acme/vps2/backend:5432".to_string(),
        ))
        .expect("edge recorded");
    assert_eq!((e.allowed, e.denied), (1, 0));
    assert!(f.drain().is_empty(), "no refusals for the allowed pair");

    // Control: the same bytes sent directly (plaintext, around the mesh) are visible on the link,
    // so the check above can fail.
    let cap = Capture::start(&f.h1, LINK_IF, dir.path().join("plain.pcap"));
    assert_eq!(
        request(&f.fe, BACKEND, &marker).expect("direct"),
        ack(&marker)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        contains(&cap.stop(), &marker),
        "control capture misses the plaintext"
    );
}

#[test]
fn a_workload_without_the_allowed_identity_is_refused_at_the_remote_proxy() {
    testkit::require!(Root);
    let mut f = Fleet::new("b", 3600, 10);
    let msg = b"rogue wants the database";
    let r = request(&f.rogue, ROGUE_GATEWAY, msg);
    assert!(r.is_err(), "rogue got an answer: {r:?}");
    let e = f.wait_event("denial of rogue", |e| {
        e.policy
            .as_ref()
            .is_some_and(|p| p.mechanism.contains("inbound"))
    });
    assert_eq!(e.kind, EventKind::PolicyNetDenied);
    assert_eq!(e.device.hostname, "vps2", "refused at the remote proxy");
    let p = e.policy.expect("policy facet");
    assert_eq!(
        p.source_identity.as_deref(),
        Some("spiffe://acme/vps1/rogue")
    );
    assert_eq!(
        p.destination_identity.as_deref(),
        Some("spiffe://acme/vps2/backend")
    );
    assert_eq!((p.rule.as_str(), p.action.as_str()), ("default", "deny"));
    assert_eq!(
        f.backend_conns.load(Ordering::SeqCst),
        0,
        "the backend never saw it"
    );
    let edges = f.p2.mesh.edges();
    let s = edges
        .get(&(
            "spiffe://acme/vps1/rogue".to_string(),
            "spiffe://acme/vps2/backend:5432".to_string(),
        ))
        .expect("edge recorded");
    assert_eq!((s.allowed, s.denied), (0, 1));

    // A source address that is no declared workload (the host itself) gets no identity at all.
    let h1 = f.h1.clone();
    assert!(request(&h1, FE_GATEWAY, msg).is_err());
    let e = f.wait_event("denial of an unknown source", |e| {
        e.policy
            .as_ref()
            .is_some_and(|p| p.reason == "unknown workload")
    });
    assert_eq!(e.device.hostname, "vps1");
    let p = e.policy.expect("policy facet");
    assert_eq!(p.source_identity, None);
    assert_eq!(
        p.destination_identity.as_deref(),
        Some("spiffe://acme/vps2/backend")
    );

    // The allowed pair still works alongside.
    assert_eq!(request(&f.fe, FE_GATEWAY, msg).expect("frontend"), ack(msg));
    assert_eq!(f.backend_conns.load(Ordering::SeqCst), 1);
    assert_eq!(f.p1.mesh.dropped_events() + f.p2.mesh.dropped_events(), 0);
}

#[test]
fn a_revoked_host_is_refused_and_cut_within_the_crl_refresh() {
    testkit::require!(Root);
    let refresh = 1;
    let mut f = Fleet::new("c", 3600, refresh);
    let msg = b"before revocation";
    assert_eq!(request(&f.fe, FE_GATEWAY, msg).expect("allowed"), ack(msg));
    let mut open = connect(&f.fe, FE_GATEWAY).expect("open before revocation");
    assert_eq!(exchange(&mut open, b"open").expect("open"), ack(b"open"));

    f.ca.revoke_host("vps1");
    // The stated bound: one refresh period after the CRL changes (plus scheduling slack).
    std::thread::sleep(Duration::from_secs(refresh) + Duration::from_millis(700));
    let r = request(&f.fe, FE_GATEWAY, b"after revocation");
    assert!(r.is_err(), "revoked host still served: {r:?}");
    let e = f.wait_event("handshake refusal", |e| {
        e.policy.as_ref().is_some_and(|p| p.reason == "handshake")
    });
    assert_eq!(e.device.hostname, "vps2");
    let p = e.policy.expect("policy");
    assert!(p.rule.to_lowercase().contains("revoked"), "{}", p.rule);
    assert_eq!(
        f.backend_conns.load(Ordering::SeqCst),
        2,
        "the refused one never got there"
    );
    // The connection opened before the revocation is cut too.
    let r = exchange(&mut open, b"still there?");
    assert!(
        r.is_err(),
        "open connection of a revoked host kept running: {r:?}"
    );
    f.wait_event("cut of the open connection", |e| {
        e.policy.as_ref().is_some_and(|p| {
            p.reason == "revoked"
                && p.source_identity.as_deref() == Some("spiffe://acme/vps1/frontend")
        })
    });
}

#[test]
fn rotation_does_not_break_the_next_connection() {
    testkit::require!(Root);
    // 10 s certificates: renewed in the background after 5 s, never used with less than 3.3 s
    // left.
    let f = Fleet::new("d", 10, 10);
    let start = Instant::now();
    let mut long = connect(&f.fe, FE_GATEWAY).expect("long-lived");
    assert_eq!(exchange(&mut long, b"first").expect("first"), ack(b"first"));
    let issued = f.p1.mesh.certificates_issued();
    assert!(issued >= 1);

    std::thread::sleep(Duration::from_millis(7500).saturating_sub(start.elapsed()));
    // Renewed in the background (past half of the lifetime), before any new connection asked.
    assert!(
        f.p1.mesh.certificates_issued() > issued,
        "the workload certificate was renewed"
    );
    let mut next = connect(&f.fe, FE_GATEWAY).expect("successor");
    assert_eq!(
        exchange(&mut next, b"second").expect("after rotation"),
        ack(b"second")
    );
    // Past the first certificates' expiry: the open connection still runs, new ones work.
    std::thread::sleep(Duration::from_millis(11_000).saturating_sub(start.elapsed()));
    assert_eq!(
        exchange(&mut long, b"still").expect("long-lived after expiry"),
        ack(b"still")
    );
    assert_eq!(
        exchange(&mut next, b"again").expect("successor"),
        ack(b"again")
    );
    assert_eq!(
        request(&f.fe, FE_GATEWAY, b"third").expect("third"),
        ack(b"third")
    );
}
