//! `rampart rules`: check rule files, replay recorded events through them, list fields.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_rules::args::{CheckArgs, FieldsArgs, Format, TestArgs};
use rampart_rules::{Engine, Options, ReplayError, RuleSet};

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
    Ok(ExitCode::from(u8::from(a.fails(report))))
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let rules = load(a.defaults, &a.rules, a.options())?;
    for c in &rules.report().cannot_fire {
        tracing::warn!("{c}");
    }
    let mut engine = Engine::new(Arc::new(rules));
    let input: Box<dyn BufRead> = if a.from_stdin() {
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
    for f in a.fields() {
        writeln!(out, "{}", f.line())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
