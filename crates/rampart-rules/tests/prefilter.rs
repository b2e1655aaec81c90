//! Rules grouped by an equality prefilter (`field = literal`, `field in (...)`) fire exactly as
//! when every rule is evaluated: same rules, and with `rule_matching: first` the first in load
//! order, whether it is grouped or not.

mod support;

use std::sync::Arc;

use rampart_event::{AuthOutcome, Event, EventKind, NetDirection, PrivilegeInfo};
use rampart_rules::{Engine, Loader, Options, RuleMatching};
use support::{fired, names, B};

/// Rules over execs, interleaving grouped ones (6 on `proc.name`, 5 on `proc.pid`) with
/// ungrouped ones, so that load order crosses groups.
fn rules_text() -> String {
    let conds = [
        ("a0", "proc.name = curl"),
        ("u0", "proc.cmdline contains x.example"),
        ("a1", "proc.name in (wget, curl) and proc.args contains -sL"),
        ("p0", "proc.pid = 4242"),
        ("a2", "proc.name = wget"),
        ("p1", "proc.pid in (1, 2, 4242)"),
        ("a3", "proc.name = 'bash' and proc.pid = 1"),
        ("u1", "proc.name startswith cu"),
        ("p2", "proc.pid = 7 and proc.name = curl"),
        ("a4", "proc.name in (curl) and not proc.pname = node"),
        ("p3", "proc.pid = 0x1092"),
        ("a5", "proc.name = '<NA>'"),
        ("p4", "proc.pid = 4243"),
        ("a6", "proc.name = nginx"),
    ];
    let mut s = String::new();
    for (name, cond) in conds {
        s.push_str(&format!(
            "- rule: {name}\n  desc: d\n  condition: evt.type = execve and {cond}\n  output: o\n  priority: WARNING\n"
        ));
    }
    s
}

fn run(matching: RuleMatching, ev: &Event) -> Vec<String> {
    let mut loader = Loader::new();
    loader.add_str("r.yaml", &rules_text()).expect("loads");
    let rules = loader
        .compile(Options {
            rule_matching: matching,
            ..Options::default()
        })
        .expect("compiles");
    let mut engine = Engine::new(Arc::new(rules));
    names(&fired(&mut engine, std::slice::from_ref(ev)))
}

#[test]
fn grouped_rules_fire_as_a_full_scan_would() {
    let curl = B::exec("curl", &["curl", "-sL", "http://x.example/"]).build();
    // Every matching rule, in load order (a4 is excluded by its parent, p3 is hexadecimal).
    assert_eq!(
        run(RuleMatching::All, &curl),
        ["a0", "u0", "a1", "p0", "p1", "u1", "p3"]
    );
    assert_eq!(run(RuleMatching::First, &curl), ["a0"]);
    // When the first grouped rule does not match, the first match in load order is ungrouped.
    let other = B::exec("curlx", &["curlx", "http://x.example/"]).build();
    assert_eq!(run(RuleMatching::First, &other), ["u0"]);
    assert_eq!(
        run(RuleMatching::All, &other),
        ["u0", "p0", "p1", "u1", "p3"]
    );
    // A value in no group: only the ungrouped rules can fire.
    let bash = B::exec("bash", &["bash"]).proc(|p| p.pid = 1).build();
    assert_eq!(run(RuleMatching::All, &bash), ["p1", "a3"]);
    // Many events, alternating, through one engine: the reused buffers keep no state.
    let mut loader = Loader::new();
    loader.add_str("r.yaml", &rules_text()).expect("loads");
    let rules = loader
        .compile(Options {
            rule_matching: RuleMatching::All,
            ..Options::default()
        })
        .expect("compiles");
    let mut engine = Engine::new(Arc::new(rules));
    for _ in 0..3 {
        for (ev, n) in [(&curl, 7), (&bash, 2), (&other, 5)] {
            assert_eq!(fired(&mut engine, std::slice::from_ref(ev)).len(), n);
        }
    }
}

