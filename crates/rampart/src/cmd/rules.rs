//! `rampart rules`: check rule files, replay recorded events through them, list fields.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use rampart_rules::{Engine, Options, ReplayError, RuleMatching, RuleSet};

use super::BadInput;

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Load and compile rule files; list rules that cannot fire and why. Exits 2 on an error.
    Check(CheckArgs),
    /// Replay recorded events (JSON lines, as `rampart agent --record` writes them) through
    /// rules and print the alerts as JSON lines. Deterministic: alerts depend on event time only.
    Test(TestArgs),
    /// List the fields conditions and outputs may use.
    Fields(FieldsArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Rule files, loaded in this order.
    #[arg(required_unless_present = "defaults")]
    files: Vec<PathBuf>,
    /// Load Rampart's default rules before the files (as the agent does).
    #[arg(long)]
    defaults: bool,
    /// Also exit 1 when an enabled rule cannot fire.
    #[arg(long)]
    strict: bool,
    /// `text` (for people) or `json` (one object with the report).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Matching {
    First,
    All,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Rule files, loaded in this order.
    #[arg(long = "rules", num_args = 1.., required_unless_present = "defaults")]
    rules: Vec<PathBuf>,
    /// Load Rampart's default rules before the files.
    #[arg(long)]
    defaults: bool,
    /// Recorded events, one JSON event per line (`-` for standard input).
    #[arg(long)]
    events: PathBuf,
    /// Falco's rule_matching: `first` (one rule per event, the default) or `all`.
    #[arg(long, value_enum, default_value_t = Matching::First)]
    rule_matching: Matching,
}

#[derive(Debug, Args)]
struct FieldsArgs {
    /// Also list Falco fields that Rampart's events do not carry.
    #[arg(long)]
    all: bool,
}

pub fn run(args: RulesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RulesCommand::Check(a) => check(a),
        RulesCommand::Test(a) => test(a),
        RulesCommand::Fields(a) => fields(a),
    }
}

/// Rule files that cannot be read are errors (exit 1), rule text that is wrong bad input (2).
pub fn load(defaults: bool, files: &[PathBuf], options: Options) -> anyhow::Result<RuleSet> {
    rampart_rules::load_files(defaults, files, options).map_err(|e| match e {
        rampart_rules::Error::Io { .. } => anyhow::Error::new(e),
        other => BadInput(other.to_string()).into(),
    })
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let rules = load(a.defaults, &a.files, Options::default())?;
    let report = rules.report();
    let mut out = BufWriter::new(std::io::stdout().lock());
    match a.format {
        Format::Text => write!(out, "{}", report.text())?,
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report.to_json())?)?,
    }
    out.flush()?;
    let fails = a.strict && !report.cannot_fire.is_empty();
    Ok(ExitCode::from(u8::from(fails)))
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let options = Options {
        rule_matching: match a.rule_matching {
            Matching::First => RuleMatching::First,
            Matching::All => RuleMatching::All,
        },
        ..Options::default()
    };
    let rules = load(a.defaults, &a.rules, options)?;
    for c in &rules.report().cannot_fire {
        tracing::warn!("{c}");
    }
    let mut engine = Engine::new(Arc::new(rules));
    let input: Box<dyn BufRead> = if a.events.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(&a.events)
            .with_context(|| format!("cannot open {}", a.events.display()))?;
        Box::new(BufReader::new(f))
    };
    let out = BufWriter::new(std::io::stdout().lock());
    let name = a.events.display().to_string();
    let counts = engine.replay(input, &name, out).map_err(|e| match e {
        e @ ReplayError::NotAnEvent { .. } => BadInput(e.to_string()).into(),
        e => anyhow::Error::new(e),
    })?;
    let (events, alerts) = (counts.events, counts.alerts);
    eprintln!("{events} events, {alerts} alerts");
    Ok(ExitCode::SUCCESS)
}

fn fields(a: FieldsArgs) -> anyhow::Result<ExitCode> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    for f in rampart_rules::fields().filter(|f| f.available || a.all) {
        writeln!(out, "{}", f.line())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
