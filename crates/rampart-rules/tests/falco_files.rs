//! Loads Falco's own rule files, vendored unchanged under `tests/fixtures/falco/` (upstream
//! commit and licence in the README there), on every run.
//!
//! Each file must load alone and the three together (as Falco loads them: `falco_rules.yaml`,
//! then the incubating and sandbox files). Every rule is reported with how it is evaluated
//! ([`Evaluation`]); a rule that cannot fire must need something Rampart does not produce (a
//! field, an event type, another event source), never a gap in the language. The per-file
//! counts and the list of rules not fully evaluated are kept in `docs/rules.md` between the
//! `falco-files` markers: the test fails when they are out of date, and
//! `RAMPART_BLESS=1 cargo test -p rampart-rules --test falco_files` rewrites them.

use std::fmt::Write as _;
use std::path::PathBuf;

mod support;

use rampart_rules::{Evaluation, Loader, Need, Options, Report, RuleSet};

const FILES: [&str; 3] = [
    "falco_rules.yaml",
    "falco-incubating_rules.yaml",
    "falco-sandbox_rules.yaml",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/falco")
        .join(name)
}

fn load(names: &[&str]) -> RuleSet {
    let mut loader = Loader::new();
    for name in names {
        loader
            .add_file(fixture(name))
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
    }
    loader
        .compile(Options::default())
        .unwrap_or_else(|e| panic!("{names:?} do not compile: {e}"))
}

#[derive(Default, Debug, PartialEq)]
struct Counts {
    rules: usize,
    disabled: usize,
    evaluated: usize,
    partial: usize,
    cannot_fire: usize,
    skipped: usize,
}

fn counts(report: &Report) -> Counts {
    let mut c = Counts {
        rules: report.rules,
        ..Counts::default()
    };
    for s in &report.rule_status {
        if !s.enabled {
            c.disabled += 1;
        }
        match &s.evaluation {
            Evaluation::Evaluated => c.evaluated += 1,
            Evaluation::Partial { .. } => c.partial += 1,
            Evaluation::CannotFire(_) => c.cannot_fire += 1,
            Evaluation::Skipped { .. } => c.skipped += 1,
            other => panic!("unexpected evaluation {other:?}"),
        }
    }
    c
}

/// Checks one file's report and prints it; returns its line of the docs table and its rules
/// that are not fully evaluated.
fn check(name: &str, rules: &RuleSet) -> (String, String) {
    let report = rules.report();
    let c = counts(report);
    eprintln!("{name}: {c:?}");
    for s in &report.rule_status {
        eprintln!("  {s}");
    }
    // 100% of the rules load: every rule of the file has a status.
    assert_eq!(report.rule_status.len(), report.rules, "{name}");
    assert!(report.rules > 0, "{name}");
    assert_eq!(
        c.evaluated + c.partial + c.cannot_fire + c.skipped,
        c.rules,
        "{name}"
    );
    // The files ask for the engine version Rampart is tested against: no warning about it.
    assert!(
        !report
            .warnings
            .iter()
            .any(|w| w.message.contains("engine version")),
        "{name}"
    );
    // A rule that cannot fire needs something named that Rampart does not produce.
    for s in &report.rule_status {
        if let Evaluation::CannotFire(needs) = &s.evaluation {
            assert!(!needs.is_empty(), "{s}");
            for n in needs {
                match n {
                    Need::Field(f) => assert!(
                        f.contains('.') && !f.contains(' '),
                        "{s}: not a field Rampart lacks"
                    ),
                    Need::EventTypes(t) => assert!(!t.is_empty(), "{s}"),
                    Need::Source(src) => assert_ne!(src, "syscall", "{s}"),
                }
            }
        }
        // Falco's own files name no field unknown to Falco.
        assert!(!matches!(s.evaluation, Evaluation::Skipped { .. }), "{s}");
    }
    let row = format!(
        "| `{name}` | {} | {} | {} | {} | {} | {} |\n",
        c.rules, c.rules, c.evaluated, c.partial, c.cannot_fire, c.disabled
    );
    let mut detail = String::new();
    for s in &report.rule_status {
        if s.evaluation != Evaluation::Evaluated {
            let disabled = if s.enabled {
                ""
            } else {
                " (disabled upstream)"
            };
            let _ = writeln!(
                detail,
                "| `{name}` | {}{disabled} | {} |",
                s.rule.replace('|', "\\|"),
                s.evaluation.to_string().replace('|', "\\|")
            );
        }
    }
    (row, detail)
}

