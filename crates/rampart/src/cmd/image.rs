//! `rampart image`: image security. `scan` inventories an image, matches it against the offline
//! vulnerability database and reports; signing and verification join this group later.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use rampart_event::Severity;
use rampart_scan::{
    render_json, render_table, ContentChecks, ImageReader, InventoryCache, Limits, NoProgress,
    Progress, ScanError, ScanOptions, Target, DEFAULT_CACHE_DIR,
};

use super::db::{db_error, DbPath};
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
    Scan(ScanArgs),
    /// Sign an image in its registry (cosign's signature format, ECDSA P-256 key).
    Sign(super::trust::SignArgs),
    /// Verify an image's signatures against keys or a trust policy; exits 1 when it fails.
    Verify(super::trust::VerifyArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Findings grouped by package, for people.
    Table,
    /// Image, summary, OCSF Vulnerability Findings, packages, warnings.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// CycloneDX 1.5 SBOM (JSON).
    Cyclonedx,
    /// SPDX 2.3 SBOM (JSON).
    Spdx,
}

/// Severities for `--fail-on`; `unknown` (records without a severity) ranks below `low`, so
/// `--fail-on unknown` fails on any vulnerability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl FailOn {
    fn severity(self) -> Severity {
        match self {
            FailOn::Unknown => Severity::Unknown,
            FailOn::Low => Severity::Low,
            FailOn::Medium => Severity::Medium,
            FailOn::High => Severity::High,
            FailOn::Critical => Severity::Critical,
        }
    }
}

#[derive(Debug, Args)]
struct ScanArgs {
    /// What to scan (see above).
    target: String,
    #[command(flatten)]
    db: DbPath,
    /// Inventory only: do not read the vulnerability database (implied by SBOM formats).
    #[arg(long)]
    skip_db: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Exit 3 when a vulnerability or another finding (secret, malware, configuration) of this
    /// severity or higher is found (for CI pipelines); exit 4 when nothing of that severity was
    /// found but vulnerabilities could not be matched (no database).
    #[arg(long, value_enum)]
    fail_on: Option<FailOn>,
    /// Extra YARA rule files, run beside the built-in crypto-miner rules.
    #[arg(long = "yara", value_name = "FILE")]
    yara: Vec<PathBuf>,
    /// Do not look for secrets in files.
    #[arg(long)]
    no_secrets: bool,
    /// Do not run YARA rules (crypto-miners, --yara).
    #[arg(long)]
    no_malware: bool,
    /// Leave out vulnerabilities without a published fix.
    #[arg(long)]
    ignore_unfixed: bool,
    /// Warn when the vulnerability database is older than this (`7d`).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    max_db_age: std::time::Duration,
    /// Where inventories are cached by image id.
    #[arg(long, env = "RAMPART_SCAN_CACHE", default_value = DEFAULT_CACHE_DIR)]
    cache_dir: PathBuf,
    /// Do not use or write the inventory cache.
    #[arg(long)]
    no_cache: bool,
    /// Read the image again even when a cached inventory exists.
    #[arg(long)]
    refresh: bool,
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

fn scan(a: ScanArgs) -> anyhow::Result<ExitCode> {
    let target = Target::parse(&a.target);
    let sbom = matches!(a.format, Format::Cyclonedx | Format::Spdx);
    // A missing or unusable database does not stop the scan: the inventory, secrets, malware
    // and configuration checks still run, and the report says vulnerabilities were not matched.
    let mut not_matched = None;
    let db = if a.skip_db || sbom {
        None
    } else {
        match rampart_scan::open_for_scan(&a.db.path).map_err(db_error)? {
            Ok(db) => Some(db),
            Err(why) => {
                eprintln!("warning: vulnerabilities not matched: {why}");
                not_matched = Some(why);
                None
            }
        }
    };
    let checks = ContentChecks {
        secrets: !a.no_secrets,
        malware: !a.no_malware,
        yara_files: a.yara.clone(),
    };
    let reader = ImageReader::with_checks(Limits::default(), &checks)
        .map_err(|e| BadInput(e.to_string()))?;
    // Inventories depend on the content checks: only the default set is cached.
    let default_checks = checks == ContentChecks::default();
    let opts = ScanOptions {
        cache: (!a.no_cache && default_checks).then(|| InventoryCache::new(&a.cache_dir)),
        refresh: a.refresh,
    };
    let bar = std::io::stderr().is_terminal().then(Bar::new);
    let progress: &dyn Progress = match &bar {
        Some(b) => b,
        None => &NoProgress,
    };
    let result = rampart_scan::scan(&reader, &target, db.as_ref(), &opts, progress);
    if let Some(b) = &bar {
        b.bar.finish_and_clear();
    }
    let mut report = result.map_err(|e| match e {
        ScanError::Image(e) if e.is_refusal() => BadInput(e.to_string()).into(),
        ScanError::Image(e) => anyhow::Error::new(e),
        ScanError::Db(e) => db_error(e),
    })?;
    report.not_matched = not_matched.clone();
    if report.mark_stale(a.max_db_age) {
        if let Some(info) = &report.db {
            eprintln!("warning: {}", info.describe());
        }
    }
    if a.ignore_unfixed {
        report
            .matches
            .findings
            .retain(|f| f.fixed_version.is_some());
    }
    let text = match a.format {
        Format::Table => {
            let ansi = a.output.is_none() && std::io::stdout().is_terminal();
            render_table(&report, ansi)
        }
        Format::Json => render_json(&report),
        Format::Sarif => rampart_scan::render_sarif(&report),
        Format::Cyclonedx => rampart_scan::render_cyclonedx(&report),
        Format::Spdx => rampart_scan::render_spdx(&report),
    };
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
    if let Some(threshold) = a.fail_on {
        if report
            .worst_severity()
            .is_some_and(|w| w >= threshold.severity())
        {
            return Ok(ExitCode::from(3));
        }
        if not_matched.is_some() {
            // The gate cannot pass an image whose vulnerabilities were never looked at.
            eprintln!("error: --fail-on: vulnerabilities were not matched; failing the gate");
            return Ok(ExitCode::from(4));
        }
    }
    Ok(ExitCode::SUCCESS)
}
