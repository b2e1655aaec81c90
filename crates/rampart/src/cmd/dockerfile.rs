//! `rampart dockerfile lint`: the important hadolint-class rules, with line numbers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use rampart_event::Severity;
use rampart_scan::lint::lint_dockerfile;

#[derive(Debug, Args)]
pub struct DockerfileArgs {
    #[command(subcommand)]
    command: DockerfileCommand,
}

#[derive(Debug, Subcommand)]
enum DockerfileCommand {
    /// Lint Dockerfiles: pinned base images, USER, multi-stage builds, ADD of URLs, package
    /// caches, secrets in ARG/ENV, COPY --chown, SSH, sudo, curl | sh. One line per finding:
    /// FILE:LINE SEVERITY RULE message.
    Lint(LintArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Args)]
struct LintArgs {
    /// Dockerfiles (default: ./Dockerfile).
    files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 3 when a finding of this severity or higher is found.
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
}

pub fn run(args: DockerfileArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DockerfileCommand::Lint(a) => lint(a),
    }
}

fn lint(a: LintArgs) -> anyhow::Result<ExitCode> {
    let files = if a.files.is_empty() {
        vec![PathBuf::from("Dockerfile")]
    } else {
        a.files
    };
    let mut all = Vec::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        all.extend(lint_dockerfile(&f.display().to_string(), &text));
    }
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
        Format::Text => {
            for f in &all {
                writeln!(out, "{}", f.lint_line())?;
            }
        }
    }
    if let Some(t) = a.fail_on {
        let threshold = match t {
            FailOn::Low => Severity::Low,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        };
        if all.iter().any(|f| f.severity >= threshold) {
            return Ok(ExitCode::from(3));
        }
    }
    Ok(ExitCode::SUCCESS)
}
