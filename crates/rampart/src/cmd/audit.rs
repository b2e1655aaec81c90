//! `rampart audit host|containers|image`: hardening audits with a score per subject.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_audit::{AuditOutput, ContainersAuditArgs, HostAuditArgs, ImageAuditArgs, Report};
use rampart_container::DockerClient;

use super::BadInput;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// What this host can and cannot do for container isolation, measured (kernel, LSMs,
    /// cgroups, sysctls, BPF), the Docker daemon's configuration (CIS sections 1-3), and the
    /// Rampart protections available here with what to change for the missing ones.
    Host(HostAuditArgs),
    /// CIS section 5 checks (and Rampart's) for running containers: all of them, or NAMEs.
    Containers(ContainersAuditArgs),
    /// CIS section 4 checks for an image.
    Image(ImageAuditArgs),
}

pub(crate) use super::runtime;

pub(crate) async fn connect(socket: &std::path::Path) -> anyhow::Result<DockerClient> {
    DockerClient::connect(socket).await.with_context(|| {
        format!(
            "connecting to dockerd at {} (is it running?)",
            socket.display()
        )
    })
}

/// Maps library errors that are the user's input to exit code 2.
pub(crate) fn lib_err(e: rampart_audit::AuditError) -> anyhow::Error {
    if e.is_bad_input() {
        anyhow::Error::new(BadInput(e.to_string()))
    } else {
        anyhow::Error::new(e)
    }
}

pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match args.command {
        AuditCommand::Host(a) => {
            let report = rt.block_on(async {
                // The host audit works without Docker; the daemon checks need it.
                let docker = DockerClient::connect(&a.out.docker_socket).await.ok();
                rampart_audit::audit_host(docker.as_ref(), &a.options())
                    .await
                    .map_err(lib_err)
            })?;
            emit(&report, &a.out)
        }
        AuditCommand::Containers(a) => {
            let report = rt.block_on(async {
                let docker = connect(&a.out.docker_socket).await?;
                rampart_audit::audit_containers(&docker, &a.names, &a.options())
                    .await
                    .map_err(lib_err)
            })?;
            emit(&report, &a.out)
        }
        AuditCommand::Image(a) => {
            let report = rt.block_on(async {
                let docker = connect(&a.out.docker_socket).await?;
                rampart_audit::audit_image(&docker, &a.image, &a.allowed_registries)
                    .await
                    .map_err(lib_err)
            })?;
            emit(&report, &a.out)
        }
    }
}

fn emit(report: &Report, out: &AuditOutput) -> anyhow::Result<ExitCode> {
    let text = out.render(report);
    match &out.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    if let Some(threshold) = out.failed_threshold(report) {
        eprintln!("rampart audit: a failed check is {threshold} or worse (--fail-on {threshold})");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
