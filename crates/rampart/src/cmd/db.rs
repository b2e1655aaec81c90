//! `rampart db`: the offline vulnerability database (import OSV data, show what it holds).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use rampart_scan::{
    DbError, UpdateOptions, VulnDb, DEFAULT_DB_PATH, DEFAULT_ECOSYSTEMS, DEFAULT_OSV_URL,
};

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
    Update(UpdateArgs),
    /// Show the database: sources, record counts per ecosystem, age, size.
    Status(StatusArgs),
}

/// Options of `rampart db update` (also the server's scheduled update).
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub db: DbPath,
    /// Base URL of the `<ecosystem>/all.zip` layout: osv.dev's bucket, or a mirror (`https://`,
    /// `http://`, `file:///dir` for an air-gapped host).
    #[arg(long, env = "RAMPART_OSV_URL", default_value = DEFAULT_OSV_URL)]
    pub base_url: String,
    /// An ecosystem to fetch, as osv.dev names its directories (`PyPI`, `Debian`, `crates.io`);
    /// repeat it. Default: every ecosystem the scanner inventories.
    #[arg(
        long = "ecosystem",
        value_name = "NAME",
        env = "RAMPART_OSV_ECOSYSTEMS",
        value_delimiter = ','
    )]
    pub ecosystems: Vec<String>,
    /// Require `<ecosystem>/all.zip.sha256` next to each zip and check it (for mirrors).
    #[arg(long)]
    pub checksum: bool,
    /// Fetch everything, ignoring the stored ETag / Last-Modified.
    #[arg(long)]
    pub force: bool,
    /// Give up on a server silent this long (`60s`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub read_timeout: std::time::Duration,
    /// The longest one download may take (`30m`).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub download_timeout: std::time::Duration,
    /// The largest zip accepted, MiB.
    #[arg(long, default_value_t = 2048)]
    pub max_download_mib: u64,
    /// The largest total of one zip's records decompressed, MiB (zip bombs).
    #[arg(long, default_value_t = 16384)]
    pub max_uncompressed_mib: u64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

impl UpdateArgs {
    /// The library's options.
    pub fn options(&self) -> UpdateOptions {
        UpdateOptions {
            base_url: self.base_url.clone(),
            ecosystems: if self.ecosystems.is_empty() {
                DEFAULT_ECOSYSTEMS.iter().map(|e| e.to_string()).collect()
            } else {
                self.ecosystems.clone()
            },
            checksum: self.checksum,
            force: self.force,
            read_timeout: self.read_timeout,
            download_timeout: self.download_timeout,
            max_download: self.max_download_mib << 20,
            max_uncompressed: self.max_uncompressed_mib << 20,
            ..UpdateOptions::default()
        }
    }
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

fn update(a: UpdateArgs) -> anyhow::Result<ExitCode> {
    let r = rampart_scan::update_db(&a.db.path, &a.options()).map_err(db_error)?;
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
