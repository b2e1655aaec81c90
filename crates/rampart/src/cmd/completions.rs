//! `rampart completions SHELL` and `rampart manpages DIR`: generated from the clap tree, so
//! every subcommand (present and future) is covered without a hand-kept list.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManpagesArgs {
    /// Directory to write `rampart.1` and one page per subcommand (`rampart-agent.1`, ...) to.
    dir: PathBuf,
}

/// Prints the completion script for `shell` on stdout.
pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    // Rendered into memory first: clap_complete panics on a write error (`| head`).
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "rampart", &mut buf);
    match std::io::Write::write_all(&mut std::io::stdout().lock(), &buf) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Writes the man pages into `args.dir` (created when missing).
pub fn manpages(args: ManpagesArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut cmd = crate::Cli::command();
    cmd.build();
    let n = write_page(&cmd, &args.dir)?;
    eprintln!("{n} man pages written to {}", args.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `cmd` and its visible subcommands'; returns the count. After
/// `Command::build` a subcommand's display name is its full name (`rampart-agent`).
fn write_page(cmd: &clap::Command, dir: &Path) -> anyhow::Result<usize> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .with_context(|| format!("rendering {}", path.display()))?;
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() != "help" {
            n += write_page(sub, dir)?;
        }
    }
    Ok(n)
}
