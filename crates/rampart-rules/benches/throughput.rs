//! Rule-engine throughput and allocations per event.
//!
//! `cargo bench -p rampart-rules --bench throughput [-- EVENTS]`
//!
//! Generates a stream of distinct events shaped like a busy Docker host (file opens for
//! writing, execs with ancestry, connections, DNS, forks and exits, container stats, logins,
//! privilege syscalls; 20 containers plus the host; about one event in a thousand malicious) and
//! runs it, on one thread, through:
//!
//! 1. an engine with no rules (the baseline: event-type lookup and per-event reset),
//! 2. Rampart's default rules,
//! 3. the default rules plus a generated user rule file of 400 rules with large lists,
//! 4. the default rules plus Falco's three rule files (vendored under `tests/fixtures/falco/`).
//!
//! A counting global allocator counts every allocation made inside `Engine::process`. Events are
//! generated in chunks outside the timed region. Printed: events/s, ns/event, ratio to the
//! baseline, allocations per event overall and for events that raised no alert.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{
    Ancestor, AuthInfo, AuthOutcome, Container, ContainerRuntime, Device, DnsInfo, Endpoint, Event,
    EventId, EventKind, FileInfo, NetDirection, NetInfo, PrivilegeInfo, Process, ResourceInfo,
};
use rampart_rules::{Engine, Loader, Options, RuleSet};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// xorshift64*: a fixed seed makes every run generate the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

struct World {
    device: Arc<Device>,
    containers: Vec<Arc<Container>>,
    procs: Vec<Arc<Process>>,
    /// Long-running application processes (indexes into `procs`).
    apps: Vec<usize>,
    /// Short-lived children that do not download (indexes into `procs`).
    workers: Vec<usize>,
    rng: Rng,
    seq: u64,
    time: u64,
}

const APPS: &[(&str, &str, &[&str])] = &[
    ("nginx:1.25", "nginx", &["nginx", "-g", "daemon off;"]),
    ("node:20", "node", &["node", "server.js"]),
    (
        "python:3.12",
        "python3",
        &["python3", "-m", "gunicorn", "app:app"],
    ),
    (
        "postgres:16",
        "postgres",
        &["postgres", "-c", "shared_buffers=256MB"],
    ),
    ("redis:7", "redis-server", &["redis-server", "*:6379"]),
    ("php:8-fpm", "php-fpm", &["php-fpm: pool www"]),
];

const CHILDREN: &[(&str, &[&str])] = &[
    ("sh", &["sh", "-c", "date +%s"]),
    ("sh", &["sh", "-c", "pg_isready -q"]),
    ("curl", &["curl", "-fsS", "http://localhost:8080/health"]),
    ("ls", &["ls", "-la", "/app"]),
    ("cat", &["cat", "/app/config.yaml"]),
    ("gzip", &["gzip", "-9", "/var/log/app/old.log"]),
    (
        "convert",
        &["convert", "in.png", "-resize", "50%", "out.png"],
    ),
    ("git", &["git", "rev-parse", "HEAD"]),
    ("python3", &["python3", "manage.py", "migrate"]),
    ("bash", &["bash", "/docker-entrypoint.sh"]),
];

