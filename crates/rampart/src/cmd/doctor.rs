//! `rampart doctor`: the options are `rampart_agent::doctor::DoctorOptions`; the checks are
//! `rampart_agent::doctor`.

use std::process::ExitCode;

use clap::Args;
use rampart_agent::doctor::{self, DoctorOptions, Status};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    options: DoctorOptions,
    /// One JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
}

/// Prints every check; exit code 1 when any failed.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let out = doctor::check(&args.options)?;
    print!("{}", doctor::render(&out, args.json));
    Ok(if out.iter().any(|f| f.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
