//! `rampart db`: the offline vulnerability database (import OSV data, show what it holds).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
pub use rampart_scan::DbPath;
use rampart_scan::{DbError, UpdateArgs, VulnDb};

use super::BadInput;

#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Import OSV data: directories of OSV JSON/YAML (RustSec's OSV export, Go's vulndb
    /// data/osv, the PyPA advisory database), zips of them (osv.dev's per-ecosystem all.zip), or
    /// single files. Re-importing a source only reads what changed and drops records that left it.
    Import(ImportArgs),
    /// Fetch OSV's per-ecosystem exports (`<base>/<ecosystem>/all.zip`) and import what
    /// changed. Conditional requests (ETag / If-Modified-Since); each zip is verified (whole,
    /// every record parsed, size caps) and the database is replaced atomically: a failed or
    /// interrupted update leaves the old one in use. Exits 1 when an ecosystem failed.
    Update(UpdateCmd),
    /// Show the database: sources, record counts per ecosystem, age, size.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct UpdateCmd {
    #[command(flatten)]
    args: UpdateArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// OSV sources to import, in order.
    #[arg(required = true)]
    sources: Vec<PathBuf>,
    #[command(flatten)]
    db: DbPath,
    /// Exit 2 when any record could not be read (the others are imported either way).
    #[arg(long)]
    strict: bool,
    /// `text` or `json` (the statistics of each source).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    db: DbPath,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: DbArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DbCommand::Import(a) => import(a),
        DbCommand::Update(a) => update(a),
        DbCommand::Status(a) => status(a),
    }
}

/// Maps database errors: a missing or foreign database is the user's input.
pub fn db_error(e: DbError) -> anyhow::Error {
    match e {
        e if e.is_bad_input() => BadInput(e.to_string()).into(),
        e => e.into(),
    }
}

fn update(a: UpdateCmd) -> anyhow::Result<ExitCode> {
    let r = rampart_scan::update_db(&a.args.db.path, &a.args.options()).map_err(db_error)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?,
        Format::Text => write!(out, "{}", r.text())?,
    }
    Ok(ExitCode::from(u8::from(r.failed() > 0)))
}

fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let mut written = Ok(());
    let all = rampart_scan::import_sources(&a.db.path, &a.sources, |stats| {
        for e in stats.errors.iter().take(20) {
            eprintln!("warning: {e}");
        }
        if stats.errors.len() > 20 {
            let more = stats.errors.len() - 20;
            eprintln!("warning: ... and {more} more unreadable records");
        }
        if a.format == Format::Text && written.is_ok() {
            written = writeln!(out, "{}", stats.text());
        }
    })
    .map_err(db_error)?;
    written?;
    if a.format == Format::Json {
        writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
    }
    let errors = all.iter().any(|s| !s.errors.is_empty());
    Ok(ExitCode::from(if a.strict && errors { 2 } else { 0 }))
}

fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let s = VulnDb::open(&a.db.path)
        .and_then(|db| db.status())
        .map_err(db_error)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?,
        Format::Text => write!(out, "{}", s.text())?,
    }
    Ok(ExitCode::SUCCESS)
}
