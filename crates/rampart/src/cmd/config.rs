//! `rampart config check FILE`: validates an agent, server, policy or rule file the way the
//! command that reads it would, and reports errors as `file:line[:column]: message`.
//!
//! The kind comes from `--kind`, else from the content (a YAML sequence is a rule file; the
//! top-level keys tell a policy, a server and an agent configuration apart), else from the
//! file name (`agent.yaml`, `server.yaml`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::BadInput;
use rampart_agent::config_check::{check, kind_of, CheckError, Kind};

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
    kind: Option<Kind>,
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
                let kind = kind_of(f, a.kind).map_err(check_error)?;
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
