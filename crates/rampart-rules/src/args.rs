//! The options of `rampart rules check|test|fields` (with the `clap` feature, their arguments:
//! the doc comments are the help text), and what follows from them.

use std::path::PathBuf;

use crate::{Options, Report, RuleMatching};

/// `rampart rules check`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct CheckArgs {
    /// Rule files, loaded in this order.
    #[cfg_attr(feature = "clap", arg(required_unless_present = "defaults"))]
    pub files: Vec<PathBuf>,
    /// Load Rampart's default rules before the files (as the agent does).
    #[cfg_attr(feature = "clap", arg(long))]
    pub defaults: bool,
    /// Also exit 1 when an enabled rule cannot fire.
    #[cfg_attr(feature = "clap", arg(long))]
    pub strict: bool,
    /// `text` (for people) or `json` (one object with the report).
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = Format::Text))]
    pub format: Format,
}

impl CheckArgs {
    /// Whether the check fails (exit 1) with this report: with `--strict`, when an enabled
    /// rule cannot fire.
    pub fn fails(&self, report: &Report) -> bool {
        self.strict && !report.cannot_fire.is_empty()
    }
}

/// How `rules check` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[allow(missing_docs)]
pub enum Format {
    Text,
    Json,
}

/// `--rule-matching` (the variants carry no doc comments: they would change the help text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[allow(missing_docs)]
pub enum Matching {
    First,
    All,
}

impl From<Matching> for RuleMatching {
    fn from(m: Matching) -> Self {
        match m {
            Matching::First => RuleMatching::First,
            Matching::All => RuleMatching::All,
        }
    }
}

/// `rampart rules test`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct TestArgs {
    /// Rule files, loaded in this order.
    #[cfg_attr(
        feature = "clap",
        arg(long = "rules", num_args = 1.., required_unless_present = "defaults")
    )]
    pub rules: Vec<PathBuf>,
    /// Load Rampart's default rules before the files.
    #[cfg_attr(feature = "clap", arg(long))]
    pub defaults: bool,
    /// Recorded events, one JSON event per line (`-` for standard input).
    #[cfg_attr(feature = "clap", arg(long))]
    pub events: PathBuf,
    /// Falco's rule_matching: `first` (one rule per event, the default) or `all`.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = Matching::First))]
    pub rule_matching: Matching,
}

impl TestArgs {
    /// The rule-set options the replay loads the rules with.
    pub fn options(&self) -> Options {
        Options {
            rule_matching: self.rule_matching.into(),
            ..Options::default()
        }
    }

    /// Whether the events come from standard input (`--events -`).
    pub fn from_stdin(&self) -> bool {
        self.events.as_os_str() == "-"
    }
}

/// `rampart rules fields`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct FieldsArgs {
    /// Also list Falco fields that Rampart's events do not carry.
    #[cfg_attr(feature = "clap", arg(long))]
    pub all: bool,
}

impl FieldsArgs {
    /// The fields to list: those Rampart's events carry, or with `--all` every Falco field.
    pub fn fields(&self) -> impl Iterator<Item = crate::FieldInfo> + '_ {
        crate::fields().filter(|f| f.available || self.all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, options: Options) -> crate::RuleSet {
        let dir = std::env::temp_dir().join(format!(
            "rampart-rules-args-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("r.yaml");
        std::fs::write(&path, text).expect("write rules");
        let rules = crate::load_files(false, &[path], options).expect("rules load");
        let _ = std::fs::remove_dir_all(&dir);
        rules
    }

    #[test]
    fn strict_check_fails_only_when_an_enabled_rule_cannot_fire() {
        let ok = "- rule: Shell\n  desc: d\n  condition: evt.type = execve and proc.name = sh\n  output: o\n  priority: WARNING\n";
        let never = "- rule: Never\n  desc: d\n  condition: evt.type = execve and k8s.ns.name = kube-system\n  output: o\n  priority: WARNING\n";
        let mut a = CheckArgs {
            files: vec![],
            defaults: false,
            strict: false,
            format: Format::Text,
        };
        let (firing, dead) = (
            load(ok, Options::default()),
            load(never, Options::default()),
        );
        let (firing, dead) = (firing.report(), dead.report());
        assert!(firing.cannot_fire.is_empty(), "{:?}", firing.cannot_fire);
        assert!(
            !dead.cannot_fire.is_empty(),
            "Rampart events carry no k8s.ns.name"
        );
        assert!(!a.fails(firing) && !a.fails(dead));
        a.strict = true;
        assert!(!a.fails(firing));
        assert!(a.fails(dead));
    }

    #[test]
    fn rule_matching_reaches_the_rule_set_options() {
        let mut a = TestArgs {
            rules: vec![],
            defaults: true,
            events: PathBuf::from("-"),
            rule_matching: Matching::First,
        };
        assert_eq!(a.options().rule_matching, RuleMatching::First);
        assert!(a.from_stdin());
        a.rule_matching = Matching::All;
        a.events = PathBuf::from("./-");
        assert_eq!(a.options().rule_matching, RuleMatching::All);
        assert!(!a.from_stdin());
    }

    #[test]
    fn fields_lists_the_falco_only_fields_only_with_all() {
        let (available, every) = (FieldsArgs { all: false }, FieldsArgs { all: true });
        let some = available.fields().count();
        let all = every.fields().count();
        assert!(available.fields().all(|f| f.available));
        assert!(some > 0 && all > some, "{some} of {all}");
        assert_eq!(all, crate::fields().count());
    }
}
