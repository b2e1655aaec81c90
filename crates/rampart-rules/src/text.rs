//! What `rampart rules check` and `rampart rules fields` print, and the loading both
//! `rules check` and `config check` do.

use std::fmt::Write;
use std::path::PathBuf;

use crate::{Error, FieldInfo, Loader, Options, Report, RuleSet};

/// Loads Rampart's default rules when `defaults`, then `files` in order, and compiles them.
/// `Error::Io` is a file that could not be read; every other error is the rule text's.
pub fn load_files(defaults: bool, files: &[PathBuf], options: Options) -> Result<RuleSet, Error> {
    let mut loader = Loader::new();
    if defaults {
        loader.add_default_rules()?;
    }
    for f in files {
        loader.add_file(f)?;
    }
    loader.compile(options)
}

impl Report {
    /// Counts, then one line per rule that cannot fire and per warning; every line ends in `\n`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} rules ({} enabled), {} macros, {} lists; {} cannot fire",
            self.rules,
            self.enabled_rules,
            self.macros,
            self.lists,
            self.cannot_fire.len()
        );
        for c in &self.cannot_fire {
            let _ = writeln!(out, "{c}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }

    /// The report as one JSON object (`rules check --format json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rules": self.rules,
            "enabled_rules": self.enabled_rules,
            "macros": self.macros,
            "lists": self.lists,
            "cannot_fire": self.cannot_fire.iter().map(|c| serde_json::json!({
                "rule": c.rule,
                "location": c.at.to_string(),
                "needs": c.needs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "warnings": self.warnings.iter().map(|w| serde_json::json!({
                "location": w.at.to_string(),
                "message": w.message,
            })).collect::<Vec<_>>(),
        })
    }
}

impl FieldInfo {
    /// `NAME TYPE  (note)`: the field's line in `rules fields`, without `\n`.
    pub fn line(&self) -> String {
        let name = if self.takes_argument {
            format!("{}[...]", self.name)
        } else {
            self.name.to_string()
        };
        let note = match (self.available, self.extension) {
            (false, _) => "  (not produced by Rampart: comparisons are false)",
            (true, true) => "  (Rampart extension)",
            (true, false) => "",
        };
        format!("{name:<40} {:<10}{note}", self.type_name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn default_rules_report_counts_and_json_agree() {
        let set = load_files(true, &[], Options::default()).unwrap();
        let r = set.report();
        let text = r.text();
        assert!(
            text.starts_with(&format!("{} rules ({} enabled)", r.rules, r.enabled_rules)),
            "{text}"
        );
        let j = r.to_json();
        assert_eq!(j["rules"], r.rules);
        assert_eq!(
            j["cannot_fire"].as_array().unwrap().len(),
            r.cannot_fire.len()
        );
    }

    #[test]
    fn a_missing_rule_file_is_an_io_error_naming_it() {
        let e = load_files(
            false,
            &[PathBuf::from("/nonexistent/r.yaml")],
            Options::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/r.yaml"), "{e}");
    }

    #[test]
    fn field_lines_mark_unavailable_fields_and_extensions() {
        let off = crate::fields().find(|f| !f.available).unwrap();
        assert!(off
            .line()
            .ends_with("(not produced by Rampart: comparisons are false)"));
        let ext = crate::fields()
            .find(|f| f.available && f.extension)
            .unwrap();
        assert!(ext.line().ends_with("(Rampart extension)"));
    }
}
