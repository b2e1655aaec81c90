//! `rampart image`: image security. `scan` inventories an image, matches it against the offline
//! vulnerability database and reports; signing and verification join this group later.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rampart_scan::{Gate, NoProgress, Progress, ScanError, ScanRequest, Scanned};

use super::db::db_error;
use super::BadInput;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Scan an image: packages, vulnerabilities (offline database), and report.
    ///
    /// TARGET is an image of the local Docker daemon (name or id), a `docker save` tarball, an
    /// OCI image layout (directory or tar), a root filesystem directory, or `container:NAME`.
    /// Prefixes force a kind: docker:, archive:, oci:, dir:, container:.
    Scan(ScanRequest),
    /// Sign an image in its registry (cosign's signature format, ECDSA P-256 key).
    Sign(super::trust::SignArgs),
    /// Verify an image's signatures against keys or a trust policy; exits 1 when it fails.
    Verify(super::trust::VerifyArgs),
}

/// A progress bar on standard error, drawn only when it is a terminal.
struct Bar {
    bar: indicatif::ProgressBar,
}

impl Bar {
    fn new() -> Bar {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg:<24} {bar:30} {binary_bytes:>9}/{binary_total_bytes:<9} {binary_bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Bar { bar }
    }
}

impl Progress for Bar {
    fn begin(&self, what: &str, total: Option<u64>) {
        self.bar.reset();
        self.bar.set_length(total.unwrap_or(0));
        self.bar.set_message(what.to_string());
        self.bar
            .enable_steady_tick(std::time::Duration::from_millis(120));
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn end(&self) {
        self.bar.disable_steady_tick();
    }
}

pub fn run(args: ImageArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ImageCommand::Scan(a) => scan(a),
        ImageCommand::Sign(a) => super::trust::sign(a),
        ImageCommand::Verify(a) => super::trust::verify(a),
    }
}

fn scan(a: ScanRequest) -> anyhow::Result<ExitCode> {
    let db = a.open_db().map_err(db_error)?;
    if let Some(why) = &db.not_matched {
        eprintln!("warning: vulnerabilities not matched: {why}");
    }
    let reader = a.reader().map_err(|e| BadInput(e.to_string()))?;
    let bar = std::io::stderr().is_terminal().then(Bar::new);
    let progress: &dyn Progress = match &bar {
        Some(b) => b,
        None => &NoProgress,
    };
    let result = a.scan(&reader, db, progress);
    if let Some(b) = &bar {
        b.bar.finish_and_clear();
    }
    let Scanned { report, warnings } = result.map_err(|e| match e {
        ScanError::Image(e) if e.is_refusal() => BadInput(e.to_string()).into(),
        ScanError::Image(e) => anyhow::Error::new(e),
        ScanError::Db(e) => db_error(e),
    })?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let ansi = a.output.is_none() && std::io::stdout().is_terminal();
    let text = a.format.render(&report, ansi);
    match &a.output {
        Some(p) => std::fs::write(p, text.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            if !text.ends_with('\n') {
                writeln!(out)?;
            }
            out.flush()?;
        }
    }
    for w in report
        .inventory
        .warnings
        .iter()
        .chain(&report.matches.warnings)
    {
        tracing::debug!(path = %w.path, line = ?w.line, "{}", w.message);
    }
    if a.gate(&report) == Some(Gate::NotMatched) {
        // The gate cannot pass an image whose vulnerabilities were never looked at.
        eprintln!("error: --fail-on: vulnerabilities were not matched; failing the gate");
    }
    Ok(ExitCode::from(a.gate(&report).map_or(0, Gate::exit_code)))
}
