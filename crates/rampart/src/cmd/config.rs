//! `rampart config check FILE`: validates an agent, server, policy or rule file the way the
//! command that reads it would, and reports errors as `file:line[:column]: message`.
//!
//! The kind comes from `--kind`, else from the content (a YAML sequence is a rule file; the
//! top-level keys tell a policy, a server and an agent configuration apart), else from the
//! file name (`agent.yaml`, `server.yaml`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use super::BadInput;
use rampart_agent::config_check::{check, detect, CheckError, Kind};

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file (agent.yaml, server.yaml, a policy or a rule file); exits
    /// 2 with `file:line: message` on an error.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// What the files are (default: detected from their content, then their name).
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KindArg {
    /// `agent.yaml` (`rampart agent --config`).
    Agent,
    /// `server.yaml` (`rampart server --config`).
    Server,
    /// An exec and network policy (`rampart policy apply`).
    Policy,
    /// A rule file in Falco's language (`rampart rules check`).
    Rules,
    /// A playbook file (listed under `playbooks:` in agent.yaml).
    Playbooks,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Agent => Kind::Agent,
            KindArg::Server => Kind::Server,
            KindArg::Policy => Kind::Policy,
            KindArg::Rules => Kind::Rules,
            KindArg::Playbooks => Kind::Playbooks,
        }
    }
}

fn check_error(e: CheckError) -> anyhow::Error {
    match e {
        CheckError::Agent(e) => e.into(),
        e if e.is_bad_input() => BadInput(e.to_string()).into(),
        e => e.into(),
    }
}

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Check(a) => {
            let mut failed = None;
            for f in &a.files {
                let kind = match a.kind {
                    Some(k) => k.into(),
                    None => {
                        let text = std::fs::read_to_string(f)
                            .with_context(|| format!("reading {}", f.display()))?;
                        detect(f, &text).ok_or_else(|| {
                            BadInput(format!(
                                "{}: cannot tell what kind of file this is; give --kind agent|server|policy|rules|playbooks",
                                f.display()
                            ))
                        })?
                    }
                };
                match check(f, kind).map_err(check_error) {
                    Ok(extra) => println!("{}: ok, {}{extra}", f.display(), kind.name()),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failed = Some(e);
                    }
                }
            }
            match failed {
                Some(e) => Ok(ExitCode::from(super::exit_code(&e))),
                None => Ok(ExitCode::SUCCESS),
            }
        }
    }
}