/// Every rule alone (too few to be grouped) against all of them together (grouped): the rules
/// that fire together are exactly those that fire alone, in load order.
fn same_as_alone(conds: &[&str], events: &[Event]) {
    let text = |cs: &[(usize, &str)]| {
        cs.iter()
            .map(|(i, c)| {
                format!(
                    "- rule: r{i}\n  desc: d\n  condition: {}\n  output: o\n  priority: WARNING\n",
                    serde_json::to_string(c).expect("json string is a YAML scalar")
                )
            })
            .collect::<String>()
    };
    let engine = |t: &str| {
        let mut loader = Loader::new();
        loader.add_str("r.yaml", t).expect("loads");
        Engine::new(Arc::new(
            loader
                .compile(Options {
                    rule_matching: RuleMatching::All,
                    ..Options::default()
                })
                .expect("compiles"),
        ))
    };
    let indexed: Vec<(usize, &str)> = conds.iter().copied().enumerate().collect();
    let mut together = engine(&text(&indexed));
    let mut alone: Vec<Engine> = indexed.iter().map(|c| engine(&text(&[*c]))).collect();
    let mut fired_somewhere = 0;
    for ev in events {
        let got = names(&fired(&mut together, std::slice::from_ref(ev)));
        let want: Vec<String> = alone
            .iter_mut()
            .filter_map(|e| {
                names(&fired(e, std::slice::from_ref(ev)))
                    .into_iter()
                    .next()
            })
            .collect();
        let path = ev.file.as_ref().map(|f| f.path.clone());
        assert_eq!(got, want, "{path:?}");
        fired_somewhere += usize::from(!got.is_empty());
    }
    assert!(fired_somewhere > 0);
}

#[test]
fn path_prefix_groups_fire_as_each_rule_alone() {
    let conds = [
        "evt.type = openat and fd.name startswith /etc/",
        "evt.type = openat and fd.name startswith /et",
        "evt.type = openat and (fd.name pmatch (/usr/bin, /var/*/x) or fd.name glob '/srv/app1/*.conf')",
        "evt.type = openat and fd.name glob '/home/*/.ssh/*'",
        "evt.type = openat and fd.name glob '/h*'",
        "evt.type = openat and fd.name = /etc",
        "evt.type = openat and fd.name in (/etc/shadow, /root/.bashrc)",
        "evt.type = openat and fd.directory in (/etc, /var/log)",
        "evt.type = openat and fd.name pmatch (/)",
        "evt.type = openat and (fd.name startswith /tmp/ or proc.name = curl)",
        "evt.type = openat and fd.name startswith /srv/ and not fd.name endswith .conf",
        "evt.type = openat and fd.name glob '/srv/app1/*.conf'",
        "evt.type = openat and fd.name pmatch (/var/lib, /opt)",
    ];
    let paths = [
        "/etc/shadow",
        "/etc",
        "/etc/",
        "/etc2/x",
        "/et",
        "/usr/bin/ls",
        "/usr/binx",
        "/var/run/x",
        "/var/run/x/y",
        "/var/run/y",
        "/srv/app1/a.conf",
        "/srv/app1/sub/b.conf",
        "/srv/app2/a.conf",
        "/home/bob/.ssh/id_rsa",
        "/home",
        "/tmp/x",
        "/root/.bashrc",
        "/var/log/syslog",
        "/var/lib/dpkg/status",
        "/opt",
        "relative/path",
        "/",
        "//etc/passwd",
    ];
    let events: Vec<Event> = paths
        .iter()
        .flat_map(|p| {
            [
                B::write(p).build(),
                B::write(p).proc(|x| x.name = "curl".into()).build(),
            ]
        })
        .collect();
    same_as_alone(&conds, &events);
}

#[test]
fn equality_groups_fire_as_each_rule_alone() {
    let conds = [
        "evt.type = execve and proc.name = curl",
        "evt.type = execve and proc.name in (curl, wget) and proc.pid = 4242",
        "evt.type = execve and proc.name = CURL",
        "evt.type = execve and proc.name = '<NA>'",
        "evt.type = execve and proc.name in (bash, sh)",
        "evt.type = execve and proc.pid = 4242",
        "evt.type = execve and proc.pid in (1, 0x1092)",
        "evt.type = execve and proc.pid = 5",
        "evt.type = execve and proc.pid = 6 or proc.name = sh",
        "evt.type = execve and proc.pname = node",
    ];
    let events: Vec<Event> = ["curl", "wget", "bash", "sh", "CURL", "nginx"]
        .iter()
        .flat_map(|n| {
            [4242, 1, 5, 6].map(|pid| B::exec(n, &[n]).proc(move |p| p.pid = pid).build())
        })
        .collect();
    same_as_alone(&conds, &events);
}

