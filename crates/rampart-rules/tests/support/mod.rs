//! Builders for the events the sensor and enrichment produce, as the rule tests need them.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::IpAddr;
use std::sync::Arc;

use rampart_event::{
    Ancestor, AuthInfo, AuthOutcome, Container, ContainerRuntime, Device, DnsInfo, Endpoint, Event,
    EventId, EventKind, FileInfo, LifecycleInfo, NetDirection, NetInfo, PayloadInfo, PrivilegeInfo,
    Process, ResourceInfo, SocketInfo,
};
use rampart_rules::{Detection, Engine, Loader, Options, RuleMatching};

pub const T0: u64 = 1_700_000_000_000_000_000;
pub const SEC: u64 = 1_000_000_000;

/// A container running `image`.
pub fn container(image: &str) -> Arc<Container> {
    let mut c = Container::unnamed("c0ffee".repeat(10) + "abcd", ContainerRuntime::Docker);
    c.name = "web".into();
    c.image = image.into();
    Arc::new(c)
}

/// A root process `name` with argv `args` (argv[0] included), started by `parent`.
pub fn process(name: &str, args: &[&str]) -> Process {
    Process {
        pid: 4242,
        tid: 4242,
        ppid: 4000,
        vpid: Some(42),
        name: name.into(),
        exe: format!("/usr/bin/{name}"),
        args: args.iter().map(|s| s.to_string()).collect(),
        cwd: "/app".into(),
        uid: 0,
        euid: 0,
        user: Some("root".into()),
        loginuid: u32::MAX,
        start_time_ns: T0 - 60 * SEC,
        ancestors: vec![
            ancestor(4000, "node", &["node", "server.js"]),
            ancestor(1, "containerd-shim", &["containerd-shim"]),
        ],
        ..Process::default()
    }
}

