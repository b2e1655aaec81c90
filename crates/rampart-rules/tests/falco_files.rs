//! Loads Falco's own rule files, vendored unchanged under `tests/fixtures/falco/`.
//!
//! Runs always. Prints per file and per rule whether the rule is evaluated, and why not.
use std::path::PathBuf;

use rampart_rules::{Loader, Options};

fn falco_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/falco");
    ["falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

#[test]
fn falco_rule_files_load_unchanged() {
    for file in falco_files() {
        let mut loader = Loader::new();
        loader
            .add_file(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let rules = loader
            .compile(Options::default())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let report = rules.report();
        eprintln!(
            "{}: {} rules ({} enabled), {} macros, {} lists; {} cannot fire",
            file.display(),
            report.rules,
            report.enabled_rules,
            report.macros,
            report.lists,
            report.cannot_fire.len()
        );
        for c in &report.cannot_fire {
            eprintln!("  {c}");
        }
        for w in &report.warnings {
            eprintln!("  warning: {w}");
        }
    }
}
