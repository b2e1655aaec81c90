//! `rampart db`: the offline vulnerability database (import OSV data, show what it holds).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use rampart_scan::{DbError, VulnDb, DEFAULT_DB_PATH};

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
    /// Show the database: sources, record counts per ecosystem, age, size.
    Status(StatusArgs),
}

/// The database option every command that uses the database takes.
#[derive(Debug, Clone, Args)]
pub struct DbPath {
    /// The vulnerability database (SQLite file); several can live side by side.
    #[arg(long = "db", env = "RAMPART_DB", default_value = DEFAULT_DB_PATH)]
    pub path: PathBuf,
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
        DbCommand::Status(a) => status(a),
    }
}

/// Maps database errors: a missing or foreign database is the user's input.
pub fn db_error(e: DbError) -> anyhow::Error {
    match e {
        DbError::Missing { .. } | DbError::Schema { .. } => BadInput(e.to_string()).into(),
        e => e.into(),
    }
}

fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut db = VulnDb::open_or_create(&a.db.path).map_err(db_error)?;
    let mut out = std::io::stdout().lock();
    let mut all = Vec::new();
    let mut errors = 0usize;
    for src in &a.sources {
        if !src.exists() {
            return Err(BadInput(format!("{}: no such file or directory", src.display())).into());
        }
        let stats = db.import(src).map_err(db_error)?;
        errors += stats.errors.len();
        for e in stats.errors.iter().take(20) {
            eprintln!("warning: {e}");
        }
        if stats.errors.len() > 20 {
            eprintln!(
                "warning: ... and {} more unreadable records",
                stats.errors.len() - 20
            );
        }
        if a.format == Format::Text {
            writeln!(
                out,
                "{}: {} {} files in {:.1}s: {} added, {} updated, {} unchanged, {} removed, {} kept (newer elsewhere), {} unreadable",
                stats.source,
                stats.kind,
                stats.files,
                stats.seconds,
                stats.added,
                stats.updated,
                stats.unchanged,
                stats.removed,
                stats.kept_newer,
                stats.errors.len()
            )?;
        }
        all.push(stats);
    }
    if a.format == Format::Json {
        serde_json::to_writer_pretty(&mut out, &all)?;
        writeln!(out)?;
    }
    Ok(if a.strict && errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn age(secs: i64) -> String {
    let d = rampart_scan_now() - secs;
    match d {
        d if d < 120 => format!("{d}s ago"),
        d if d < 7200 => format!("{}m ago", d / 60),
        d if d < 172_800 => format!("{}h ago", d / 3600),
        d => format!("{}d ago", d / 86_400),
    }
}

fn rampart_scan_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let db = VulnDb::open(&a.db.path).map_err(db_error)?;
    let s = db.status().map_err(db_error)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &s)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(
                out,
                "{}: schema {}, {:.1} MB, {} records ({} withdrawn), {} affected packages",
                s.path,
                s.schema_version,
                s.size_bytes as f64 / 1e6,
                s.records,
                s.withdrawn,
                s.affected_packages
            )?;
            writeln!(out, "\nSOURCES")?;
            for src in &s.sources {
                writeln!(
                    out,
                    "  {} ({}): {} records, imported {}, newest record {}",
                    src.path,
                    src.kind,
                    src.records,
                    age(src.imported_at),
                    if src.newest_modified.is_empty() {
                        "-"
                    } else {
                        &src.newest_modified
                    }
                )?;
            }
            writeln!(out, "\nECOSYSTEMS")?;
            for (e, n) in &s.ecosystems {
                writeln!(out, "  {e:<28} {n}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
