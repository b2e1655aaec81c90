//! `rampart doctor`: the arguments; the checks are `rampart_agent::doctor`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rampart_agent::doctor::{self, DoctorOptions, Status};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Agent configuration to check and take the Docker socket from (default:
    /// /etc/rampart/agent.yaml when it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// State directory whose ownership and permissions are checked.
    #[arg(long, default_value = "/var/lib/rampart")]
    state_dir: PathBuf,
    /// Rampart server whose clock is compared with this host's (`https://HOST:8443`).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Credentials from `rampart enroll` (ca.crt, agent.crt, agent.key), used with --server.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/rampart/tls")]
    tls_dir: PathBuf,
    /// Clock difference with the server above which the check fails (`2s`, `1m`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    max_skew: Duration,
    /// One JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
}

/// Prints every check; exit code 1 when any failed.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let out = doctor::check(&DoctorOptions {
        config: args.config,
        state_dir: args.state_dir,
        server: args.server,
        tls_dir: args.tls_dir,
        max_skew: args.max_skew,
    })?;
    print!("{}", doctor::render(&out, args.json));
    Ok(if out.iter().any(|f| f.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
