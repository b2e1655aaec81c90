//! `rampart profile`: seccomp profiles learned from what a container really does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_audit::learn;
use rampart_audit::seccomp::{self, SeccompProfile};
use rampart_audit::{AppArmorArgs, SeccompLearnArgs};

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
    Seccomp(SeccompLearnArgs),
    /// Merge profiles learned from several recordings into one (the union of their
    /// allow-lists).
    Merge(MergeArgs),
    /// Learn an AppArmor profile from what CONTAINER does (executables, files written,
    /// sensitive files read, sockets, capabilities), or with --check say what it did that a
    /// profile would refuse. Load it with `apparmor_parser -r PROFILE` and run the container
    /// with --security-opt apparmor=NAME.
    Apparmor(AppArmorArgs),
    /// Write the allow-all learning profile: run the container with
    /// --security-opt seccomp=FILE while learning, so only what the container needs once its
    /// own filter is in place is recorded (tighter than learning unconfined).
    LearningProfile(LearningArgs),
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
        ProfileCommand::Apparmor(a) => apparmor_cmd(a),
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
    seccomp::merge_files(paths, extra).map_err(lib_err)
}

fn seccomp_cmd(a: SeccompLearnArgs) -> anyhow::Result<ExitCode> {
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
        learn::learn(&docker, &a.container, &a.learn_options())
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

fn apparmor_cmd(a: AppArmorArgs) -> anyhow::Result<ExitCode> {
    use rampart_audit::apparmor::{self, Observed, ProfileRules};
    let (events, seen, caps, cname, image, warnings) = match &a.events {
        Some(f) => {
            let (events, seen) = apparmor::events_from_file(f, &a.container).map_err(lib_err)?;
            (
                events,
                seen,
                None,
                a.container.clone(),
                String::new(),
                Vec::new(),
            )
        }
        None => {
            let rt = runtime()?;
            let rec = rt.block_on(async {
                let docker = connect(&a.docker_socket).await?;
                eprintln!(
                    "recording {} for {} ...",
                    a.container,
                    humantime::format_duration(a.duration)
                );
                apparmor::record(&docker, &a.container, a.duration)
                    .await
                    .map_err(lib_err)
            })?;
            (
                rec.events,
                rec.seen,
                rec.capabilities,
                rec.container_name,
                rec.image,
                rec.warnings,
            )
        }
    };
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if let Some(profile) = &a.check {
        let text = std::fs::read_to_string(profile)
            .with_context(|| format!("reading {}", profile.display()))?;
        let rules = ProfileRules::parse(&text, &profile.display().to_string()).map_err(lib_err)?;
        let v = rules.check(&events);
        for r in &rules.not_judged {
            eprintln!("note: not judged: {r}");
        }
        let shown = profile.display().to_string();
        print!("{}", apparmor::check_text(&shown, &cname, seen, &v));
        return Ok(ExitCode::from(u8::from(!v.is_empty())));
    }
    let Some(output) = &a.output else {
        anyhow::bail!("--output PROFILE is needed to learn a profile");
    };
    let o = Observed::from_events(&events, caps);
    let name = a.profile_name(&cname);
    let header = apparmor::profile_header(&cname, &image, seen, &a.how());
    let text = o.profile(&name, a.complain, &header);
    std::fs::write(output, &text).with_context(|| format!("writing {}", output.display()))?;
    eprintln!(
        "wrote {} (profile {name}: {}). Load it with: apparmor_parser -r {}; run the container with --security-opt apparmor={name}",
        output.display(),
        o.summary(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}
