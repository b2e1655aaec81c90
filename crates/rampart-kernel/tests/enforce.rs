//! The enforcement programs against the real kernel and real containers: exec kills by name and
//! by file identity, connect and ingress decisions, isolation, and pinning (state that outlives
//! the `Enforcer` that wrote it).
//!
//! Each test pins under its own directory, so tests run in parallel and never touch the state of
//! a `rampart` on the same machine.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rampart_kernel::enforce::{
    cgroup_id, Direction, EnforceEvent, EnforceEventKind, EnforceEvents, Enforcer, ExecHook,
    FileId, NetPrefix, PortRule, Reason, Target, Verdict,
};
use testkit::{busybox_image, docker_ok, unique, TestContainer};

/// A pin directory removed (with everything attached under it) when dropped.
struct Pins(PathBuf);

impl Pins {
    fn new() -> Pins {
        Pins(PathBuf::from("/sys/fs/bpf/rampart-test").join(unique("enforce")))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = Enforcer::remove_all(&self.0);
    }
}

fn container_cgroup(c: &TestContainer) -> PathBuf {
    let unified = rampart_kernel::cgroup_layout()
        .unified
        .expect("a cgroup v2 hierarchy");
    // The container's cgroup v2 path, as its init sees it.
    let text = std::fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap();
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a v2 cgroup line");
    unified.join(rel.trim_start_matches('/'))
}

fn events_until(ev: &mut EnforceEvents, pred: impl Fn(&EnforceEvent) -> bool) -> Vec<EnforceEvent> {
    let end = Instant::now() + Duration::from_secs(3);
    let mut all = Vec::new();
    while Instant::now() < end {
        ev.wait(Duration::from_millis(50));
        ev.drain(&mut all);
        if all.iter().any(&pred) {
            break;
        }
    }
    all
}

/// Files in the test containers. busybox runs the applet named by argv[0], or by argv[1] when
/// argv[0]'s name starts with `busybox`; so copies are named busybox-*, and `xmrig` is a script
/// (its comm is `xmrig`, its executable file the shell).
const FIXTURES: &str = "printf '#!/bin/sh\\necho mined\\n' > /tmp/xmrig && chmod +x /tmp/xmrig \
    && cp /bin/busybox /tmp/busyboxminer && ln -s /tmp/busyboxminer /tmp/busybox-link \
    && cp /bin/busybox /tmp/busybox-tool";