impl World {
    fn new() -> World {
        let device = Arc::new(Device {
            hostname: "vps-bench".into(),
            region: Some("eu-de".into()),
        });
        let mut containers = Vec::new();
        for i in 0..20u64 {
            let (image, _, _) = APPS[i as usize % APPS.len()];
            let mut c = Container::unnamed(format!("{i:064x}"), ContainerRuntime::Docker);
            c.name = format!("app-{i}");
            c.image = image.into();
            containers.push(Arc::new(c));
        }
        let mut procs = Vec::new();
        for i in 0..600u32 {
            let (_, name, args) = APPS[i as usize % APPS.len()];
            let (cname, cargs) = CHILDREN[(i as usize / APPS.len()) % CHILDREN.len()];
            let child = i % 3 != 0;
            let (n, a) = if child { (cname, cargs) } else { (name, args) };
            // Shells are started by the runtime (healthchecks, `docker exec`) or by scripts.
            let parent = match (child, cname) {
                (true, "sh") => "containerd-shim",
                (true, "bash") => "tini",
                _ => name,
            };
            procs.push(Arc::new(Process {
                pid: 1000 + i,
                tid: 1000 + i,
                ppid: 900 + i,
                vpid: Some(1 + i % 50),
                name: n.into(),
                exe: format!("/usr/bin/{n}"),
                args: a.iter().map(|s| s.to_string()).collect(),
                cwd: "/app".into(),
                uid: if i % 4 == 0 { 0 } else { 1000 },
                euid: if i % 4 == 0 { 0 } else { 1000 },
                user: Some(if i % 4 == 0 { "root" } else { "app" }.into()),
                loginuid: u32::MAX,
                start_time_ns: 1_700_000_000_000_000_000,
                stdin_type: Some("null".into()),
                stdout_type: Some("pipe".into()),
                ancestors: vec![
                    Ancestor {
                        pid: 900 + i,
                        name: parent.into(),
                        exe: format!("/usr/bin/{parent}"),
                        args: args.iter().map(|s| s.to_string()).collect(),
                    },
                    Ancestor {
                        pid: 1,
                        name: "containerd-shim".into(),
                        exe: "/usr/bin/containerd-shim-runc-v2".into(),
                        args: vec!["containerd-shim-runc-v2".into()],
                    },
                ],
                ..Process::default()
            }));
        }
        let apps = (0..procs.len()).filter(|i| i % 3 == 0).collect();
        let workers = (0..procs.len())
            .filter(|i| i % 3 != 0 && procs[*i].name != "curl")
            .collect();
        World {
            device,
            containers,
            procs,
            apps,
            workers,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            seq: 0,
            time: 1_700_000_100_000_000_000,
        }
    }

    fn base(&mut self, kind: EventKind, syscall: &'static str) -> Event {
        self.seq += 1;
        // About 50,000 events per second of host time.
        self.time += 20_000;
        let mut e = Event::new(
            EventId::new(0xbe4c, self.seq),
            self.time,
            kind,
            self.device.clone(),
        );
        e.syscall = Some(syscall.into());
        e.result = Some(0);
        let c = self.rng.below(21) as usize;
        e.container = self.containers.get(c).cloned();
        e.process = Some(self.rng.pick(&self.procs).clone());
        e
    }

    /// An event by an application process (nine in ten) or a non-downloading child.
    fn by_app(&mut self, kind: EventKind, syscall: &'static str) -> Event {
        let mut e = self.base(kind, syscall);
        let pool = if self.rng.below(10) == 0 {
            &self.workers
        } else {
            &self.apps
        };
        let i = *self.rng.pick(pool);
        e.process = Some(self.procs[i].clone());
        e
    }

