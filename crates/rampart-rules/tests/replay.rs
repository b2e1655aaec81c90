//! `Engine::replay` (what `rampart rules test` runs): recorded events in, alerts out as JSON
//! lines, and errors that name the line of a bad input.

mod support;

use std::sync::Arc;

use rampart_rules::{Engine, Loader, Options, ReplayCounts, ReplayError};
use support::B;

fn engine() -> Engine {
    let mut l = Loader::new();
    l.add_str(
        "t.yaml",
        "- rule: Shell\n  desc: d\n  condition: evt.type=execve and proc.name=sh\n  output: shell %proc.cmdline\n  priority: NOTICE\n",
    )
    .expect("rule");
    Engine::new(Arc::new(l.compile(Options::default()).expect("compile")))
}

fn line(b: B) -> String {
    serde_json::to_string(&b.build()).expect("event json")
}

#[test]
fn alerts_are_json_lines_and_blank_lines_are_skipped() {
    let input = format!(
        "{}\n\n   \n{}\n{}\n",
        line(B::exec("sh", &["sh", "-c", "id"])),
        line(B::exec("nginx", &["nginx"])),
        line(B::exec("sh", &["sh"]))
    );
    let mut out = Vec::new();
    let counts = engine()
        .replay(input.as_bytes(), "events.jsonl", &mut out)
        .expect("replay");
    assert_eq!(
        counts,
        ReplayCounts {
            events: 3,
            alerts: 2
        }
    );
    let text = String::from_utf8(out).expect("utf-8");
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON alert"))
        .collect();
    assert_eq!(alerts.len(), 2);
    assert!(text.contains("Shell"), "{text}");
}

#[test]
fn a_line_that_is_not_an_event_is_named_by_number() {
    let input = format!(
        "{}\n{{\"not\": \"an event\"}}\n",
        line(B::exec("sh", &["sh"]))
    );
    let mut out = Vec::new();
    let e = engine()
        .replay(input.as_bytes(), "rec.jsonl", &mut out)
        .expect_err("line 2 is no event");
    assert!(
        matches!(e, ReplayError::NotAnEvent { line: 2, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().starts_with("rec.jsonl:2: not an event: "),
        "{e}"
    );
    // The alert of line 1 was written before the bad line stopped the replay.
    assert_eq!(String::from_utf8(out).expect("utf-8").lines().count(), 1);
}

#[test]
fn truncated_json_and_invalid_utf8_stop_with_the_place() {
    let mut out = Vec::new();
    let e = engine()
        .replay(&b"{\"id\": "[..], "x", &mut out)
        .expect_err("truncated");
    assert!(e.to_string().starts_with("x:1: not an event"), "{e}");
    let e = engine()
        .replay(&b"\xff\xfe\n"[..], "x", &mut out)
        .expect_err("not utf-8");
    assert!(matches!(e, ReplayError::Read { .. }), "{e:?}");
    assert_eq!(e.to_string(), "reading x");
}
