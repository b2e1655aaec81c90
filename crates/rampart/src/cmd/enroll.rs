//! `rampart enroll --server URL --token T`: gets this agent a client certificate from the
//! server's CA. The key pair is made here and the private key never leaves the host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rampart_ship::enroll::EnrollError;

use crate::cmd::BadInput;

/// Default credentials directory; the agent's `ship.outputs[].tls_dir` points here.
pub const DEFAULT_TLS_DIR: &str = "/var/lib/rampart/agent/tls";

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The server, `https://host:port`.
    #[arg(long)]
    server: String,
    /// The enrollment token (`rampart server enroll-token`); it carries the region and the
    /// fingerprint of the server's CA.
    #[arg(long, env = "RAMPART_ENROLL_TOKEN")]
    token: String,
    /// Where to write `ca.crt`, `agent.crt`, `agent.key` (0600) and `enrollment.json`.
    #[arg(long, default_value = DEFAULT_TLS_DIR)]
    dir: PathBuf,
    /// Host name the server records for this agent (default: the kernel's hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// Replace an existing enrollment in `--dir`.
    #[arg(long)]
    force: bool,
}

pub fn run(args: EnrollArgs) -> anyhow::Result<ExitCode> {
    let hostname = args
        .hostname
        .clone()
        .unwrap_or_else(rampart_event::hostname);
    let rt = super::runtime()?;
    let e = rt
        .block_on(rampart_ship::enroll::enroll(
            &args.server,
            &args.token,
            &hostname,
            &args.dir,
            args.force,
        ))
        .map_err(|e| match e {
            EnrollError::Token(_) | EnrollError::Exists { .. } | EnrollError::Refused { .. } => {
                anyhow::Error::new(BadInput(e.to_string()))
            }
            other => anyhow::Error::new(other),
        })?;
    println!(
        "enrolled as {} (region {}, host {}); credentials in {}, valid until {}",
        e.agent_id,
        e.region,
        e.hostname,
        args.dir.display(),
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(e.not_after.max(0) as u64)
        )
    );
    Ok(ExitCode::SUCCESS)
}
