//! Shared helpers of the integration tests.
#![allow(dead_code, reason = "each test binary uses a subset")]

use std::path::Path;

use rampart_audit::Subject;
use rampart_container::DockerClient;
use rampart_event::{ComplianceFinding, ComplianceStatus};

pub async fn docker() -> DockerClient {
    DockerClient::connect(Path::new(rampart_container::DEFAULT_SOCKET))
        .await
        .expect("connect to dockerd")
}

pub fn finding<'a>(s: &'a Subject, id: &str) -> &'a ComplianceFinding {
    s.finding(id)
        .unwrap_or_else(|| panic!("{} has no finding {id}", s.resource.name))
}

/// Asserts the status of check `id`, showing the evidence on failure.
#[track_caller]
pub fn assert_status(s: &Subject, id: &str, want: ComplianceStatus) {
    let f = finding(s, id);
    assert_eq!(
        f.status, want,
        "{} check {id} ({}): evidence {:?}",
        s.resource.name, f.title, f.evidence
    );
}

/// Validates `doc` against the official SARIF 2.1.0 schema (vendored in tests/fixtures).
pub fn assert_valid_sarif(doc: &serde_json::Value) {
    let mut schema: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/sarif-schema-2.1.0.json"))
            .expect("schema parses");
    // The official schema's `language` patterns (of `run` and `toolComponent`),
    // `^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$`, have a stray `]` that jsonschema's ECMA-262
    // regex check rejects when it validates the schema itself. Rampart never emits `language`;
    // the file stays as published and only these patterns are replaced, in memory, by the one
    // they were meant to be.
    let fixed = fix_language_patterns(&mut schema);
    assert_eq!(fixed, 2, "the vendored schema changed");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "SARIF does not validate:\n{}",
        errors.join("\n")
    );
}

/// True when AppArmor is enabled on this host.
pub fn apparmor() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

fn fix_language_patterns(v: &mut serde_json::Value) -> usize {
    const BAD: &str = "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$";
    match v {
        serde_json::Value::Object(m) => {
            let mut n = 0;
            for (k, child) in m.iter_mut() {
                if k == "pattern" && child == BAD {
                    *child = serde_json::json!("^[a-zA-Z]{2}(-[a-zA-Z]{2})?$");
                    n += 1;
                } else {
                    n += fix_language_patterns(child);
                }
            }
            n
        }
        serde_json::Value::Array(a) => a.iter_mut().map(fix_language_patterns).sum(),
        _ => 0,
    }
}