pub fn ancestor(pid: u32, name: &str, args: &[&str]) -> Ancestor {
    Ancestor {
        pid,
        name: name.into(),
        exe: format!("/usr/bin/{name}"),
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// An event builder: container `nginx:1.25` unless [`B::host`] is called.
pub struct B(pub Event);

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl B {
    pub fn new(kind: EventKind, syscall: &'static str) -> B {
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut e = Event::new(
            EventId::new(0xfeed, seq),
            T0,
            kind,
            Arc::new(Device {
                hostname: "vps1".into(),
                region: None,
            }),
        );
        e.syscall = Some(syscall.into());
        e.result = Some(0);
        e.container = Some(container("nginx:1.25"));
        e.process = Some(Arc::new(process("nginx", &["nginx"])));
        B(e)
    }

    pub fn exec(name: &str, args: &[&str]) -> B {
        let mut b = B::new(EventKind::ProcessExec, "execve");
        b.0.process = Some(Arc::new(process(name, args)));
        b
    }

    pub fn open(path: &str, flags: u32) -> B {
        let mut b = B::new(EventKind::FileOpen, "openat");
        b.0.result = Some(3);
        b.0.file = Some(FileInfo {
            flags: Some(flags),
            fd: Some(3),
            ..FileInfo::at(path)
        });
        b
    }

    pub fn read(path: &str) -> B {
        B::open(path, 0)
    }

    pub fn write(path: &str) -> B {
        B::open(path, 0o1101)
    }

    pub fn file(kind: EventKind, syscall: &'static str, path: &str) -> B {
        let mut b = B::new(kind, syscall);
        b.0.file = Some(FileInfo::at(path));
        b
    }

    pub fn connect(ip: &str, port: u16) -> B {
        let mut b = B::new(EventKind::NetConnect, "connect");
        let ip: IpAddr = ip.parse().expect("ip");
        let v6 = ip.is_ipv6();
        b.0.network = Some(NetInfo {
            protocol: "tcp".into(),
            family: if v6 { "inet6" } else { "inet" }.into(),
            direction: NetDirection::Outbound,
            src: Some(Endpoint {
                ip: if v6 {
                    "::1".parse().expect("ip")
                } else {
                    "172.17.0.2".parse().expect("ip")
                },
                port: 40000,
            }),
            dst: Some(Endpoint { ip, port }),
            unix_path: None,
            remote_names: Vec::new(),
            remote_country: None,
        });
        b
    }

    pub fn connect_unix(path: &str) -> B {
        let mut b = B::new(EventKind::NetConnect, "connect");
        b.0.network = Some(NetInfo {
            protocol: "stream".into(),
            family: "unix".into(),
            direction: NetDirection::Outbound,
            src: None,
            dst: None,
            unix_path: Some(path.into()),
            remote_names: Vec::new(),
            remote_country: None,
        });
        b
    }

    pub fn listen(port: u16) -> B {
        let mut b = B::connect("0.0.0.0", port);
        b.0.kind = EventKind::NetListen;
        b.0.syscall = Some("listen".into());
        if let Some(n) = b.0.network.as_mut() {
            n.direction = NetDirection::Listen;
            n.src = None;
        }
        b
    }

    pub fn dns(query: &str) -> B {
        let mut b = B::new(EventKind::DnsQuery, "dns");
        b.0.result = None;
        b.0.dns = Some(DnsInfo {
            id: 7,
            query: query.into(),
            qtype: "A".into(),
            rcode: None,
            answers: Vec::new(),
            server: None,
        });
        b
    }

    /// A `net.payload` event as the sensor's decoder makes it from the request `text`: method,
    /// agent and user as given, the keys of `params` read from `text`.
    pub fn payload(
        text: &str,
        method: Option<&str>,
        agent: Option<&str>,
        user: Option<&str>,
        port: u16,
    ) -> B {
        let mut b = B::connect("172.17.0.9", port);
        b.0.kind = EventKind::NetPayload;
        b.0.syscall = None;
        b.0.result = None;
        b.0.payload = Some(PayloadInfo {
            protocol: "jsonrpc".into(),
            method: method.map(Into::into),
            agent: agent.map(Into::into),
            user: user.map(Into::into),
            keys: serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| {
                    v.get("params")
                        .and_then(|p| p.as_object())
                        .map(|o| o.keys().cloned().collect())
                })
                .unwrap_or_default(),
            len: text.len() as u32,
        });
        b
    }

    /// A `net.socket` event.
    pub fn socket(domain: &str, sock_type: &str, protocol: u32) -> B {
        let mut b = B::new(EventKind::NetSocket, "socket");
        b.0.result = Some(3);
        b.0.socket = Some(SocketInfo {
            domain: domain.into(),
            sock_type: sock_type.into(),
            protocol,
        });
        b
    }

    pub fn auth(outcome: AuthOutcome, src: &str) -> B {
        let mut b = B::new(EventKind::AuthLogin, "auth");
        b.0.result = None;
        b.0.process = None;
        b.0.auth = Some(AuthInfo {
            outcome,
            user: "root".into(),
            method: Some("password".into()),
            src_ip: Some(src.parse().expect("ip")),
            src_port: Some(50000),
            service: "sshd".into(),
            log_source: "/var/log/auth.log".into(),
            message: "Failed password for root".into(),
        });
        b
    }

    pub fn privilege(kind: EventKind, syscall: &'static str, p: PrivilegeInfo) -> B {
        let mut b = B::new(kind, syscall);
        b.0.privilege = Some(p);
        b
    }

    pub fn stats(cpu_millicores: u64, limit: Option<u64>, high_cpu_ms: u64) -> B {
        let mut b = B::new(EventKind::ContainerStats, "container");
        b.0.result = None;
        b.0.process = None;
        b.0.resources = Some(ResourceInfo {
            cpu_millicores,
            cpu_limit_millicores: limit,
            memory_bytes: 100 << 20,
            pids: 12,
            high_cpu_ms,
            interval_ms: 10_000,
            ..ResourceInfo::default()
        });
        b
    }

    pub fn docker_exec(command: &str, tty: bool) -> B {
        let mut b = B::new(EventKind::ContainerExec, "container");
        b.0.result = None;
        b.0.process = None;
        b.0.lifecycle = Some(LifecycleInfo {
            action: format!("exec_start: {command}"),
            exec_command: Some(command.into()),
            exec_tty: Some(tty),
            exec_user: Some("root".into()),
            exit_code: None,
        });
        b
    }

    /// On the host, outside any container.
    pub fn host(mut self) -> B {
        self.0.container = None;
        self
    }

    pub fn image(mut self, image: &str) -> B {
        self.0.container = Some(container(image));
        self
    }

    pub fn at(mut self, secs: u64) -> B {
        self.0.time_ns = T0 + secs * SEC;
        self
    }

    pub fn result(mut self, r: i64) -> B {
        self.0.result = Some(r);
        self
    }

    /// Changes the process (cloned from the event's).
    pub fn proc(mut self, f: impl FnOnce(&mut Process)) -> B {
        let mut p = self.0.process.as_deref().cloned().unwrap_or_default();
        f(&mut p);
        self.0.process = Some(Arc::new(p));
        self
    }

    pub fn file_info(mut self, f: impl FnOnce(&mut FileInfo)) -> B {
        let mut fi = self.0.file.clone().unwrap_or_default();
        f(&mut fi);
        self.0.file = Some(fi);
        self
    }

    pub fn net(mut self, f: impl FnOnce(&mut NetInfo)) -> B {
        if let Some(n) = self.0.network.as_mut() {
            f(n);
        }
        self
    }

    pub fn build(self) -> Event {
        self.0
    }
}

/// An engine with the default rules, every matching rule reported.
pub fn default_engine() -> Engine {
    let mut loader = Loader::new();
    loader.add_default_rules().expect("default rules load");
    let rules = loader
        .compile(Options {
            rule_matching: RuleMatching::All,
            ..Options::default()
        })
        .expect("default rules compile");
    Engine::new(Arc::new(rules))
}

/// The names of the rules that fired for `events`, fed in order to one engine.
pub fn fired(engine: &mut Engine, events: &[Event]) -> Vec<Detection> {
    let mut out = Vec::new();
    for e in events {
        engine.process(e, &mut out);
    }
    out
}

pub fn names(d: &[Detection]) -> Vec<String> {
    d.iter().map(|d| d.alert.rule.clone()).collect()
}
