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
