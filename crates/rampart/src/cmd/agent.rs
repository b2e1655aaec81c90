//! `rampart agent`: the arguments are `rampart_agent::AgentArgs`; the pipeline is the
//! `rampart-agent` crate.

use std::process::ExitCode;

use anyhow::bail;
use rampart_agent::Agent;
pub use rampart_agent::{AgentArgs, Embedded};

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
    let mut cfg = args.load_config()?;
    if args.stats {
        print!("{}", rampart_agent::stats_text(&cfg.stats_file)?);
        return Ok(ExitCode::SUCCESS);
    }
    args.apply(&mut cfg);
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
