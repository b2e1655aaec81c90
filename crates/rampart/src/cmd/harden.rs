//! `rampart harden CONTAINER`: a hardened `docker run` line and compose service learned from
//! what the container does. `rampart harden host --userns`: user-namespace remapping for the
//! daemon (daemon.json, /etc/subuid, /etc/subgid), dry-run unless `--apply`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use rampart_audit::harden;
use rampart_audit::learn::{self, Recording};

use super::audit::{connect, lib_err, runtime};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct HardenArgs {
    #[command(subcommand)]
    command: Option<HardenCommand>,
    /// Container name or id (a container named `host`: give its id).
    #[arg(required = true)]
    container: Option<String>,
    #[command(flatten)]
    learn: rampart_audit::HardenObserveArgs,
    /// `text` (run line, compose service, notes) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Docker Engine socket.
    #[arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")]
    docker_socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum HardenCommand {
    /// Harden the Docker host: `--userns` turns on user-namespace remapping.
    Host(super::harden_host::UsernsArgs),
}

pub fn run(a: HardenArgs) -> anyhow::Result<ExitCode> {
    if let Some(HardenCommand::Host(h)) = a.command {
        return super::harden_host::run(h);
    }
    let container = a.container.clone().unwrap_or_default();
    let l = &a.learn;
    l.validate().map_err(lib_err)?;
    let rt = runtime()?;
    let (rec, facts) = rt.block_on(async {
        let docker = connect(&a.docker_socket).await?;
        let rec = match &l.recording {
            Some(p) => Recording::load(p).map_err(lib_err)?,
            None => {
                eprintln!(
                    "observing {} for {} ...",
                    container,
                    humantime::format_duration(l.duration)
                );
                learn::learn(&docker, &container, &l.learn_options())
                    .await
                    .map_err(lib_err)?
            }
        };
        let facts = harden::docker_facts(&docker, &container)
            .await
            .map_err(lib_err)?;
        anyhow::Ok((rec, facts))
    })?;
    let profile_path = l.profile_path(&rec.container);
    rec.profile().save(&profile_path).map_err(lib_err)?;
    let abs = profile_path
        .canonicalize()
        .unwrap_or_else(|_| profile_path.clone());
    let opts = l.options(&abs, facts.daemon_userns_remap);
    let proposal = harden::propose(&facts.inspect, &facts.image, &rec, &opts);
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run": proposal.run_line(),
                "compose": proposal.compose(),
                "proposal": proposal,
                "seccomp_profile": abs,
            }))?
        ),
        Format::Text => print!("{}", harden::proposal_text(&proposal, &abs)),
    }
    Ok(ExitCode::SUCCESS)
}