    fn event(&mut self) -> Event {
        let roll = self.rng.below(1000);
        if roll == 0 {
            return self.malicious();
        }
        match roll {
            // File opens for writing and sensitive reads (the sensor drops plain reads).
            1..=380 => {
                let mut e = self.by_app(EventKind::FileOpen, "openat");
                let n = self.rng.below(5000);
                let path = match self.rng.below(6) {
                    0 => format!("/app/uploads/{n}.jpg"),
                    1 => format!("/var/log/app/{n}.log"),
                    2 => format!("/tmp/cache-{n}"),
                    3 => format!("/var/lib/postgresql/data/base/{n}"),
                    4 => format!("/app/node_modules/.cache/{n}.json"),
                    _ => format!("/run/app/{n}.sock.lock"),
                };
                e.result = Some(5);
                e.file = Some(FileInfo {
                    // Logs are appended to; other files are created or truncated.
                    flags: Some(if path.starts_with("/var/log") || n.is_multiple_of(3) {
                        0o2101
                    } else {
                        0o1101
                    }),
                    mode: Some(0o644),
                    fd: Some(5),
                    ..FileInfo::at(path)
                });
                e
            }
            381..=530 => self.base(EventKind::ProcessExec, "execve"),
            531..=640 => {
                let kind = if roll.is_multiple_of(2) {
                    EventKind::ProcessFork
                } else {
                    EventKind::ProcessExit
                };
                let sys = if kind == EventKind::ProcessFork {
                    "clone"
                } else {
                    "procexit"
                };
                let mut e = self.base(kind, sys);
                if kind == EventKind::ProcessExit {
                    e.result = None;
                    e.exit = Some(rampart_event::ExitInfo {
                        code: 0,
                        signal: None,
                        core_dumped: false,
                    });
                }
                e
            }
            641..=820 => {
                let mut e = self.by_app(EventKind::NetConnect, "connect");
                let (ip, port): (IpAddr, u16) = match self.rng.below(5) {
                    0 => (
                        "172.17.0.3"
                            .parse()
                            .unwrap_or(IpAddr::from([172, 17, 0, 3])),
                        5432,
                    ),
                    1 => (IpAddr::from([172, 17, 0, 4]), 6379),
                    2 => (IpAddr::from([140, 82, 121, 4]), 443),
                    3 => (IpAddr::from([151, 101, 1, 69]), 443),
                    _ => (IpAddr::from([10, 0, 0, 2]), 53),
                };
                e.network = Some(NetInfo {
                    protocol: "tcp".into(),
                    family: "inet".into(),
                    direction: NetDirection::Outbound,
                    src: Some(Endpoint {
                        ip: IpAddr::from([172, 17, 0, 2]),
                        port: 40000 + self.rng.below(20000) as u16,
                    }),
                    dst: Some(Endpoint { ip, port }),
                    unix_path: None,
                    remote_names: Vec::new(),
                    remote_country: Some("DE".into()),
                });
                e.result = Some(if self.rng.below(10) == 0 { -115 } else { 0 });
                e
            }
            821..=880 => {
                let mut e = self.base(EventKind::NetAccept, "accept4");
                e.network = Some(NetInfo {
                    protocol: "tcp".into(),
                    family: "inet".into(),
                    direction: NetDirection::Inbound,
                    src: Some(Endpoint {
                        ip: IpAddr::from([203, 0, 113, (self.rng.below(250) + 1) as u8]),
                        port: 50000,
                    }),
                    dst: Some(Endpoint {
                        ip: IpAddr::from([172, 17, 0, 2]),
                        port: 80,
                    }),
                    unix_path: None,
                    remote_names: Vec::new(),
                    remote_country: None,
                });
                e
            }
            881..=930 => {
                let mut e = self.base(EventKind::DnsQuery, "dns");
                e.result = None;
                let q = *self.rng.pick(&[
                    "api.github.com",
                    "registry.npmjs.org",
                    "db.internal",
                    "pypi.org",
                    "s3.eu-central-1.amazonaws.com",
                ]);
                e.dns = Some(DnsInfo {
                    id: 1,
                    query: q.into(),
                    qtype: "A".into(),
                    rcode: None,
                    answers: Vec::new(),
                    server: None,
                });
                e
            }
            931..=960 => {
                let (kind, sys) = *self.rng.pick(&[
                    (EventKind::FileUnlink, "unlinkat"),
                    (EventKind::FileRename, "renameat2"),
                    (EventKind::FileChmod, "fchmodat"),
                ]);
                let mut e = self.by_app(kind, sys);
                let n = self.rng.below(1000);
                e.file = Some(FileInfo {
                    new_path: Some(format!("/tmp/upload-{n}.done")),
                    mode: Some(0o640),
                    ..FileInfo::at(format!("/tmp/upload-{n}"))
                });
                e
            }
            961..=975 => {
                let mut e = self.base(EventKind::ContainerStats, "container");
                e.process = None;
                e.result = None;
                e.resources = Some(ResourceInfo {
                    cpu_millicores: self.rng.below(1500),
                    cpu_limit_millicores: Some(2000),
                    memory_bytes: 200 << 20,
                    pids: 20,
                    high_cpu_ms: 0,
                    interval_ms: 10_000,
                    ..ResourceInfo::default()
                });
                e
            }
            976..=985 => {
                let mut e = self.base(EventKind::PrivSetuid, "setuid");
                e.privilege = Some(PrivilegeInfo {
                    uid: Some(1000),
                    ..PrivilegeInfo::default()
                });
                e
            }
            986..=990 => {
                let mut e = self.base(EventKind::AuthLogin, "auth");
                e.container = None;
                e.process = None;
                e.result = None;
                e.auth = Some(AuthInfo {
                    outcome: if self.rng.below(5) == 0 {
                        AuthOutcome::Success
                    } else {
                        AuthOutcome::Failure
                    },
                    user: "root".into(),
                    method: Some("password".into()),
                    src_ip: Some(IpAddr::from([198, 51, 100, (self.rng.below(200)) as u8])),
                    src_port: Some(40000),
                    service: "sshd".into(),
                    log_source: "/var/log/auth.log".into(),
                    message: "Failed password".into(),
                });
                e
            }
            _ => {
                let mut e = self.base(EventKind::FileOpen, "openat");
                e.file = Some(FileInfo {
                    flags: Some(0),
                    fd: Some(3),
                    ..FileInfo::at("/etc/passwd")
                });
                e.result = Some(3);
                e
            }
        }
    }

