//! `rampart key generate`: an ECDSA P-256 key pair in cosign's formats.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rampart_trust::{password_from_env, PrivateKey};

use super::BadInput;

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Write PREFIX.key (private, mode 0600) and PREFIX.pub (PEM public key).
    ///
    /// With a password (RAMPART_KEY_PASSWORD or COSIGN_PASSWORD in the environment) the private
    /// key is encrypted as cosign encrypts it (`ENCRYPTED SIGSTORE PRIVATE KEY`: scrypt +
    /// NaCl secretbox), so `cosign sign --key PREFIX.key` reads it; without one it is a plain
    /// PKCS#8 `PRIVATE KEY`.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Path prefix of the two files.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PREFIX",
        default_value = "cosign"
    )]
    prefix: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: KeyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeyCommand::Generate(a) => {
            let key = PrivateKey::generate();
            let password = password_from_env();
            let (kp, pp) =
                rampart_trust::write_key_pair(&key, &a.prefix, password.as_deref(), a.force)
                    .map_err(|e| match e {
                        e if e.is_bad_input() => anyhow::Error::new(BadInput(e.to_string())),
                        e => e.into(),
                    })?;
            println!(
                "Private key written to {} ({}), public key to {} (key id {})",
                kp.display(),
                if password.is_some() {
                    "encrypted"
                } else {
                    "not encrypted: set RAMPART_KEY_PASSWORD to encrypt"
                },
                pp.display(),
                key.public().key_id()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