/// Two engines over the same rules, fed the same events: one with the prefilters, one
/// evaluating every rule of the event's type. Returns how many events fired a rule and the
/// distinct rules that fired.
fn same_as_full_scan(files: &[(&str, &str)], events: &[Event]) -> (usize, Vec<String>) {
    let compile = || {
        let mut loader = Loader::new();
        for (name, text) in files {
            loader.add_str(name, text).expect("loads");
        }
        Arc::new(
            loader
                .compile(Options {
                    rule_matching: RuleMatching::All,
                    ..Options::default()
                })
                .expect("compiles"),
        )
    };
    let mut filtered = Engine::new(compile());
    let mut full = Engine::new(compile());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut fired_events = 0;
    let mut rules: Vec<String> = Vec::new();
    for ev in events {
        a.clear();
        b.clear();
        filtered.process(ev, &mut a);
        full.process_without_prefilters(ev, &mut b);
        let (got, want) = (names(&a), names(&b));
        assert_eq!(
            got,
            want,
            "{:?} {:?} {:?}",
            ev.kind,
            ev.file.as_ref().map(|f| &f.path),
            ev.process.as_ref().map(|p| (&p.name, &p.args))
        );
        fired_events += usize::from(!got.is_empty());
        for n in got {
            if !rules.contains(&n) {
                rules.push(n);
            }
        }
    }
    (fired_events, rules)
}

#[test]
fn substring_and_cross_field_alternatives_fire_as_a_full_scan() {
    let conds = [
        "evt.type = openat and fd.name contains /.ssh/",
        "evt.type = openat and fd.name endswith authorized_keys",
        "evt.type = openat and fd.name glob '*/.aws/credentials'",
        "evt.type = openat and fd.name glob '/h*/*/.bash_history'",
        "evt.type = openat and fd.name glob '*.[ch]'",
        "evt.type = openat and fd.name glob 'a]bc*'",
        "evt.type = openat and fd.name startswith /et",
        "evt.type = openat and (fd.directory in (/etc, /bin) or fd.name contains .ssh or proc.name = vim)",
        "evt.type = openat and (fd.filename = passwd or proc.cmdline contains 'get-pip')",
        "evt.type = openat and fd.typechar = f and proc.name in (vim, nano)",
        "evt.type = openat and not fd.name contains /tmp/",
        "evt.type = openat and fd.name icontains SECRET",
        "evt.type = openat and fd.filename in (a.c, b.h) and fd.name contains src",
        "evt.type = openat and proc.pid in (4242, 0x10)",
        "evt.type = openat and proc.pid = 16",
        "evt.type = openat and fd.name bcontains 2f6574632f",
        "evt.type = openat and fd.name = ''",
        "evt.type = openat and fd.name pmatch (/var/lib, /opt/*/bin)",
    ];
    let text: String = conds
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "- rule: r{i}\n  desc: d\n  condition: {}\n  output: o\n  priority: WARNING\n",
                serde_json::to_string(c).expect("json string is a YAML scalar")
            )
        })
        .collect();
    let paths = [
        "/home/bob/.ssh/id_rsa",
        "/home/bob/.ssh/authorized_keys",
        "/root/.ssh",
        "/root/.aws/credentials",
        "/home/x/.bash_history",
        "/src/a.c",
        "/src/b.h",
        "a]bcd",
        "/etc/passwd",
        "/etcx/passwd",
        "/bin/sh",
        "/tmp/x.c",
        "/srv/SECRET.txt",
        "/var/lib/x",
        "/opt/app/bin/run",
        "/opt/app/lib",
        "",
        "/",
        "/x/.ssh",
    ];
    let mut events = Vec::new();
    for p in paths {
        for name in ["nginx", "vim"] {
            for pid in [4242, 16, 1] {
                events.push(
                    B::write(p)
                        .proc(|x| {
                            x.name = name.into();
                            x.pid = pid;
                            x.args = vec![name.into(), "get-pip.py".into()];
                        })
                        .build(),
                );
            }
        }
    }
    let (fired, rules) = same_as_full_scan(&[("r.yaml", &text)], &events);
    assert!(fired > 50, "{fired}");
    assert!(rules.len() >= 15, "{rules:?}");
}

/// xorshift64*: the same events on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, items: &'a [String]) -> &'a str {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn coin(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