    /// One of a few attacks: a miner, a reverse shell, a shadow read, a drop-and-execute.
    fn malicious(&mut self) -> Event {
        match self.rng.below(4) {
            0 => {
                let mut e = self.base(EventKind::ProcessExec, "execve");
                let mut p = (**e.process.as_ref().unwrap_or(&self.procs[0])).clone();
                p.name = "xmrig".into();
                p.args = vec![
                    "xmrig".into(),
                    "-o".into(),
                    "stratum+tcp://pool.example:3333".into(),
                ];
                e.process = Some(Arc::new(p));
                e
            }
            1 => {
                let mut e = self.base(EventKind::ProcessExec, "execve");
                let mut p = (**e.process.as_ref().unwrap_or(&self.procs[0])).clone();
                p.name = "bash".into();
                p.args = vec!["bash".into(), "-i".into()];
                p.stdin_type = Some("ipv4".into());
                e.process = Some(Arc::new(p));
                e
            }
            2 => {
                let mut e = self.base(EventKind::FileOpen, "openat");
                e.file = Some(FileInfo {
                    flags: Some(0),
                    fd: Some(3),
                    ..FileInfo::at("/etc/shadow")
                });
                e.result = Some(3);
                e
            }
            _ => {
                let mut e = self.base(EventKind::ProcessExec, "execve");
                let mut p = (**e.process.as_ref().unwrap_or(&self.procs[0])).clone();
                p.exe_upper_layer = true;
                e.process = Some(Arc::new(p));
                e.container = Some(self.containers[0].clone());
                e
            }
        }
    }
}

