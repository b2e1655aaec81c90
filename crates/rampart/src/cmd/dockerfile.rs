//! `rampart dockerfile lint`: the important hadolint-class rules, with line numbers. The options
//! are `rampart_scan::lint::LintArgs`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_scan::lint::{lint_dockerfile, LintArgs};

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

pub fn run(args: DockerfileArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DockerfileCommand::Lint(a) => lint(a),
    }
}

fn lint(a: LintArgs) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    for f in &a.files() {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        all.extend(lint_dockerfile(&f.display().to_string(), &text));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(a.render(&all)?.as_bytes())?;
    Ok(ExitCode::from(if a.fails(&all) { 3 } else { 0 }))
}