#[test]
fn exec_by_name_and_by_file_identity_is_killed_before_it_prints() {
    testkit::require!(Root, Docker, Bpf);
    let pins = Pins::new();
    let img = busybox_image();
    let c = TestContainer::run("enf-exec", &[&img, "sleep", "600"]);
    let other = TestContainer::run("enf-exec-other", &[&img, "sleep", "600"]);
    for t in [&c, &other] {
        let out = t.exec(&["sh", "-c", FIXTURES]);
        assert!(out.status.success(), "{out:?}");
    }
    let cg = container_cgroup(&c);
    let mut enf = Enforcer::open(&pins.0).unwrap();
    let hook = enf.ensure_exec_hook().unwrap();
    assert_ne!(
        hook,
        ExecHook::Lsm,
        "this machine has no BPF-LSM; the fallback is under test"
    );
    let mut events = EnforceEvents::open(&pins.0).unwrap();

    // /tmp/busybox-tool by identity, as user space records it after hashing.
    let tool = PathBuf::from(format!("/proc/{}/root/tmp/busybox-tool", c.pid()));
    let id = FileId::from_metadata(&std::fs::metadata(&tool).unwrap());
    enf.put_exec_name(1, "xmrig", false, Verdict::Deny, 11)
        .unwrap();
    enf.put_exec_name(1, "busyboxminer", false, Verdict::Deny, 13)
        .unwrap();
    enf.put_exec_file(1, id, Some(Verdict::Deny), 12).unwrap();
    enf.set_target(
        cgroup_id(&cg).unwrap(),
        &Target {
            policy: 1,
            exec: true,
            exec_names: true,
            exec_files: true,
            exec_default: Verdict::Allow,
            ..Target::none()
        },
    )
    .unwrap();

    for argv in [
        &["/tmp/xmrig"][..],
        &["/tmp/busybox-link", "echo", "mined"],
        &["/tmp/busybox-tool", "echo", "mined"],
    ] {
        let out = c.exec(argv);
        assert_eq!(
            out.status.code(),
            Some(137),
            "{argv:?} killed by SIGKILL: {out:?}"
        );
        assert!(
            out.stdout.is_empty(),
            "{argv:?} printed before the kill: {out:?}"
        );
        // The same file in a container without a target runs.
        let out = other.exec(argv);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "mined",
            "{argv:?}: {out:?}"
        );
    }
    // Other programs in the same container run.
    let out = c.exec(&["echo", "fine"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fine");

    let evs = events_until(&mut events, |e| e.rule_id == 12);
    let find = |rule| {
        evs.iter()
            .find(|e| e.kind == EnforceEventKind::Exec && e.rule_id == rule)
            .unwrap_or_else(|| panic!("an event for rule {rule} in {evs:#?}"))
    };
    let by_comm = find(11);
    assert_eq!(by_comm.verdict, Verdict::Deny);
    assert_eq!(by_comm.reason, Reason::Rule);
    assert_eq!(by_comm.name, "xmrig");
    assert_eq!(
        by_comm.file_name, "busybox",
        "a script's executable is its interpreter"
    );
    let by_file_name = find(13);
    assert_eq!(by_file_name.file_name, "busyboxminer");
    assert_eq!(by_file_name.name, "busybox-link");
    let by_id = find(12);
    assert_eq!(by_id.file.map(|f| (f.dev, f.ino)), Some((id.dev, id.ino)));
    assert!(by_id.pid > 0 && by_id.ppid > 0);
    assert_eq!(enf.stats().exec_denied, 3);

    // Changing the file (its ctime) keeps the deny: a denied file stays denied.
    c.exec(&["chmod", "755", "/tmp/busybox-tool"]);
    let out = c.exec(&["/tmp/busybox-tool", "echo", "mined"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
}

#[test]
fn exec_paths_and_allow_lists() {
    testkit::require!(Root, Docker, Bpf);
    let pins = Pins::new();
    let img = busybox_image();
    let c = TestContainer::run("enf-path", &[&img, "sleep", "600"]);
    assert!(c
        .exec(&[
            "sh",
            "-c",
            "mkdir -p /opt/app && cp /bin/busybox /opt/app/busybox-run && cp /bin/busybox /tmp/busybox-x"
        ])
        .status
        .success());
    let cg = cgroup_id(&container_cgroup(&c)).unwrap();
    let mut enf = Enforcer::open(&pins.0).unwrap();
    enf.ensure_exec_hook().unwrap();
    // Allow-list: /bin/ and /opt/app/busybox-run, nothing else.
    enf.put_exec_path(2, "/bin/", true, Verdict::Allow, 1)
        .unwrap();
    enf.put_exec_path(2, "/opt/app/busybox-run", false, Verdict::Allow, 2)
        .unwrap();
    enf.set_target(
        cg,
        &Target {
            policy: 2,
            exec: true,
            exec_paths: true,
            exec_default: Verdict::Deny,
            ..Target::none()
        },
    )
    .unwrap();
    let out = c.exec(&["/opt/app/busybox-run", "echo", "allowed"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "allowed",
        "{out:?}"
    );
    let out = c.exec(&["/tmp/busybox-x", "echo", "nope"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let out = c.exec(&["/opt/app/../app/busybox-run", "echo", "allowed"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "allowed",
        "the path is the file's, not the string given"
    );

    // Audit-only: reported, not enforced.
    let mut events = EnforceEvents::open(&pins.0).unwrap();
    enf.set_target(
        cg,
        &Target {
            policy: 2,
            exec: true,
            exec_paths: true,
            exec_default: Verdict::Deny,
            audit_only: true,
            ..Target::none()
        },
    )
    .unwrap();
    let out = c.exec(&["/tmp/busybox-x", "echo", "audited"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "audited");
    let evs = events_until(&mut events, |e| e.verdict == Verdict::Audit);
    let e = evs
        .iter()
        .find(|e| e.verdict == Verdict::Audit)
        .expect("audit event");
    assert_eq!(e.path.as_deref(), Some("/tmp/busybox-x"));
    assert_eq!(e.reason, Reason::Default);
}

fn ip_of(c: &TestContainer) -> IpAddr {
    c.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
        .parse()
        .unwrap()
}

/// `echo | nc -w 2 IP PORT` from `from`; true when the listener's greeting came back.
fn reaches(from: &TestContainer, ip: IpAddr, port: u16) -> bool {
    let out = from.exec(&["sh", "-c", &format!("echo | nc -w 2 {ip} {port}")]);
    String::from_utf8_lossy(&out.stdout).contains("hello")
}

/// Policy `policy` on the cgroup `cg`: egress denied by default, allowed to ip:port/tcp.
fn egress_only_to(enf: &mut Enforcer, policy: u32, cg: &std::path::Path, ip: IpAddr, port: u16) {
    enf.put_net(
        policy,
        Direction::Egress,
        NetPrefix { addr: ip, len: 32 },
        &[PortRule {
            ports: (port, port),
            proto: Some(6),
            verdict: Verdict::Allow,
            rule_id: 1,
        }],
    )
    .unwrap();
    enf.set_target(
        cgroup_id(cg).unwrap(),
        &Target {
            policy,
            egress: true,
            egress_default: Verdict::Deny,
            ..Target::none()
        },
    )
    .unwrap();
}

/// A busybox container on `net` that answers "hello" on tcp/8080 and tcp/22 (IPv4 and IPv6).
fn greeter(prefix: &str, net: &str, img: &str) -> TestContainer {
    let cmd = "nc -ll -p 8080 -e echo hello & nc -ll -p 22 -e echo hello & wait";
    TestContainer::run(prefix, &["--network", net, img, "sh", "-c", cmd])
}

struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = testkit::docker(["network", "rm", &self.0]);
    }
}

#[test]
fn connects_and_inbound_syns_follow_the_rules_and_isolation_cuts_all() {
    testkit::require!(Root, Docker, Bpf);
    let pins = Pins::new();
    let img = busybox_image();
    let net = Network(unique("rp-enf-net"));
    docker_ok(["network", "create", "--internal", &net.0]);
    let a = TestContainer::run(
        "enf-a",
        &["--network", &net.0, &img, "sh", "-c", "sleep 600"],
    );
    let b = greeter("enf-b", &net.0, &img);
    let c = greeter("enf-c", &net.0, &img);
    let (ip_a, ip_b, ip_c) = (ip_of(&a), ip_of(&b), ip_of(&c));
    std::thread::sleep(Duration::from_millis(300));
    assert!(reaches(&a, ip_b, 8080) && reaches(&a, ip_b, 22) && reaches(&a, ip_c, 22));

    let mut enf = Enforcer::open(&pins.0).unwrap();
    let (cga, cgb) = (container_cgroup(&a), container_cgroup(&b));
    // a: egress default deny, allow b:8080/tcp.
    egress_only_to(&mut enf, 3, &cga, ip_b, 8080);
    // b: ingress default deny, allow a on 8080.
    enf.put_net(
        4,
        Direction::Ingress,
        NetPrefix {
            addr: ip_a,
            len: 32,
        },
        &[PortRule {
            ports: (8080, 8080),
            proto: Some(6),
            verdict: Verdict::Allow,
            rule_id: 1,
        }],
    )
    .unwrap();
    enf.set_target(
        cgroup_id(&cgb).unwrap(),
        &Target {
            policy: 4,
            ingress: true,
            ingress_default: Verdict::Deny,
            ..Target::none()
        },
    )
    .unwrap();
    assert!(enf.attach_cgroup(&a.id, &cga).unwrap());
    assert!(
        !enf.attach_cgroup(&a.id, &cga).unwrap(),
        "second attach is a no-op"
    );
    enf.attach_cgroup(&b.id, &cgb).unwrap();

    assert!(reaches(&a, ip_b, 8080), "allowed by both rules");
    assert!(!reaches(&a, ip_b, 22), "a's egress denies b:22");
    assert!(!reaches(&a, ip_c, 8080), "a's egress denies c");
    assert!(!reaches(&c, ip_b, 8080), "b's ingress drops c's SYN");
    assert!(reaches(&b, ip_c, 22), "b's egress is not checked");

    // The state outlives this Enforcer.
    drop(enf);
    assert!(!reaches(&a, ip_b, 22));
    let mut enf = Enforcer::open(&pins.0).unwrap();

    // Isolation of c (not otherwise selected): nothing in or out, except the allow-list.
    let cgc = container_cgroup(&c);
    let idc = cgroup_id(&cgc).unwrap();
    enf.attach_cgroup(&c.id, &cgc).unwrap();
    enf.set_isolate_allow(
        idc,
        &[NetPrefix {
            addr: ip_a,
            len: 32,
        }],
    )
    .unwrap();
    enf.set_target(
        idc,
        &Target {
            isolated: true,
            ..Target::none()
        },
    )
    .unwrap();
    assert!(!reaches(&b, ip_c, 22), "isolated: inbound dropped");
    let out = c.exec(&["sh", "-c", &format!("echo | nc -w 2 {ip_b} 8080")]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hello"));
    // Release: back to normal.
    enf.remove_target(idc).unwrap();
    enf.clear_isolate_allow(idc).unwrap();
    assert!(enf.detach_cgroup(&c.id).unwrap());
    assert!(reaches(&b, ip_c, 22), "released");
    assert!(enf.stats().net_denied >= 4);
}

/// From `from` (an image with perl), a TCP connect to [ip]:port, the SYN carrying an 8-byte
/// destination-options header when `dstopts` (sticky IPV6_DSTOPTS, 41/59: what any sender with
/// CAP_NET_RAW, or any remote host crafting its packets, can put between the IPv6 header and
/// TCP); true when the listener's greeting came back.
fn reaches6(from: &TestContainer, ip: IpAddr, port: u16, dstopts: bool) -> bool {
    let script = "use Socket qw(AF_INET6 SOCK_STREAM inet_pton pack_sockaddr_in6); \
        $SIG{ALRM} = sub { print qq(timeout\\n); exit 0 }; alarm 3; \
        socket(my $s, AF_INET6, SOCK_STREAM, 0) or die qq(socket: $!); \
        if ($ARGV[2]) { \
            setsockopt($s, 41, 59, qq(\\x00\\x00\\x01\\x04\\x00\\x00\\x00\\x00)) \
                or die qq(IPV6_DSTOPTS: $!); \
            length(getsockopt($s, 41, 59)) == 8 or die qq(IPV6_DSTOPTS not set); \
        } \
        connect($s, pack_sockaddr_in6($ARGV[1], inet_pton(AF_INET6, $ARGV[0]))) \
            or do { print qq(connect: $!\\n); exit 0 }; \
        syswrite($s, qq(\\n)); my $b = q(); sysread($s, $b, 100); print $b;";
    let out = from.exec(&[
        "perl",
        "-e",
        script,
        &ip.to_string(),
        &port.to_string(),
        if dstopts { "1" } else { "0" },
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).contains("hello")
}

/// An inbound rule holds for IPv6 segments whatever extension headers precede TCP: a SYN with a
/// destination-options header is still a SYN to port 22. (Before, the parser read the next
/// header after the fixed 40 bytes as the transport protocol: such a SYN matched no tcp/22 rule
/// and was let in by the default.)
#[test]
fn an_ipv6_syn_behind_extension_headers_meets_the_ingress_rules() {
    testkit::require!(Root, Docker, Bpf);
    let pins = Pins::new();
    let img = busybox_image();
    let debian = testkit::debian_image();
    let net = Network(unique("rp-enf-net6"));
    docker_ok([
        "network",
        "create",
        "--internal",
        "--ipv6",
        "--subnet",
        "fd72:7a6d:e0f::/64",
        &net.0,
    ]);
    let b = greeter("enf6-b", &net.0, &img);
    let c = TestContainer::run("enf6-c", &["--network", &net.0, &debian, "sleep", "600"]);
    let ip_b: IpAddr = b
        .inspect("{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}")
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for (port, dstopts) in [(22, false), (22, true), (8080, true)] {
        assert!(
            reaches6(&c, ip_b, port, dstopts),
            "before any rule: port {port}, destination options {dstopts}"
        );
    }

    // b: ingress default allow, tcp/22 denied from anywhere.
    let mut enf = Enforcer::open(&pins.0).unwrap();
    let cgb = container_cgroup(&b);
    enf.put_net(
        6,
        Direction::Ingress,
        NetPrefix {
            addr: "::".parse().unwrap(),
            len: 0,
        },
        &[PortRule {
            ports: (22, 22),
            proto: Some(6),
            verdict: Verdict::Deny,
            rule_id: 1,
        }],
    )
    .unwrap();
    enf.set_target(
        cgroup_id(&cgb).unwrap(),
        &Target {
            policy: 6,
            ingress: true,
            ingress_default: Verdict::Allow,
            ..Target::none()
        },
    )
    .unwrap();
    enf.attach_cgroup(&b.id, &cgb).unwrap();

    assert!(!reaches6(&c, ip_b, 22, false), "tcp/22 denied");
    assert!(
        !reaches6(&c, ip_b, 22, true),
        "a SYN behind destination options is still a SYN to 22"
    );
    assert!(
        reaches6(&c, ip_b, 8080, true),
        "the default lets other ports in, extension headers or not"
    );
    assert!(reaches6(&c, ip_b, 8080, false));

    // A remote host is not limited to what a socket adds: a hand-made SYN behind ten
    // destination-options headers (more than the programs walk) is judged by the listener it
    // reaches. Sent from a raw socket in c's network namespace (data/syn6.py, host python3);
    // b's kernel answers such a SYN (the 8080 control), so a missing SYN+ACK on 22 is the rule.
    let ip_c: IpAddr = c
        .inspect("{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}")
        .parse()
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/syn6.py");
    let syn_ack = |port: u16, headers: u32| {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &c.pid().to_string(), "-n", "python3", script])
            .args([ip_c.to_string(), ip_b.to_string()])
            .args([port.to_string(), headers.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).contains("synack")
    };
    assert!(syn_ack(8080, 10), "b answers a SYN behind ten headers");
    assert!(
        !syn_ack(22, 10),
        "a SYN behind ten headers to 22 is dropped"
    );
    assert!(!syn_ack(22, 1), "a SYN behind one header to 22 is dropped");
    assert!(enf.stats().net_denied >= 4);
}

/// From `from` (an image with perl), an outbound attempt to ip:port spelt `how`: `connect` (the
/// control), `tfo` (TCP Fast Open: sendto with MSG_FASTOPEN connects inside sendmsg, no connect
/// call), `mapped` (an AF_INET6 socket to ::ffff:ip, how dual-stack programs reach IPv4), `udp`
/// (sendto on an unconnected UDP socket). Prints the greeting, or the error.
fn outbound(from: &TestContainer, how: &str, ip: IpAddr, port: u16) -> String {
    let script = "use Socket qw(:all); \
        my ($how, $ip, $port) = @ARGV; \
        $SIG{ALRM} = sub { print qq(timeout\\n); exit 0 }; alarm 3; \
        my $s; my $to; \
        if ($how eq q(mapped)) { \
            socket($s, AF_INET6, SOCK_STREAM, 0) or die qq(socket: $!); \
            $to = pack_sockaddr_in6($port, inet_pton(AF_INET6, qq(::ffff:$ip))); \
        } elsif ($how eq q(udp)) { \
            socket($s, AF_INET, SOCK_DGRAM, 0) or die qq(socket: $!); \
            $to = pack_sockaddr_in($port, inet_aton($ip)); \
            defined(send($s, qq(x\\n), 0, $to)) or do { print qq(send: $!\\n); exit 0 }; \
            print qq(sent\\n); exit 0; \
        } else { \
            socket($s, AF_INET, SOCK_STREAM, 0) or die qq(socket: $!); \
            $to = pack_sockaddr_in($port, inet_aton($ip)); \
        } \
        if ($how eq q(tfo)) { \
            defined(send($s, qq(\\n), 0x20000000, $to)) or do { print qq(send: $!\\n); exit 0 }; \
        } else { \
            connect($s, $to) or do { print qq(connect: $!\\n); exit 0 }; \
            syswrite($s, qq(\\n)); \
        } \
        my $b = q(); sysread($s, $b, 100); print $b;";
    let out = from.exec(&[
        "perl",
        "-e",
        script,
        how,
        &ip.to_string(),
        &port.to_string(),
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An egress rule holds however the container spells the connection: TCP Fast Open (the
/// connect happens inside sendto), a dual-stack IPv6 socket to the IPv4-mapped address, UDP
/// datagrams. The default denies, b:8080/tcp is allowed.
#[test]
fn outbound_rules_hold_for_every_way_to_connect() {
    testkit::require!(Root, Docker, Bpf);
    let pins = Pins::new();
    let img = busybox_image();
    let debian = testkit::debian_image();
    let net = Network(unique("rp-enf-spell"));
    docker_ok(["network", "create", "--internal", &net.0]);
    let b = greeter("enf-spell-b", &net.0, &img);
    let a = TestContainer::run(
        "enf-spell-a",
        &["--network", &net.0, &debian, "sleep", "600"],
    );
    let ip_b = ip_of(&b);
    std::thread::sleep(Duration::from_millis(300));
    for how in ["connect", "tfo", "mapped"] {
        for port in [8080, 22] {
            let got = outbound(&a, how, ip_b, port);
            assert!(
                got.contains("hello"),
                "before any rule, {how} to {port}: {got}"
            );
        }
    }

    let mut enf = Enforcer::open(&pins.0).unwrap();
    let cga = container_cgroup(&a);
    egress_only_to(&mut enf, 7, &cga, ip_b, 8080);
    enf.attach_cgroup(&a.id, &cga).unwrap();

    for how in ["connect", "tfo", "mapped"] {
        let got = outbound(&a, how, ip_b, 8080);
        assert!(got.contains("hello"), "{how} to the allowed 8080: {got}");
        let got = outbound(&a, how, ip_b, 22);
        assert!(
            !got.contains("hello") && got.contains("not permitted"),
            "{how} to 22 must fail with EPERM: {got}"
        );
    }
    let got = outbound(&a, "udp", ip_b, 8080);
    assert!(got.contains("not permitted"), "udp is not allowed: {got}");
    assert!(enf.stats().net_denied >= 4);
}