/// A large user rule file: 400 rules over exec, file and network events, with big lists.
fn user_rules() -> String {
    let mut s = String::new();
    let names: Vec<String> = (0..300).map(|i| format!("tool{i}")).collect();
    s.push_str(&format!(
        "- list: user_tools\n  items: [{}]\n",
        names.join(", ")
    ));
    let dirs: Vec<String> = (0..200).map(|i| format!("/opt/vendor{i}/bin")).collect();
    s.push_str(&format!(
        "- list: user_dirs\n  items: [{}]\n",
        dirs.join(", ")
    ));
    let images: Vec<String> = (0..100)
        .map(|i| format!("registry.example.com/team/app{i}"))
        .collect();
    s.push_str(&format!(
        "- list: user_images\n  items: [{}]\n",
        images.join(", ")
    ));
    s.push_str("- macro: user_container\n  condition: (container.id != host and not container.image.repository in (user_images))\n");
    for i in 0..400 {
        let cond = match i % 4 {
            0 => format!(
                "evt.type in (execve, execveat) and user_container and proc.name = tool{i} and not proc.pname in (user_tools)"
            ),
            1 => format!(
                "evt.type in (open, openat, openat2) and evt.is_open_write = true and (fd.name pmatch (user_dirs) or fd.name glob \"/srv/app{i}/*.conf\")"
            ),
            2 => format!(
                "evt.type = connect and fd.sport = {} and not fd.snet in (\"10.0.0.0/8\", \"172.16.0.0/12\") and proc.cmdline contains \"--rule{i}\"",
                20000 + i
            ),
            _ => format!(
                "evt.type in (execve, execveat) and proc.args icontains \"secret-flag-{i}\" and proc.aname[2] in (user_tools)"
            ),
        };
        s.push_str(&format!(
            "- rule: user rule {i}\n  desc: generated\n  condition: {cond}\n  output: user rule {i} %proc.cmdline %fd.name\n  priority: NOTICE\n  tags: [custom, T1059]\n"
        ));
    }
    s
}

struct Run {
    name: &'static str,
    rules: usize,
    elapsed: Duration,
    events: u64,
    alerts: u64,
    allocs: u64,
    quiet_events: u64,
    quiet_allocs: u64,
    allocating_quiet_events: u64,
    by_rule: std::collections::BTreeMap<String, u64>,
}

fn run(name: &'static str, rules: RuleSet, total: u64) -> Run {
    let active = rules.rules().filter(|r| r.active()).count();
    let mut engine = Engine::new(Arc::new(rules));
    let mut world = World::new();
    let mut out = Vec::with_capacity(16);
    let mut r = Run {
        name,
        rules: active,
        elapsed: Duration::ZERO,
        events: 0,
        alerts: 0,
        allocs: 0,
        quiet_events: 0,
        quiet_allocs: 0,
        allocating_quiet_events: 0,
        by_rule: Default::default(),
    };
    // Warm up the per-event caches on a first chunk that is not measured.
    for _ in 0..10_000 {
        let e = world.event();
        engine.process(&e, &mut out);
        out.clear();
    }
    let chunk = 20_000;
    let debug = std::env::var_os("RAMPART_BENCH_DEBUG").is_some();
    let mut per_kind: std::collections::BTreeMap<&'static str, (u64, u64)> = Default::default();
    while r.events < total {
        let events: Vec<Event> = (0..chunk).map(|_| world.event()).collect();
        let start = Instant::now();
        for e in &events {
            let before = ALLOCS.load(Ordering::Relaxed);
            let t = debug.then(Instant::now);
            let n = engine.process(e, &mut out);
            if let Some(t) = t {
                let d = t.elapsed().as_nanos() as u64;
                let entry = per_kind.entry(e.kind.as_str()).or_insert((0u64, 0u64));
                entry.0 += 1;
                entry.1 += d;
            }
            let allocs = ALLOCS.load(Ordering::Relaxed) - before;
            r.allocs += allocs;
            if n == 0 {
                r.quiet_events += 1;
                r.quiet_allocs += allocs;
                r.allocating_quiet_events += u64::from(allocs > 0);
                if allocs > 0 && std::env::var_os("RAMPART_BENCH_DEBUG").is_some() {
                    *r.by_rule
                        .entry(format!("quiet alloc {}", e.kind))
                        .or_default() += allocs;
                }
            }
            r.alerts += n as u64;
            for d in &out {
                *r.by_rule.entry(d.alert.rule.clone()).or_default() += 1;
            }
            out.clear();
        }
        r.elapsed += start.elapsed();
        r.events += chunk as u64;
        drop(events);
    }
    for (k, (n, ns)) in &per_kind {
        eprintln!(
            "  {name}: {k}: {n} events, {:.0} ns/event",
            *ns as f64 / *n as f64
        );
    }
    r
}

