//! `rampart forensics`: check forensic bundles.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rampart_respond::forensics;

use super::BadInput;

#[derive(Debug, Args)]
pub struct ForensicsArgs {
    #[command(subcommand)]
    command: ForensicsCommand,
}

#[derive(Debug, Subcommand)]
enum ForensicsCommand {
    /// Check every hash of a bundle and its signature; name every entry altered, missing or
    /// added. Exits 0 when intact, 1 when not, 2 when the file is not a bundle.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The bundle (`.tar.zst`) from `rampart respond forensics` or a playbook.
    bundle: PathBuf,
    /// The agent's public key (hex, or a `.pub` file): also require that it signed the bundle.
    #[arg(long)]
    key: Option<String>,
}

pub fn run(args: ForensicsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ForensicsCommand::Verify(a) => {
            let trusted = a
                .key
                .as_deref()
                .map(forensics::read_public_key)
                .transpose()
                .map_err(|e| BadInput(e.to_string()))?;
            let v = forensics::verify(&a.bundle, trusted.as_deref()).map_err(|e| match e {
                forensics::ForensicsError::NotABundle { .. } => {
                    anyhow::Error::new(BadInput(e.to_string()))
                }
                other => other.into(),
            })?;
            print!(
                "{}",
                v.text(&a.bundle.display().to_string(), trusted.is_some())
            );
            Ok(ExitCode::from(u8::from(!v.ok())))
        }
    }
}
