//! Loads Falco's own rule files, unchanged, when they are available locally.
//!
//! Falco's rule files (falcosecurity/rules: `falco_rules.yaml`, `falco-incubating_rules.yaml`,
//! `falco-sandbox_rules.yaml`) are not vendored in this repository. Point
//! `RAMPART_FALCO_RULES_DIR` at a directory holding any of them to run this check:
//!
//! ```text
//! RAMPART_FALCO_RULES_DIR=/path/to/falcosecurity/rules/rules \
//!     cargo test -p rampart-rules --test falco_files -- --nocapture
//! ```
//!
//! Every file must load and compile; the rules that cannot fire are printed. The constructs those
//! files use are covered without them by `tests/falco_compat.rs`.

use std::path::PathBuf;

use rampart_rules::{Loader, Need, Options};

fn falco_files() -> Vec<PathBuf> {
    let Some(dir) = std::env::var_os("RAMPART_FALCO_RULES_DIR") else {
        eprintln!("SKIPPED: set RAMPART_FALCO_RULES_DIR to a directory with Falco's rule files");
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("RAMPART_FALCO_RULES_DIR is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .yaml files in {dir:?}");
    files
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
            assert!(!c.needs.is_empty());
            for n in &c.needs {
                assert!(!matches!(n, Need::Field(f) if f.is_empty()));
            }
        }
        for w in &report.warnings {
            eprintln!("  warning: {w}");
        }
        assert!(report.rules > 0);
        let active = rules.rules().filter(|r| r.active()).count();
        assert!(active > 0, "{}: no rule can fire", file.display());
    }
}
