//! `rampart db`: the offline vulnerability database (import OSV data, show what it holds).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use rampart_scan::{
    describe_age, DbError, UpdateOptions, UpdateOutcome, VulnDb, DEFAULT_DB_PATH,
    DEFAULT_ECOSYSTEMS, DEFAULT_OSV_URL, DEFAULT_STALE_AFTER,
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
        DbError::Missing { .. } | DbError::Schema { .. } => BadInput(e.to_string()).into(),
        e => e.into(),
    }
}

fn update(a: UpdateArgs) -> anyhow::Result<ExitCode> {
    let opts = a.options();
    let r = rampart_scan::update_db(&a.db.path, &opts).map_err(db_error)?;
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &r)?;
            writeln!(out)?;
        }
        Format::Text => {
            for e in &r.ecosystems {
                match e.outcome {
                    UpdateOutcome::Updated => writeln!(
                        out,
                        "{}: updated, {:.1} MB, {} records: {} added, {} updated, {} removed",
                        e.ecosystem,
                        e.bytes as f64 / 1e6,
                        e.records,
                        e.added,
                        e.updated,
                        e.removed
                    )?,
                    UpdateOutcome::Unchanged => writeln!(out, "{}: unchanged", e.ecosystem)?,
                    UpdateOutcome::Failed => writeln!(
                        out,
                        "{}: FAILED, previous data kept: {}",
                        e.ecosystem,
                        e.error.as_deref().unwrap_or("")
                    )?,
                }
            }
            writeln!(
                out,
                "{}: {} in {:.1}s",
                r.path,
                if r.swapped {
                    "new database in place"
                } else {
                    "database unchanged"
                },
                r.seconds
            )?;
        }
    }
    Ok(if r.failed() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn import(a: ImportArgs) -> anyhow::Result<ExitCode> {
    // `db update` replaces the file: not while an import writes it.
    let _lock = rampart_scan::lock_db(&a.db.path).map_err(db_error)?;
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
            match s.age_secs {
                Some(age) => writeln!(
                    out,
                    "updated {} ago{}",
                    describe_age(age),
                    if age > DEFAULT_STALE_AFTER.as_secs() as i64 {
                        " (STALE: run `rampart db update`)"
                    } else {
                        ""
                    }
                )?,
                None => writeln!(out, "never updated: run `rampart db update`")?,
            }
            if !s.feeds.is_empty() {
                writeln!(out, "\nFEEDS (rampart db update)")?;
                for f in &s.feeds {
                    writeln!(
                        out,
                        "  {:<14} checked {}, {}",
                        f.ecosystem,
                        f.checked_at.map(age).unwrap_or_else(|| "never".into()),
                        f.url
                    )?;
                }
            }
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

/// The server's scheduled update (`vulndb_update:` in the server config): `db update` on
/// `<data_dir>/vulndb/vuln.db` at start and every `every`, then a new signed bundle when the
/// database changed (or none was published yet). Failures are logged and retried next time.
pub fn spawn_server_updates(
    cfg: &rampart_server::ServerConfig,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(u) = cfg.vulndb_update.clone() else {
        return Ok(None);
    };
    let every = humantime::parse_duration(&u.every)
        .map_err(|e| BadInput(format!("vulndb_update.every: {:?}: {e}", u.every)))?;
    let mut opts = UpdateOptions::default();
    if let Some(base) = &u.base_url {
        opts.base_url = base.clone();
    }
    if !u.ecosystems.is_empty() {
        opts.ecosystems = u.ecosystems.clone();
    }
    opts.checksum = u.checksum;
    let cfg = cfg.clone();
    Ok(Some(tokio::spawn(async move {
        loop {
            let (c, o) = (cfg.clone(), opts.clone());
            match tokio::task::spawn_blocking(move || server_update(&c, &o)).await {
                Ok(Ok(msg)) => tracing::info!("vulnerability database: {msg}"),
                Ok(Err(e)) => tracing::warn!(
                    "vulnerability database update failed, the published bundle is kept: {}",
                    super::error_text(&e)
                ),
                Err(e) => tracing::warn!("vulnerability database update: {e}"),
            }
            tokio::time::sleep(every).await;
        }
    })))
}

/// One scheduled update; what it did, in words.
pub fn server_update(
    cfg: &rampart_server::ServerConfig,
    opts: &UpdateOptions,
) -> anyhow::Result<String> {
    let data_dir = &cfg.data_dir;
    let path = rampart_server::vulndb::db_path(data_dir);
    let r = rampart_scan::update_db(&path, opts).map_err(db_error)?;
    for e in r
        .ecosystems
        .iter()
        .filter(|e| e.outcome == UpdateOutcome::Failed)
    {
        tracing::warn!(
            "vulnerability database: {} kept its previous data: {}",
            e.ecosystem,
            e.error.as_deref().unwrap_or("")
        );
    }
    let unpublished = rampart_server::vulndb::current(data_dir)?.is_none();
    if (r.swapped || unpublished) && path.is_file() {
        let (_control, ca) = rampart_server::open_control(cfg)?;
        let m = rampart_server::vulndb::publish(data_dir, &ca)?;
        return Ok(format!(
            "updated ({} of {} ecosystems failed), published bundle {}",
            r.failed(),
            r.ecosystems.len(),
            m.version
        ));
    }
    Ok(format!(
        "unchanged ({} of {} ecosystems failed)",
        r.failed(),
        r.ecosystems.len()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::io::Write;

    use super::*;

    /// osv.dev's layout on disk (`file://`), from the scanner's real OSV fixtures.
    fn mirror(root: &std::path::Path, eco: &str) {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../rampart-scan/tests/data/osv")
            .join(eco);
        std::fs::create_dir_all(root.join(eco)).unwrap();
        let mut w =
            zip::ZipWriter::new(std::fs::File::create(root.join(eco).join("all.zip")).unwrap());
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            w.start_file(
                e.file_name().to_string_lossy(),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            w.write_all(&std::fs::read(e.path()).unwrap()).unwrap();
        }
        w.finish().unwrap();
    }

    /// The scheduled update publishes a bundle signed by the server CA that agents verify, and
    /// the dashboard's freshness reads the update time; an unchanged mirror publishes nothing.
    #[test]
    fn server_update_publishes_a_signed_bundle_agents_verify() {
        let tmp = tempfile::tempdir().unwrap();
        mirror(&tmp.path().join("mirror"), "npm");
        let cfg = rampart_server::ServerConfig::with_data_dir(tmp.path().join("server"));
        let opts = UpdateOptions {
            base_url: format!("file://{}", tmp.path().join("mirror").display()),
            ecosystems: vec!["npm".into()],
            ..UpdateOptions::default()
        };
        let msg = server_update(&cfg, &opts).unwrap();
        assert!(msg.contains("published bundle"), "{msg}");
        let signed = rampart_server::vulndb::current(&cfg.data_dir)
            .unwrap()
            .unwrap();
        let (_control, ca) = rampart_server::open_control(&cfg).unwrap();
        let m = rampart_server::vulndb::verify_manifest(ca.cert(), &signed).unwrap();
        let payload =
            std::fs::read(rampart_server::vulndb::bundle_path(&cfg.data_dir, &m.sha256).unwrap())
                .unwrap();
        let raw = rampart_server::vulndb::open_payload(&m, &payload).unwrap();
        let db_file = tmp.path().join("agent.db");
        std::fs::write(&db_file, raw).unwrap();
        let agent_db = VulnDb::open(&db_file).unwrap();
        assert!(agent_db.vuln("GHSA-35jh-r3h4-6jhm").unwrap().is_some());
        let f = rampart_server::vulndb::freshness(&cfg.data_dir).unwrap();
        assert!(f.age_secs.unwrap() < 120);
        assert_eq!(f.published_version.as_deref(), Some(m.version.as_str()));
        let msg = server_update(&cfg, &opts).unwrap();
        assert!(msg.starts_with("unchanged"), "{msg}");
        let again = rampart_server::vulndb::current(&cfg.data_dir)
            .unwrap()
            .unwrap();
        assert_eq!(again, signed, "nothing new, nothing republished");
    }
}
