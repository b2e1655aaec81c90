//! `rampart harden CONTAINER`: a hardened `docker run` line and compose service learned from
//! what the container does. `rampart harden host --userns`: user-namespace remapping for the
//! daemon (daemon.json, /etc/subuid, /etc/subgid), dry-run unless `--apply`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use rampart_audit::harden::{self, HardenOptions};
use rampart_audit::learn::{self, LearnOptions, Recording};

use super::audit::{connect, lib_err, runtime};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct HardenArgs {
    #[command(subcommand)]
    command: Option<HardenCommand>,
    /// Container name or id (a container named `host`: give its id).
    #[arg(required = true)]
    container: Option<String>,
    /// How long to observe it (e.g. 60s, 5m), unless --recording is given.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Restart the container under the recorder so its start-up is observed too.
    #[arg(long)]
    restart: bool,
    /// Use a saved recording (`rampart profile seccomp --recording FILE`) instead of observing.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["restart"])]
    recording: Option<PathBuf>,
    /// Where to write the learned seccomp profile [default: ./CONTAINER.seccomp.json].
    #[arg(long, value_name = "PROFILE.json")]
    profile_out: Option<PathBuf>,
    /// The AppArmor profile learned for the container (`rampart profile apparmor`) and loaded
    /// with `apparmor_parser -r`: the run line gets --security-opt apparmor=NAME.
    #[arg(long, value_name = "NAME")]
    apparmor: Option<String>,
    /// Multiplier for observed peaks when sizing limits.
    #[arg(long, default_value_t = 1.5)]
    headroom: f64,
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
    Host(super::harden_host::HostArgs),
}

pub fn run(a: HardenArgs) -> anyhow::Result<ExitCode> {
    if let Some(HardenCommand::Host(h)) = a.command {
        return super::harden_host::run(h);
    }
    let container = a.container.clone().unwrap_or_default();
    if !(a.headroom >= 1.0 && a.headroom <= 10.0) {
        return Err(super::BadInput(format!(
            "--headroom {} must be between 1.0 and 10.0",
            a.headroom
        ))
        .into());
    }
    let rt = runtime()?;
    let (rec, facts) = rt.block_on(async {
        let docker = connect(&a.docker_socket).await?;
        let rec = match &a.recording {
            Some(p) => Recording::load(p).map_err(lib_err)?,
            None => {
                eprintln!(
                    "observing {} for {} ...",
                    container,
                    humantime::format_duration(a.duration)
                );
                let opts = LearnOptions {
                    duration: a.duration,
                    restart: a.restart,
                    ..LearnOptions::default()
                };
                learn::learn(&docker, &container, &opts)
                    .await
                    .map_err(lib_err)?
            }
        };
        let facts = harden::docker_facts(&docker, &container)
            .await
            .map_err(lib_err)?;
        anyhow::Ok((rec, facts))
    })?;
    let profile_path = a
        .profile_out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.seccomp.json", rec.container)));
    rec.profile().save(&profile_path).map_err(lib_err)?;
    let abs = profile_path
        .canonicalize()
        .unwrap_or_else(|_| profile_path.clone());
    let opts = HardenOptions {
        headroom: a.headroom,
        profile_path: Some(abs.display().to_string()),
        daemon_userns_remap: facts.daemon_userns_remap,
        apparmor_profile: a.apparmor.clone(),
    };
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
