//! The shipped regulation files: they load, say what the law says, and bad files are refused
//! with file:line.

use std::path::Path;

use rampart_fleet::regulation::{self, check_retention, load_dir, parse_regulation, Regulation};
use rampart_fleet::Clock;

fn shipped() -> Vec<Regulation> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../regulations");
    load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn deadline<'a>(regs: &'a [Regulation], regime: &str, id: &str) -> &'a regulation::DeadlineRule {
    regs.iter()
        .find(|r| r.regime == regime)
        .unwrap_or_else(|| panic!("regime {regime} missing"))
        .deadlines
        .iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("{regime}/{id} missing"))
}

#[test]
fn directory_and_compiled_in_copies_agree() {
    let from_dir = shipped();
    let builtin = regulation::builtin().unwrap_or_else(|e| panic!("{e}"));
    let ids = |v: &[Regulation]| v.iter().map(|r| r.regime.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&from_dir),
        ids(&builtin),
        "regulations/ and BUILTIN list differ"
    );
    for (a, b) in from_dir.iter().zip(&builtin) {
        assert_eq!(a.deadlines, b.deadlines, "{}", a.regime);
    }
}

#[test]
fn every_regime_of_the_issue_with_its_clock() {
    let r = shipped();
    let check = |regime: &str, id: &str, within: Option<u32>, clock: Clock| {
        let d = deadline(&r, regime, id);
        assert_eq!((d.within, d.clock), (within, clock), "{regime}/{id}");
    };
    check("eu-gdpr", "authority", Some(72), Clock::Hours);
    check("eu-gdpr", "data-subjects", None, Clock::WithoutUndueDelay);
    check("eu-nis2", "early-warning", Some(24), Clock::Hours);
    check("eu-nis2", "notification", Some(72), Clock::Hours);
    check("eu-nis2", "final-report", Some(1), Clock::Months);
    check("uk-gdpr", "authority", Some(72), Clock::Hours);
    check(
        "us-ca-civ-1798.82",
        "residents",
        Some(30),
        Clock::CalendarDays,
    );
    check(
        "cn-pipl",
        "authority-and-individuals",
        None,
        Clock::WithoutUndueDelay,
    );
    check(
        "cn-incident-reporting",
        "operator-report",
        Some(4),
        Clock::Hours,
    );
    check(
        "cn-incident-reporting",
        "ciio-report",
        Some(1),
        Clock::Hours,
    );
    check("sg-pdpa", "commission", Some(3), Clock::CalendarDays);
    check("au-ndb", "assessment", Some(30), Clock::CalendarDays);
    check("jp-appi", "preliminary", Some(3), Clock::CalendarDays);
    check("jp-appi", "final", Some(30), Clock::CalendarDays);
    check("jp-appi", "final-wrongful", Some(60), Clock::CalendarDays);
    check("br-lgpd", "anpd", Some(3), Clock::BusinessDays);
    check("in-cert-in", "report", Some(6), Clock::Hours);
    check("hk-cap653", "serious", Some(12), Clock::Hours);
    check("hk-cap653", "other", Some(48), Clock::Hours);
    for reg in &r {
        assert!(reg.citation.url.starts_with("http"), "{}", reg.regime);
        assert!(!reg.citation.text.is_empty(), "{}", reg.regime);
    }
    let min = |regime: &str| {
        r.iter()
            .find(|x| x.regime == regime)
            .and_then(|x| x.log_retention.as_ref())
            .map(|l| l.min_days())
    };
    assert_eq!(min("in-cert-in"), Some(180));
    assert_eq!(
        min("cn-csl"),
        Some(184),
        "six months, counted as the longest six months"
    );
}

#[test]
fn jurisdiction_tags_match_by_prefix_only() {
    let r = shipped();
    let gdpr = r.iter().find(|x| x.regime == "eu-gdpr").expect("gdpr");
    let ca = r
        .iter()
        .find(|x| x.regime == "us-ca-civ-1798.82")
        .expect("ca");
    assert!(gdpr.covers("eu-de") && gdpr.covers("de") && gdpr.covers("eu"));
    assert!(!gdpr.covers("europe") && !gdpr.covers("us-ca"));
    assert!(ca.covers("us-ca") && ca.covers("us-ca-sf"));
    assert!(!ca.covers("ca") && !ca.covers("us"));
}

#[test]
fn retention_policies_shorter_than_a_minimum_are_reported() {
    let r = shipped();
    let policies = vec![
        ("in".to_string(), Some(90)),
        ("cn".to_string(), Some(180)),
        ("eu-de".to_string(), Some(30)),
        ("in-mum".to_string(), Some(200)),
        ("cn-sh".to_string(), None),
    ];
    let short = check_retention(&r, &policies);
    let got: Vec<(&str, u32, &str, u32)> = short
        .iter()
        .map(|s| {
            (
                s.region.as_str(),
                s.policy_days,
                s.regime.as_str(),
                s.min_days,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("in", 90, "in-cert-in", 180), ("cn", 180, "cn-csl", 184)]
    );
    assert!(
        short[0].citation.contains("CERT-In"),
        "{}",
        short[0].citation
    );
}

const GOOD: &str = "regime: test
name: Test
jurisdictions: [xx]
trigger:
  personal_data_breach: true
  description: d
authority: a
citation: {text: t, url: https://example.org/law}
deadlines:
  - id: first
    name: n
    within: 3
    clock: hours
    to: x
";

fn err(text: &str) -> String {
    match parse_regulation(Path::new("regulations/bad.yaml"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_files_are_refused_with_file_and_line() {
    assert!(parse_regulation(Path::new("ok.yaml"), GOOD).is_ok());
    let e = err(&GOOD.replace("clock: hours", "clock: fortnights"));
    assert!(e.starts_with("regulations/bad.yaml:13:"), "{e}");
    assert!(e.contains("fortnights"), "{e}");
    let e = err(&GOOD.replace("    within: 3\n", ""));
    assert!(
        e.starts_with("regulations/bad.yaml:10:") && e.contains("needs `within`"),
        "{e}"
    );
    let e = err(&format!("{GOOD}  - id: second\n    name: n\n    within: 1\n    clock: months\n    from: third\n    to: x\n"));
    assert!(
        e.starts_with("regulations/bad.yaml:15:") && e.contains("third"),
        "{e}"
    );
    let e = err(&GOOD.replace("https://example.org/law", "example.org"));
    assert!(
        e.starts_with("regulations/bad.yaml:8:") && e.contains("citation.url"),
        "{e}"
    );
    let e = err(&GOOD.replace("authority: a\n", "authority: a\nauthorty: b\n"));
    assert!(e.contains("unknown field `authorty`"), "{e}");
    let e = err(&GOOD.replace(
        "within: 3\n    clock: hours",
        "within: 3\n    clock: without_undue_delay",
    ));
    assert!(e.contains("takes no `within`"), "{e}");
}

#[test]
fn duplicate_regimes_across_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), GOOD).expect("write");
    std::fs::write(dir.path().join("b.yaml"), GOOD).expect("write");
    let e = load_dir(dir.path())
        .expect_err("duplicate accepted")
        .to_string();
    assert!(
        e.contains("b.yaml:1:") && e.contains("also defined in"),
        "{e}"
    );
}
