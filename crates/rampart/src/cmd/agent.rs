//! `rampart agent`: the arguments; the pipeline is the `rampart-agent` crate.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
pub use rampart_agent::Embedded;
use rampart_agent::{Agent, AgentConfig};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Configuration file (agent.yaml); every key is optional.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where events go: `stdout`, `console` (alerts and a summary) or `jsonl:PATH` (repeatable;
    /// replaces the config's outputs).
    #[arg(long = "output", short = 'o', value_name = "SPEC")]
    outputs: Vec<String>,
    /// Report only processes inside containers.
    #[arg(long)]
    containers_only: bool,
    /// Print what this host's kernel allows (the capability report) and exit.
    #[arg(long)]
    probe: bool,
    /// Print the running agent's counters (events, drops) and exit.
    #[arg(long)]
    stats: bool,
    /// Stop after this long (`90s`, `5m`); runs until SIGINT/SIGTERM otherwise.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Seconds between `sensor.drops` events (overrides the config).
    #[arg(long, value_name = "SECS")]
    stats_interval: Option<u64>,
    /// Rule file to load after the defaults (repeatable; added to the config's `rules`).
    #[arg(long = "rules", short = 'r', value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Do not load the built-in rules.
    #[arg(long)]
    no_default_rules: bool,
    /// Also record every event (not alerts) as JSON lines to PATH, for `rampart rules test`.
    #[arg(long, value_name = "PATH")]
    record: Option<PathBuf>,
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    rampart_agent::tune_allocator();
    run_embedded(args, None)
}

/// `rampart agent`, with `embedded` outputs when run by `rampart up`.
pub fn run_embedded(args: AgentArgs, embedded: Option<Embedded<'_>>) -> anyhow::Result<ExitCode> {
    if args.probe {
        println!("{}", rampart_kernel::Capabilities::probe().report());
        return Ok(ExitCode::SUCCESS);
    }
    let mut cfg = match &args.config {
        Some(p) => AgentConfig::load(p)?,
        None => AgentConfig::default(),
    };
    if args.stats {
        print!("{}", rampart_agent::stats_text(&cfg.stats_file)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !args.outputs.is_empty() {
        cfg.outputs = args.outputs.clone();
    }
    cfg.containers_only |= args.containers_only;
    if let Some(s) = args.stats_interval {
        cfg.stats_interval_secs = s.max(1);
    }
    cfg.rules.extend(args.rules.iter().cloned());
    cfg.default_rules &= !args.no_default_rules;
    let (engine, rules_have_actions) = rampart_agent::load_rules(&cfg)?;
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("rampart agent loads BPF programs and reads every process's /proc: run it as root (sudo rampart agent)");
    }
    Agent::start(
        cfg,
        engine,
        rules_have_actions,
        args.record.as_deref(),
        embedded,
    )?
    .run(args.duration)?;
    Ok(ExitCode::SUCCESS)
}
