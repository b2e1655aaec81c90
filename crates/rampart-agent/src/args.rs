//! `rampart agent` (and `rampart up`) as the user asks for it: the command-line options and how
//! they override `agent.yaml` ([`AgentArgs::apply`]).
//!
//! With the `clap` feature [`AgentArgs`] is also the command's arguments (`#[command(flatten)]`
//! in the binary): the field doc comments are the help text, so an option and the key it
//! overrides are written down here, beside [`AgentConfig`]. Only the binary turns it on.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::AgentConfig;

/// The options of `rampart agent`.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AgentArgs {
    /// Configuration file (agent.yaml); every key is optional.
    #[cfg_attr(feature = "clap", arg(long, short))]
    pub config: Option<PathBuf>,
    /// Where events go: `stdout`, `console` (alerts and a summary) or `jsonl:PATH` (repeatable;
    /// replaces the config's outputs).
    #[cfg_attr(
        feature = "clap",
        arg(long = "output", short = 'o', value_name = "SPEC")
    )]
    pub outputs: Vec<String>,
    /// Report only processes inside containers.
    #[cfg_attr(feature = "clap", arg(long))]
    pub containers_only: bool,
    /// Print what this host's kernel allows (the capability report) and exit.
    #[cfg_attr(feature = "clap", arg(long))]
    pub probe: bool,
    /// Print the running agent's counters (events, drops) and exit.
    #[cfg_attr(feature = "clap", arg(long))]
    pub stats: bool,
    /// Stop after this long (`90s`, `5m`); runs until SIGINT/SIGTERM otherwise.
    #[cfg_attr(feature = "clap", arg(long, value_parser = humantime::parse_duration))]
    pub duration: Option<Duration>,
    /// Seconds between `sensor.drops` events (overrides the config).
    #[cfg_attr(feature = "clap", arg(long, value_name = "SECS"))]
    pub stats_interval: Option<u64>,
    /// Rule file to load after the defaults (repeatable; added to the config's `rules`).
    #[cfg_attr(
        feature = "clap",
        arg(long = "rules", short = 'r', value_name = "FILE")
    )]
    pub rules: Vec<PathBuf>,
    /// Do not load the built-in rules.
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_default_rules: bool,
    /// Also record every event (not alerts) as JSON lines to PATH, for `rampart rules test`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH"))]
    pub record: Option<PathBuf>,
}

impl AgentArgs {
    /// `--config`'s file, or the defaults without one.
    pub fn load_config(&self) -> Result<AgentConfig> {
        match &self.config {
            Some(p) => AgentConfig::load(p),
            None => Ok(AgentConfig::default()),
        }
    }

    /// Applies the options to `cfg`: `--output` replaces the configured outputs, rule files add
    /// to the configured ones, `--containers-only` and `--no-default-rules` can only narrow,
    /// `--stats-interval` is at least one second.
    pub fn apply(&self, cfg: &mut AgentConfig) {
        if !self.outputs.is_empty() {
            cfg.outputs = self.outputs.clone();
        }
        cfg.containers_only |= self.containers_only;
        if let Some(s) = self.stats_interval {
            cfg.stats_interval_secs = s.max(1);
        }
        cfg.rules.extend(self.rules.iter().cloned());
        cfg.default_rules &= !self.no_default_rules;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> AgentConfig {
        AgentConfig {
            outputs: vec!["jsonl:/var/log/a.jsonl".into()],
            containers_only: true,
            stats_interval_secs: 30,
            rules: vec![PathBuf::from("/etc/rampart/site.yaml")],
            default_rules: true,
            ..AgentConfig::default()
        }
    }

    #[test]
    fn no_options_change_nothing() {
        let mut cfg = configured();
        AgentArgs::default().apply(&mut cfg);
        assert_eq!(cfg.outputs, ["jsonl:/var/log/a.jsonl"]);
        assert!(cfg.containers_only && cfg.default_rules);
        assert_eq!(cfg.stats_interval_secs, 30);
        assert_eq!(cfg.rules, [PathBuf::from("/etc/rampart/site.yaml")]);
    }

    #[test]
    fn outputs_replace_rules_add_and_flags_only_narrow() {
        let mut cfg = configured();
        let args = AgentArgs {
            outputs: vec!["stdout".into(), "console".into()],
            rules: vec![PathBuf::from("extra.yaml")],
            no_default_rules: true,
            stats_interval: Some(5),
            ..AgentArgs::default()
        };
        args.apply(&mut cfg);
        assert_eq!(cfg.outputs, ["stdout", "console"]);
        assert_eq!(
            cfg.rules,
            [
                PathBuf::from("/etc/rampart/site.yaml"),
                PathBuf::from("extra.yaml")
            ]
        );
        assert!(!cfg.default_rules);
        assert!(
            cfg.containers_only,
            "not given on the command line: the config's stays"
        );
        assert_eq!(cfg.stats_interval_secs, 5);
        let mut open = AgentConfig {
            containers_only: false,
            ..AgentConfig::default()
        };
        AgentArgs {
            containers_only: true,
            ..AgentArgs::default()
        }
        .apply(&mut open);
        assert!(open.containers_only);
    }

    #[test]
    fn a_zero_stats_interval_is_one_second() {
        let mut cfg = configured();
        AgentArgs {
            stats_interval: Some(0),
            ..AgentArgs::default()
        }
        .apply(&mut cfg);
        assert_eq!(cfg.stats_interval_secs, 1);
    }

    #[test]
    fn a_missing_config_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.yaml");
        let args = AgentArgs {
            config: Some(path.clone()),
            ..AgentArgs::default()
        };
        let e = args.load_config().expect_err("missing");
        assert!(e.to_string().contains("absent.yaml"), "{e}");
        assert!(AgentArgs::default().load_config().is_ok());
    }
}
