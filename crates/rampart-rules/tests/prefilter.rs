//! Rules grouped by an equality prefilter (`field = literal`, `field in (...)`) fire exactly as
//! when every rule is evaluated: same rules, and with `rule_matching: first` the first in load
//! order, whether it is grouped or not.

mod support;

use std::sync::Arc;

use rampart_event::Event;
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