/// What an operator with a GeoIP database configures.
const LOCAL_RULES: &str =
    "- list: allowed_countries\n  items: [DE, NL, US]\n  override:\n    items: replace\n";

fn compile(files: &[(&str, &str)]) -> RuleSet {
    let mut loader = Loader::new();
    for (name, text) in files {
        if let Err(e) = loader.add_str(name, text) {
            panic!("{e}");
        }
    }
    match loader.compile(Options::default()) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// Falco's rule files (falcosecurity/rules, Apache-2.0; commit in the fixtures' README).
const FALCO_FILES: [(&str, &str); 3] = [
    (
        "falco_rules.yaml",
        include_str!("../tests/fixtures/falco/falco_rules.yaml"),
    ),
    (
        "falco-incubating_rules.yaml",
        include_str!("../tests/fixtures/falco/falco-incubating_rules.yaml"),
    ),
    (
        "falco-sandbox_rules.yaml",
        include_str!("../tests/fixtures/falco/falco-sandbox_rules.yaml"),
    ),
];

fn main() {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // RAMPART_BENCH_ONLY=default runs the baseline and the rule sets whose name contains it.
    let only = std::env::var("RAMPART_BENCH_ONLY").unwrap_or_default();
    let defaults = rampart_rules::DEFAULT_RULES;
    let user = user_rules();
    let mut sets: Vec<(&'static str, Vec<(String, String)>)> = vec![
        ("no rules (baseline)", vec![]),
        (
            "default rules",
            vec![
                ("default.yaml".into(), defaults.into()),
                ("local.yaml".into(), LOCAL_RULES.into()),
            ],
        ),
        (
            "default + 400 user rules",
            vec![
                ("default.yaml".into(), defaults.into()),
                ("local.yaml".into(), LOCAL_RULES.into()),
                ("user.yaml".into(), user),
            ],
        ),
    ];
    // Falco's three rule files, vendored unchanged as test fixtures, after the default rules
    // (in Falco's order: stable, incubating, sandbox).
    let mut falco = vec![
        ("default.yaml".to_string(), defaults.to_string()),
        ("local.yaml".to_string(), LOCAL_RULES.to_string()),
    ];
    for (name, text) in FALCO_FILES {
        falco.push((name.to_string(), text.to_string()));
    }
    sets.push(("default + 3 Falco files", falco));
    let mut runs = Vec::new();
    for (i, (name, files)) in sets.iter().enumerate() {
        if i > 0 && !only.is_empty() && !name.contains(only.as_str()) {
            continue;
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        runs.push(run(name, compile(&refs), total));
    }
    let base = runs[0].elapsed.as_secs_f64() / runs[0].events as f64;
    println!(
        "{:<28} {:>6} {:>10} {:>13} {:>9} {:>8} {:>9} {:>12} {:>14}",
        "rule set",
        "rules",
        "events",
        "events/s",
        "ns/event",
        "x base",
        "alerts",
        "allocs/event",
        "quiet allocs"
    );
    for r in &mut runs {
        let per = r.elapsed.as_secs_f64() / r.events as f64;
        println!(
            "{:<28} {:>6} {:>10} {:>13.0} {:>9.1} {:>8.2} {:>9} {:>12.4} {:>7} in {:>5}",
            r.name,
            r.rules,
            r.events,
            1.0 / per,
            per * 1e9,
            per / base,
            r.alerts,
            r.allocs as f64 / r.events as f64,
            r.quiet_allocs,
            r.allocating_quiet_events,
        );
        let _ = r.quiet_events;
        let mut top: Vec<_> = r.by_rule.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = top
            .iter()
            .take(6)
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        if !top.is_empty() {
            println!("    alerts by rule: {}", top.join(", "));
        }
    }
    println!("(quiet allocs: allocations during events that raised no alert, and how many such events allocated)");
}
