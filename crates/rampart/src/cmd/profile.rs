//! `rampart profile`: seccomp profiles learned from what a container really does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use rampart_audit::learn::{self, LearnOptions};
use rampart_audit::seccomp::{self, SeccompProfile};

use super::audit::{connect, lib_err, runtime};

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(subcommand)]
    command: ProfileCommand,
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Record the syscalls CONTAINER makes and write a Docker seccomp profile (default deny,
    /// allow-list) that the same workload runs under. The container must run with
    /// --security-opt seccomp=unconfined or the learning profile (see `learning-profile`),
    /// because Docker's default profile refuses syscalls before the recorder sees them.
    Seccomp(SeccompArgs),
    /// Merge profiles learned from several recordings into one (the union of their
    /// allow-lists).
    Merge(MergeArgs),
    /// Write the allow-all learning profile: run the container with
    /// --security-opt seccomp=FILE while learning, so only what the container needs once its
    /// own filter is in place is recorded (tighter than learning unconfined).
    LearningProfile(LearningArgs),
}

#[derive(Debug, Args)]
struct SeccompArgs {
    /// Container name or id.
    container: String,
    /// How long to record (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Where to write the profile.
    #[arg(short, long, value_name = "PROFILE.json")]
    output: PathBuf,
    /// Restart the container under the recorder so its start-up is learned too (needed for a
    /// profile the container can start with).
    #[arg(long)]
    restart: bool,
    /// Merge the learned syscalls into these existing profiles' (repeatable).
    #[arg(long, value_name = "PROFILE.json")]
    merge: Vec<PathBuf>,
    /// Also save the raw recording (syscall counts, capability checks, writes, peaks).
    #[arg(long, value_name = "FILE")]
    recording: Option<PathBuf>,
    /// Docker Engine socket.
    #[arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")]
    docker_socket: PathBuf,
}

#[derive(Debug, Args)]
struct MergeArgs {
    /// Profiles to merge.
    #[arg(required = true, num_args = 1..)]
    profiles: Vec<PathBuf>,
    /// Where to write the merged profile.
    #[arg(short, long, value_name = "PROFILE.json")]
    output: PathBuf,
}

#[derive(Debug, Args)]
struct LearningArgs {
    /// Where to write it (standard output when omitted).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: ProfileArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ProfileCommand::Seccomp(a) => seccomp_cmd(a),
        ProfileCommand::Merge(a) => {
            let profile = merge_files(&a.profiles, None)?;
            profile.save(&a.output).map_err(lib_err)?;
            eprintln!(
                "wrote {} ({} syscalls allowed, merged from {} profiles)",
                a.output.display(),
                profile.allowed().map(|s| s.len()).unwrap_or(0),
                a.profiles.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        ProfileCommand::LearningProfile(a) => {
            let p = seccomp::learning_profile();
            match &a.output {
                Some(path) => p.save(path).map_err(lib_err)?,
                None => println!("{}", serde_json::to_string_pretty(&p)?),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn merge_files(
    paths: &[PathBuf],
    extra: Option<(&Path, &SeccompProfile)>,
) -> anyhow::Result<SeccompProfile> {
    let loaded: Vec<(PathBuf, SeccompProfile)> = paths
        .iter()
        .map(|p| {
            SeccompProfile::load(p)
                .map(|sp| (p.clone(), sp))
                .map_err(lib_err)
        })
        .collect::<Result<_, _>>()?;
    let mut refs: Vec<(&Path, &SeccompProfile)> =
        loaded.iter().map(|(p, s)| (p.as_path(), s)).collect();
    if let Some(e) = extra {
        refs.push(e);
    }
    seccomp::merge(&refs).map_err(lib_err)
}

fn seccomp_cmd(a: SeccompArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let rec = rt.block_on(async {
        let docker = connect(&a.docker_socket).await?;
        eprintln!(
            "recording {} for {}{} ...",
            a.container,
            humantime::format_duration(a.duration),
            if a.restart {
                " (restarting it first)"
            } else {
                ""
            }
        );
        let opts = LearnOptions {
            duration: a.duration,
            restart: a.restart,
            ..LearnOptions::default()
        };
        learn::learn(&docker, &a.container, &opts)
            .await
            .map_err(lib_err)
    })?;
    let learned = rec.profile();
    let profile = if a.merge.is_empty() {
        learned
    } else {
        merge_files(&a.merge, Some((Path::new("<this recording>"), &learned)))?
    };
    profile.save(&a.output).map_err(lib_err)?;
    if let Some(r) = &a.recording {
        rec.save(r).map_err(lib_err)?;
    }
    for w in &rec.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "learned {} syscalls of {} ({:?}); wrote {} allowing {}. Run it with: docker run --security-opt seccomp={} ...",
        rec.syscalls.names.len(),
        rec.container,
        rec.mode,
        a.output.display(),
        profile.allowed().map(|s| s.len()).unwrap_or(0),
        a.output.canonicalize().unwrap_or_else(|_| a.output.clone()).display()
    );
    Ok(ExitCode::SUCCESS)
}
