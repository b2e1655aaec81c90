//! `rampart rules check|test|fields` run as a user would run them, on real files.

use std::process::{Command, Output};
use std::sync::Arc;

use rampart_event::{Device, Event, EventId, EventKind, Process};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("rampart runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const RULES: &str = "\
- list: miners
  items: [xmrig, minerd]
- rule: Miner
  desc: a miner ran
  condition: evt.type = execve and proc.name in (miners)
  output: miner %proc.name (%proc.cmdline)
  priority: CRITICAL
  tags: [mitre_impact, T1496]
- rule: Needs k8s
  desc: uses a field Rampart does not produce
  condition: evt.type = execve and k8s.ns.name = kube-system
  output: k8s %proc.name
  priority: NOTICE
";

#[test]
fn check_reports_counts_and_rules_that_cannot_fire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mine.yaml");
    std::fs::write(&file, RULES).expect("write");
    let out = rampart(&["rules", "check", file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("2 rules (2 enabled), 0 macros, 1 lists; 1 cannot fire"),
        "{stdout}"
    );
    assert!(
        stdout.contains(":9:3: rule \"Needs k8s\" cannot fire: needs field k8s.ns.name"),
        "{stdout}"
    );
    let strict = rampart(&["rules", "check", "--strict", file.to_str().expect("utf8")]);
    assert_eq!(strict.status.code(), Some(1));
    let json = rampart(&[
        "rules",
        "check",
        "--format",
        "json",
        file.to_str().expect("utf8"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json report");
    assert_eq!(v["cannot_fire"][0]["rule"], "Needs k8s");
    assert_eq!(v["cannot_fire"][0]["needs"][0], "field k8s.ns.name");
}

#[test]
fn check_errors_name_file_line_column_and_token_and_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "- rule: Bad\n  desc: d\n  condition: >\n    evt.type = execve and\n    proc.nmae = sh\n  output: x\n  priority: INFO\n",
    )
    .expect("write");
    let out = rampart(&["rules", "check", file.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:5:5: unknown field \"proc.nmae\" (did you mean proc.name?)",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_defaults_compile_cleanly() {
    let out = rampart(&["rules", "check", "--defaults", "--strict"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("0 cannot fire"));
}

fn exec(seq: u64, name: &str) -> Event {
    let mut e = Event::new(
        EventId::new(7, seq),
        1_700_000_000_000_000_000 + seq,
        EventKind::ProcessExec,
        Arc::new(Device {
            hostname: "vps".into(),
            region: None,
        }),
    );
    e.syscall = Some("execve".into());
    e.result = Some(0);
    e.process = Some(Arc::new(Process {
        pid: 10 + seq as u32,
        name: name.into(),
        args: vec![name.into(), "--donate-level".into(), "1".into()],
        ..Process::default()
    }));
    e
}

#[test]
fn test_replays_events_and_prints_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("mine.yaml");
    std::fs::write(&rules, RULES).expect("write");
    let events = dir.path().join("events.jsonl");
    let lines: Vec<String> = [exec(1, "ls"), exec(2, "xmrig"), exec(3, "cat")]
        .iter()
        .map(|e| serde_json::to_string(e).expect("json"))
        .collect();
    std::fs::write(&events, lines.join("\n") + "\n\n").expect("write");
    let args = [
        "rules",
        "test",
        "--rules",
        rules.to_str().expect("utf8"),
        "--events",
        events.to_str().expect("utf8"),
    ];
    let out = rampart(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alerts: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert json"))
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["class_uid"], 2004);
    assert_eq!(alerts[0]["rule"], "Miner");
    assert_eq!(alerts[0]["message"], "miner xmrig (xmrig --donate-level 1)");
    assert!(text(&out.stderr).contains("3 events, 1 alerts"));
    // Deterministic: the same replay prints the same bytes.
    assert_eq!(rampart(&args).stdout, out.stdout);

    // With the default rules, the miner arguments alone are enough.
    let out = rampart(&[
        "rules",
        "test",
        "--defaults",
        "--rule-matching",
        "all",
        "--events",
        events.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rules: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["rule"].to_string())
        .collect();
    assert_eq!(
        rules
            .iter()
            .filter(|r| r.contains("Crypto miner launched"))
            .count(),
        3
    );

    // A line that is not an event names its line.
    std::fs::write(&events, format!("{}\nnot json\n", lines[0])).expect("write");
    let out = rampart(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("events.jsonl:2: not an event"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fields_lists_falco_and_extension_fields() {
    let out = rampart(&["rules", "fields"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(s.contains("proc.cmdline"));
    assert!(s.contains("dns.query") && s.contains("(Rampart extension)"));
    assert!(!s.contains("proc.env"));
    let all = text(&rampart(&["rules", "fields", "--all"]).stdout);
    assert!(all.contains("proc.env") && all.contains("not produced by Rampart"));
}