/// The default rules and Falco's three files, with events built from the literals the rules
/// themselves test (their paths, process names, command-line fragments, ports), so that most
/// rules fire on some events and most prefilter lookups hit: every event must fire exactly
/// the rules a full scan fires.
#[test]
fn falco_files_and_default_rules_fire_as_a_full_scan_on_generated_events() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/falco");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).expect("fixture");
    let falco = [
        read("falco_rules.yaml"),
        read("falco-incubating_rules.yaml"),
        read("falco-sandbox_rules.yaml"),
    ];
    let files = [
        ("default.yaml", rampart_rules::DEFAULT_RULES),
        ("falco_rules.yaml", falco[0].as_str()),
        ("falco-incubating_rules.yaml", falco[1].as_str()),
        ("falco-sandbox_rules.yaml", falco[2].as_str()),
    ];
    // The rules' words: paths, names, fragments.
    let mut words: Vec<String> = Vec::new();
    for (_, text) in &files {
        for w in text.split(|c: char| {
            c.is_whitespace() || matches!(c, '(' | ')' | ',' | '[' | ']' | '"' | '\'' | '=')
        }) {
            if w.len() >= 2 && w.len() < 60 && !words.iter().any(|x| x == w) {
                words.push(w.to_string());
            }
        }
    }
    let paths: Vec<String> = words
        .iter()
        .filter(|w| w.starts_with('/'))
        .cloned()
        .collect();
    let names: Vec<String> = words
        .iter()
        .filter(|w| {
            w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .cloned()
        .collect();
    let ports: Vec<u16> = words.iter().filter_map(|w| w.parse().ok()).collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut events = Vec::new();
    for i in 0..6000u32 {
        // A path: a rule's path, below it, or with a rule's file name; sometimes a glob's
        // wildcard replaced.
        let mut path = rng.pick(&paths).replace('*', "x");
        if rng.coin(2) {
            path = format!("{}/{}", path.trim_end_matches('/'), rng.pick(&names));
        }
        let name = rng.pick(&names).to_string();
        let args: Vec<String> = (0..1 + rng.next() % 3)
            .map(|_| match rng.next() % 3 {
                0 => rng.pick(&paths).to_string(),
                _ => rng.pick(&names).to_string(),
            })
            .collect();
        let parent = rng.pick(&names).to_string();
        let exe = if rng.coin(2) {
            format!("/usr/bin/{name}")
        } else {
            path.clone()
        };
        let set_proc = |p: &mut rampart_event::Process| {
            p.name = name.clone();
            p.exe = exe.clone();
            p.args = std::iter::once(name.clone()).chain(args.clone()).collect();
            p.uid = if i % 3 == 0 { 1000 } else { 0 };
            p.ancestors[0].name = parent.clone();
        };
        let ip = if rng.coin(2) {
            "203.0.113.7"
        } else {
            "10.1.2.3"
        };
        let port = ports[(rng.next() % ports.len() as u64) as usize];
        // Mostly the four busiest kinds; one event in three of the other kinds, which drive
        // the correlation rules (chmod after a download, logins, scans) and the rules that
        // test `evt.kind`.
        let b = match (i % 4, rng.next().is_multiple_of(3)) {
            (0, false) => B::write(&path),
            (1, false) => B::read(&path),
            (2, false) => B::exec(&name, &[]),
            (_, false) => B::connect(ip, port),
            (_, true) => match rng.next() % 12 {
                0 => B::file(EventKind::FileChmod, "fchmodat", &path)
                    .file_info(|f| f.mode = Some(if rng.coin(2) { 0o4755 } else { 0o755 })),
                1 => B::file(EventKind::FileRename, "renameat2", &path)
                    .file_info(|f| f.new_path = Some(format!("{path}.1"))),
                2 => B::file(EventKind::FileUnlink, "unlinkat", &path),
                3 => B::dns(rng.pick(&names)),
                4 => B::auth(
                    if rng.coin(8) {
                        AuthOutcome::Success
                    } else {
                        AuthOutcome::Failure
                    },
                    ip,
                ),
                5 => {
                    let mut b = B::connect(ip, port);
                    if let Some(n) = b.0.network.as_mut() {
                        n.direction = NetDirection::Inbound;
                    }
                    b.0.kind = EventKind::NetAccept;
                    b.0.syscall = Some("accept4".into());
                    b
                }
                6 => B::privilege(
                    EventKind::PrivSetuid,
                    "setuid",
                    PrivilegeInfo {
                        uid: Some(0),
                        euid: Some(0),
                        ..PrivilegeInfo::default()
                    },
                ),
                7 => B::docker_exec(rng.pick(&names), rng.coin(2)),
                8 => B::stats(1900, None, 9_000),
                9 => B::socket(
                    if rng.coin(2) { "AF_PACKET" } else { "AF_INET" },
                    "SOCK_RAW",
                    3,
                ),
                10 => B::listen(port),
                _ => B::open(&path, 0o100101).file_info(|f| f.mode = Some(0o755)),
            },
        };
        // Logins, `docker exec` and stats events carry no process, as the agent makes them.
        let b = if b.0.process.is_some() {
            b.proc(set_proc)
        } else {
            b
        };
        let b = b.at(u64::from(i / 20));
        events.push(if rng.coin(4) { b.host() } else { b }.build());
        if i % 50 == 0 {
            // A download made executable: both steps of a temporal correlation.
            let at = u64::from(i / 20);
            events.push(
                B::write(&path)
                    .proc(|p| p.name = "curl".into())
                    .at(at)
                    .build(),
            );
            events.push(
                B::file(EventKind::FileChmod, "fchmodat", &path)
                    .file_info(|f| f.mode = Some(0o755))
                    .at(at)
                    .build(),
            );
        }
    }
    let (fired, rules) = same_as_full_scan(&files, &events);
    // The events reach many rules (a test that fires nothing would prove nothing), the
    // correlation rules among them.
    assert!(fired > 1000, "{fired} events fired");
    assert!(rules.len() >= 40, "{} rules fired: {rules:?}", rules.len());
    for correlation in ["SSH brute force", "Fresh download made executable"] {
        assert!(
            rules.iter().any(|r| r == correlation),
            "{correlation} never fired: {rules:?}"
        );
    }
}

/// `in ()` is false for every value and for a missing one: the per-type plans fold it away,
/// and the rules still fire (or not) as Falco evaluates them.
#[test]
fn empty_lists_are_false_in_every_plan() {
    let text = "- list: trusted\n  items: []\n\
        - rule: excluded by nothing\n  desc: d\n  condition: evt.type = execve and proc.name = curl and not container.image.repository in (trusted)\n  output: o\n  priority: WARNING\n\
        - rule: needs a trusted image\n  desc: d\n  condition: evt.type = execve and proc.name = curl and container.image.repository in (trusted)\n  output: o\n  priority: WARNING\n\
        - rule: any type, empty list\n  desc: d\n  condition: proc.name = curl and not proc.pname intersects (trusted)\n  output: o\n  priority: WARNING\n";
    let events = [
        B::exec("curl", &["curl"]).build(),
        B::exec("curl", &["curl"]).host().build(),
        B::write("/tmp/x").proc(|p| p.name = "curl".into()).build(),
    ];
    let (fired, rules) = same_as_full_scan(&[("r.yaml", text)], &events);
    assert_eq!(fired, 3);
    assert_eq!(rules, ["excluded by nothing", "any type, empty list"]);
}

/// A rule whose most selective alternatives would be a lookup of its own (the only rule on
/// `proc.name`) falls back to its next ones (`fd.name` under `/etc`, shared with other rules);
/// rules with no fallback are evaluated for every event. Either way it fires as a full scan.
#[test]
fn rules_fall_back_to_their_next_alternatives() {
    let conds = [
        "evt.type = openat and proc.name in (vim, nano) and fd.name startswith /etc/",
        "evt.type = openat and fd.name startswith /etc/ssh/",
        "evt.type = openat and fd.name pmatch (/etc/cron.d, /var/spool)",
        "evt.type = openat and user.name = bob and fd.name glob '*/.ssh/id_*'",
        "evt.type = openat and fd.name glob '*/.ssh/authorized_*'",
        "evt.type = openat and proc.pname = sshd and fd.name contains shadow",
    ];
    let text: String = conds
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "- rule: r{i}\n  desc: d\n  condition: {}\n  output: o\n  priority: WARNING\n",
                serde_json::to_string(c).expect("json string is a YAML scalar")
            )
        })
        .collect();
    let mut events = Vec::new();
    for path in [
        "/etc/passwd",
        "/etc/ssh/sshd_config",
        "/etc/cron.d/x",
        "/var/spool/cron",
        "/home/bob/.ssh/id_rsa",
        "/home/bob/.ssh/authorized_keys",
        "/etc/shadow",
        "/tmp/x",
    ] {
        for name in ["vim", "cat"] {
            events.push(B::write(path).proc(|p| p.name = name.into()).build());
            events.push(
                B::read(path)
                    .proc(|p| {
                        p.name = name.into();
                        p.user = Some("bob".into());
                        p.ancestors[0].name = "sshd".into();
                    })
                    .build(),
            );
        }
    }
    let (fired, rules) = same_as_full_scan(&[("r.yaml", &text)], &events);
    assert!(fired >= 10, "{fired}");
    assert_eq!(rules.len(), conds.len(), "{rules:?}");
}