#[test]
fn falco_rule_files_load_unchanged_and_report_every_rule() {
    let mut table = String::from(
        "| file | rules | loaded | evaluated | evaluated, some fields absent | not evaluated | disabled upstream |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut details = String::from("| file | rule | why not fully evaluated |\n|---|---|---|\n");
    for name in FILES {
        let rules = load(&[name]);
        let (row, detail) = check(name, &rules);
        table.push_str(&row);
        details.push_str(&detail);
        let active = rules.rules().filter(|r| r.active()).count();
        assert!(active > 0, "{name}: no rule can fire");
    }
    // The three together, in Falco's order: later files redefine some lists and macros.
    let all = load(&FILES);
    let c = counts(all.report());
    eprintln!("all three: {c:?}");
    assert!(c.evaluated + c.partial > 0);
    // And after Rampart's default rules, as a Falco user adds them to an agent.
    let mut loader = Loader::new();
    loader.add_default_rules().expect("default rules");
    for name in FILES {
        loader.add_file(fixture(name)).expect("loads");
    }
    let with_defaults = loader.compile(Options::default()).expect("compiles");
    assert!(with_defaults.report().rules > all.report().rules);

    let section = format!(
        "{table}\nRules not fully evaluated, and why (a field or event type Rampart does not produce):\n\n{details}"
    );
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md");
    let text = std::fs::read_to_string(&docs).expect("docs/rules.md");
    let (begin, end) = (
        "<!-- falco-files:begin (generated by crates/rampart-rules/tests/falco_files.rs) -->\n",
        "<!-- falco-files:end -->",
    );
    let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
        panic!("docs/rules.md lacks the falco-files markers");
    };
    let current = &text[b + begin.len()..e];
    if current != section {
        if std::env::var_os("RAMPART_BLESS").is_some() {
            let updated = format!("{}{section}{}", &text[..b + begin.len()], &text[e..]);
            std::fs::write(&docs, updated).expect("write docs/rules.md");
        } else {
            panic!(
                "docs/rules.md's Falco-file counts are out of date; rerun with RAMPART_BLESS=1.\nExpected:\n{section}"
            );
        }
    }
}

/// Falco's "Packet socket created in container" fires on Rampart's `net.socket` events (its
/// `evt.arg.domain contains AF_PACKET`), not on other sockets or on the host.
#[test]
fn falco_packet_socket_rule_fires_on_net_socket_events() {
    use std::sync::Arc;
    use support::{fired, names, B};
    let rules = load(&["falco_rules.yaml"]);
    let mut engine = rampart_rules::Engine::new(Arc::new(rules));
    let rule = "Packet socket created in container";
    let got = names(&fired(
        &mut engine,
        &[B::socket("AF_PACKET", "SOCK_RAW", 0x0300).build()],
    ));
    assert!(got.iter().any(|n| n == rule), "{got:?}");
    let got = names(&fired(
        &mut engine,
        &[
            B::socket("AF_INET", "SOCK_RAW", 255).build(),
            B::socket("AF_PACKET", "SOCK_RAW", 0x0300).host().build(),
        ],
    ));
    assert!(!got.iter().any(|n| n == rule), "{got:?}");
}

/// The table "Falco's behaviours in Rampart's rules" in docs/rules.md names every rule of the
/// three files once, and each row starts with an existing default rule or says what else covers
/// the behaviour (Falco's own rule, another component) or why nothing does.
#[test]
fn every_falco_rule_is_mapped_to_its_rampart_coverage() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md"),
    )
    .expect("docs/rules.md");
    let start = doc.find("<!-- falco-map:begin -->").expect("begin marker");
    let end = doc.find("<!-- falco-map:end -->").expect("end marker");
    let mut mapped: Vec<(String, String)> = Vec::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        assert!(cells.len() >= 3, "{line}");
        mapped.push((
            cells[1].to_string(),
            cells[2].trim_end_matches(" |").to_string(),
        ));
    }
    let mut defaults = Loader::new();
    defaults.add_default_rules().expect("defaults");
    let defaults = defaults.compile(Options::default()).expect("compile");
    let default_names: Vec<String> = defaults.rules().map(|r| r.name().to_string()).collect();
    let mut names = Vec::new();
    for file in FILES {
        let text = std::fs::read_to_string(fixture(file)).expect("fixture");
        names.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("- rule: "))
                .map(|n| n.trim().to_string()),
        );
    }
    for n in &names {
        let rows = mapped.iter().filter(|(r, _)| r == n).count();
        assert_eq!(rows, 1, "Falco rule {n:?} is in the table {rows} times");
    }
    assert_eq!(mapped.len(), names.len(), "rows that are no Falco rule");
    for (rule, covered) in &mapped {
        let other = [
            "Falco's rule",
            "not covered",
            "does not apply",
            "`rampart authz`",
        ];
        let first = covered
            .split([',', ';', '('])
            .next()
            .unwrap_or_default()
            .trim();
        assert!(
            other.iter().any(|o| covered.starts_with(o))
                || default_names.iter().any(|d| d == first),
            "{rule}: {first:?} is neither a default rule nor a stated reason"
        );
    }
}
