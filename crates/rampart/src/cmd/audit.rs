//! `rampart audit host|containers|image`: hardening audits with a score per subject.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use rampart_audit::host::HostOptions;
use rampart_audit::{ContainerAuditOptions, Detail, Report};
use rampart_container::DockerClient;
use rampart_event::Severity;

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
    Host(HostArgs),
    /// CIS section 5 checks (and Rampart's) for running containers: all of them, or NAMEs.
    Containers(ContainersArgs),
    /// CIS section 4 checks for an image.
    Image(ImageArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people: problems with evidence and the fix.
    Table,
    /// One JSON document: subjects, scores, OCSF findings.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// One OCSF Compliance Finding (2003) per line, for the server.
    Ocsf,
}

#[derive(Debug, Args)]
struct Output {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Exit with 1 when a failed check is at least this severe (low, medium, high, critical).
    #[arg(long, value_name = "SEVERITY")]
    fail_on: Option<Severity>,
    /// Show passed and not-applicable checks in the table too.
    #[arg(long)]
    all: bool,
    /// Write the report to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Docker Engine socket.
    #[arg(long, default_value = rampart_container::DEFAULT_SOCKET, env = "RAMPART_DOCKER_SOCKET")]
    docker_socket: PathBuf,
}

#[derive(Debug, Args)]
struct HostArgs {
    #[command(flatten)]
    out: Output,
    /// The daemon configuration file to check.
    #[arg(long, default_value = rampart_audit::host::daemon::DAEMON_JSON)]
    daemon_json: PathBuf,
    /// Do not load BPF programs to probe the kernel.
    #[arg(long)]
    no_bpf: bool,
}

#[derive(Debug, Args)]
struct ContainersArgs {
    /// Containers (names or ids); every running container when none is given.
    names: Vec<String>,
    #[command(flatten)]
    out: Output,
    /// A registry images may come from (repeatable; e.g. docker.io, ghcr.io/myorg).
    #[arg(long = "allowed-registry", value_name = "REGISTRY")]
    allowed_registries: Vec<String>,
    /// The daemon configuration file (for daemon-wide defaults such as no-new-privileges).
    #[arg(long, default_value = rampart_audit::host::daemon::DAEMON_JSON)]
    daemon_json: PathBuf,
}

#[derive(Debug, Args)]
struct ImageArgs {
    /// The image (name:tag, name@digest or id).
    image: String,
    #[command(flatten)]
    out: Output,
    /// A registry images may come from (repeatable).
    #[arg(long = "allowed-registry", value_name = "REGISTRY")]
    allowed_registries: Vec<String>,
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
                let opts = HostOptions {
                    daemon_json: a.daemon_json.clone(),
                    probe_bpf: !a.no_bpf,
                    ..HostOptions::default()
                };
                rampart_audit::audit_host(docker.as_ref(), &opts)
                    .await
                    .map_err(lib_err)
            })?;
            emit(&report, &a.out)
        }
        AuditCommand::Containers(a) => {
            let report = rt.block_on(async {
                let docker = connect(&a.out.docker_socket).await?;
                let opts = ContainerAuditOptions {
                    allowed_registries: a.allowed_registries.clone(),
                    daemon_json: a.daemon_json.clone(),
                    ..ContainerAuditOptions::default()
                };
                rampart_audit::audit_containers(&docker, &a.names, &opts)
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

fn emit(report: &Report, out: &Output) -> anyhow::Result<ExitCode> {
    let text = match out.format {
        Format::Table => report.table(if out.all {
            Detail::All
        } else {
            Detail::Problems
        }),
        Format::Json => serde_json::to_string_pretty(&report.json())? + "\n",
        Format::Sarif => serde_json::to_string_pretty(&report.sarif())? + "\n",
        Format::Ocsf => report.ocsf_lines(),
    };
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
    if let Some(threshold) = out.fail_on {
        if report.fails_at(threshold) {
            eprintln!(
                "rampart audit: a failed check is {threshold} or worse (--fail-on {threshold})"
            );
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
