//! `rampart db update`: keeping the database current from OSV's per-ecosystem exports.
//!
//! # Source
//! osv.dev publishes every ecosystem as one zip of OSV JSON records at
//! `<base>/<ecosystem>/all.zip` (`https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip`).
//! A mirror or an air-gapped host serves the same layout from another base URL (`http://`,
//! `https://`, or `file:///dir` for a directory on this host). With [`UpdateOptions::checksum`]
//! the mirror must also serve `<ecosystem>/all.zip.sha256` (`sha256sum` format) and every zip
//! is checked against it.
//!
//! # Guarantees
//! * **Conditional**: the `ETag` and `Last-Modified` of the response whose body was imported
//!   are stored per ecosystem in the database (`meta`), and sent back as `If-None-Match` /
//!   `If-Modified-Since`; a `304` costs one request. The validators always describe the data the
//!   database holds: they are written in the same file, and only with that data.
//! * **Verified**: a download is refused (and that ecosystem keeps its previous data) when it
//!   is not a whole zip (central directory, every member's CRC-32), holds a member whose name
//!   is not a plain relative path, declares or decompresses to more than
//!   [`UpdateOptions::max_uncompressed`] bytes, is larger than [`UpdateOptions::max_download`],
//!   holds a record that does not parse as OSV (`id` and `modified` required), holds no record,
//!   or (with a checksum file) does not hash to the published SHA-256.
//! * **Atomic**: the new database is built beside the old one (a `VACUUM INTO` copy, then an
//!   incremental import of each changed zip) and renamed over it only when complete and
//!   `PRAGMA quick_check` passes. A failed, killed or interrupted update leaves the old file in
//!   place; readers that had it open keep reading it. Leftovers of a killed update
//!   (`.<name>.update*`) are removed by the next one. One writer at a time: `<db>.lock` (flock).
//! * **Bounded**: connect, per-read (a server that stops sending) and whole-download timeouts.
//!
//! # Staleness
//! `updated_at` (meta) is set when every requested ecosystem was either fetched and imported or
//! confirmed unchanged; [`VulnDb::updated_at`] falls back to the newest import for databases
//! made with `rampart db import`.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::import::{import_with, ImportOptions};
use super::{now_secs, secs, DbError, VulnDb};

/// osv.dev's export bucket.
pub const DEFAULT_OSV_URL: &str = "https://osv-vulnerabilities.storage.googleapis.com";

/// The ecosystems the scanner inventories (OS packages of the distributions it names, and the
/// language packages it reads): what `rampart db update` fetches unless told otherwise.
pub const DEFAULT_ECOSYSTEMS: &[&str] = &[
    "Debian",
    "Ubuntu",
    "Alpine",
    "Rocky Linux",
    "AlmaLinux",
    "Wolfi",
    "Chainguard",
    "npm",
    "PyPI",
    "Go",
    "Maven",
    "crates.io",
    "RubyGems",
    "Packagist",
];

/// Age past which scans and `db status` warn that the database is stale.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// How to update.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// Base URL of the `<ecosystem>/all.zip` layout ([`DEFAULT_OSV_URL`]).
    pub base_url: String,
    /// OSV ecosystem names as osv.dev spells its directories (`PyPI`, `crates.io`, `Debian`).
    pub ecosystems: Vec<String>,
    /// Require `<ecosystem>/all.zip.sha256` and check every zip against it.
    pub checksum: bool,
    /// Ignore the stored validators and fetch everything.
    pub force: bool,
    pub connect_timeout: Duration,
    /// The longest the server may stay silent while sending headers or body.
    pub read_timeout: Duration,
    /// The longest one download may take.
    pub download_timeout: Duration,
    /// The largest zip accepted (compressed).
    pub max_download: u64,
    /// The largest total of one zip's members, decompressed.
    pub max_uncompressed: u64,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        UpdateOptions {
            base_url: DEFAULT_OSV_URL.to_string(),
            ecosystems: DEFAULT_ECOSYSTEMS.iter().map(|e| e.to_string()).collect(),
            checksum: false,
            force: false,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            download_timeout: Duration::from_secs(30 * 60),
            // osv.dev's largest exports (Debian, npm) are a few hundred MB.
            max_download: 2 << 30,
            max_uncompressed: 16 << 30,
        }
    }
}

/// What happened to one ecosystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Downloaded, verified and imported.
    Updated,
    /// The server answered 304 (or a local file is unchanged).
    Unchanged,
    /// Refused or unreachable; the ecosystem keeps its previous data.
    Failed,
}

/// One ecosystem's part of an update.
#[derive(Debug, Clone, Serialize)]
pub struct EcosystemUpdate {
    pub ecosystem: String,
    pub url: String,
    pub outcome: Outcome,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Records in the zip (all parsed).
    pub records: u64,
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an update did.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    pub path: String,
    pub ecosystems: Vec<EcosystemUpdate>,
    /// A new database file replaced the old one.
    pub swapped: bool,
    /// Unix seconds of the last complete update (this one, unless an ecosystem failed).
    pub updated_at: Option<i64>,
    pub seconds: f64,
}

impl UpdateReport {
    /// Ecosystems that failed.
    pub fn failed(&self) -> usize {
        self.ecosystems
            .iter()
            .filter(|e| e.outcome == Outcome::Failed)
            .count()
    }
}

/// Ecosystem names as URL path segments (`Rocky Linux` -> `Rocky%20Linux`).
fn segment(eco: &str) -> String {
    let mut out = String::new();
    for b in eco.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The export URL of `eco` under `base`.
pub fn export_url(base: &str, eco: &str) -> String {
    format!("{}/{}/all.zip", base.trim_end_matches('/'), segment(eco))
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Temporary files of an update of `db`: `.<name>.update<suffix>` beside it.
fn temp(db: &Path, suffix: &str) -> PathBuf {
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vuln.db".into());
    db.with_file_name(format!(".{name}.update{suffix}"))
}

/// The write lock of `db` (`<db>.lock`, flock): one update or import at a time.
pub struct WriteLock {
    _file: File,
}

/// Takes the write lock of the database at `path`, failing at once when another process holds
/// it.
pub fn lock(path: &Path) -> Result<WriteLock, DbError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| DbError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let lp = sidecar(path, ".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lp)
        .map_err(|source| DbError::Io {
            path: lp.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(DbError::Source {
            path: path.to_path_buf(),
            message: "another `rampart db update` or `db import` is writing this database".into(),
        });
    }
    Ok(WriteLock { _file: file })
}

struct Validators {
    url: Option<String>,
    etag: Option<String>,
    last_modified: Option<String>,
}

fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn meta_set(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
        params![key, value],
    )
    .map(|_| ())
}

fn validators(conn: &Connection, eco: &str) -> rusqlite::Result<Validators> {
    Ok(Validators {
        url: meta_get(conn, &format!("osv:{eco}:url"))?,
        etag: meta_get(conn, &format!("osv:{eco}:etag"))?,
        last_modified: meta_get(conn, &format!("osv:{eco}:last_modified"))?,
    })
}

/// A downloaded zip.
struct Fetched {
    file: PathBuf,
    etag: Option<String>,
    last_modified: Option<String>,
    bytes: u64,
}

enum Download {
    NotModified,
    Fetched(Fetched),
}

/// Copies `r` into `dest`, at most `max` bytes, returning the size and SHA-256.
fn save(mut r: impl Read, dest: &Path, max: u64) -> Result<(u64, String), String> {
    let mut f = File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut total: u64 = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("download broke off after {total} bytes: {e}")),
        };
        total += n as u64;
        if total > max {
            return Err(format!("larger than {max} bytes (max_download); refused"));
        }
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    f.sync_all()
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok((total, hex::encode(hasher.finalize())))
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

struct Client {
    agent: ureq::Agent,
    opts: UpdateOptions,
}

impl Client {
    fn new(opts: &UpdateOptions) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_recv_response(Some(opts.read_timeout))
            .timeout_per_read(Some(opts.read_timeout))
            .timeout_global(Some(opts.download_timeout))
            .user_agent(format!("rampart/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client {
            agent,
            opts: opts.clone(),
        }
    }

    /// GETs `url` into `dest`, conditionally on `v`.
    fn get(&self, url: &str, v: &Validators, dest: &Path) -> Result<Download, String> {
        if let Some(path) = url.strip_prefix("file://") {
            return self.get_file(Path::new(path), v, dest);
        }
        let mut req = self.agent.get(url);
        if !self.opts.force && v.url.as_deref() == Some(url) {
            if let Some(e) = &v.etag {
                req = req.header("If-None-Match", e);
            }
            if let Some(m) = &v.last_modified {
                req = req.header("If-Modified-Since", m);
            }
        }
        let resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
        match resp.status().as_u16() {
            304 => return Ok(Download::NotModified),
            200 => {}
            s => return Err(format!("GET {url}: HTTP {s}")),
        }
        let etag = header(&resp, "etag");
        let last_modified = header(&resp, "last-modified");
        if let Some(len) = header(&resp, "content-length").and_then(|l| l.parse::<u64>().ok()) {
            if len > self.opts.max_download {
                return Err(format!(
                    "GET {url}: {len} bytes, larger than {} (max_download); refused",
                    self.opts.max_download
                ));
            }
        }
        let body = resp
            .into_body()
            .into_with_config()
            .limit(self.opts.max_download.saturating_add(1))
            .reader();
        let (bytes, _) =
            save(body, dest, self.opts.max_download).map_err(|e| format!("GET {url}: {e}"))?;
        Ok(Download::Fetched(Fetched {
            file: dest.to_path_buf(),
            etag,
            last_modified,
            bytes,
        }))
    }

    /// A `file://` base: the file's size and modification time stand for an ETag.
    fn get_file(&self, path: &Path, v: &Validators, dest: &Path) -> Result<Download, String> {
        let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let tag = {
            use std::os::unix::fs::MetadataExt;
            format!("\"{}-{}.{}\"", meta.len(), meta.mtime(), meta.mtime_nsec())
        };
        let url = format!("file://{}", path.display());
        if !self.opts.force
            && v.url.as_deref() == Some(url.as_str())
            && v.etag.as_deref() == Some(tag.as_str())
        {
            return Ok(Download::NotModified);
        }
        let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (bytes, _) = save(f, dest, self.opts.max_download)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Download::Fetched(Fetched {
            file: dest.to_path_buf(),
            etag: Some(tag),
            last_modified: None,
            bytes,
        }))
    }

    /// The published SHA-256 of `url` (`<url>.sha256`, `sha256sum` format).
    fn checksum(&self, url: &str) -> Result<String, String> {
        let sum_url = format!("{url}.sha256");
        let text = if let Some(path) = sum_url.strip_prefix("file://") {
            let f = File::open(path).map_err(|e| format!("{path}: {e}"))?;
            crate::limit::read_capped(f, 4096).map_err(|e| format!("{path}: {e}"))?
        } else {
            let resp = self
                .agent
                .get(&sum_url)
                .call()
                .map_err(|e| format!("GET {sum_url}: {e}"))?;
            if resp.status().as_u16() != 200 {
                return Err(format!("GET {sum_url}: HTTP {}", resp.status().as_u16()));
            }
            let body = resp.into_body().into_with_config().limit(4097).reader();
            crate::limit::read_capped(body, 4096).map_err(|e| format!("GET {sum_url}: {e}"))?
        };
        let text = String::from_utf8_lossy(&text);
        let sum = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{sum_url}: not a SHA-256 checksum file"));
        }
        Ok(sum)
    }
}

fn file_sha256(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Downloads one ecosystem (and checks its checksum; a mirror that changed the zip between the
/// two requests is asked once more).
fn fetch(client: &Client, url: &str, v: &Validators, dest: &Path) -> Result<Download, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let d = client.get(url, v, dest)?;
        let Download::Fetched(f) = d else {
            return Ok(d);
        };
        if !client.opts.checksum {
            return Ok(Download::Fetched(f));
        }
        let want = client.checksum(url)?;
        let got = file_sha256(&f.file).map_err(|e| format!("{}: {e}", f.file.display()))?;
        if want == got {
            return Ok(Download::Fetched(f));
        }
        if attempt >= 2 {
            return Err(format!(
                "{url}: SHA-256 {got} is not the published {want} (tampered, or the mirror changed it during the update)"
            ));
        }
    }
}

/// Removes what a killed update left behind (the caller holds the lock).
fn clean_leftovers(db: &Path) {
    let Some(dir) = db.parent() else { return };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = temp(db, "")
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Updates the database at `path` from OSV exports (see the module docs). Per-ecosystem
/// failures are in the report (`failed()`), not errors: the other ecosystems are still
/// imported. An error means nothing was changed.
pub fn update(path: &Path, opts: &UpdateOptions) -> Result<UpdateReport, DbError> {
    let started = Instant::now();
    let _lock = lock(path)?;
    clean_leftovers(path);
    let live = if path.is_file() {
        match VulnDb::open(path) {
            Ok(db) => Some(db),
            // A database of another layout is rebuilt from scratch (everything fetched) and
            // replaced like any other.
            Err(DbError::Schema { .. }) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let client = Client::new(opts);
    let mut results = Vec::new();
    let mut downloads: Vec<(usize, Fetched)> = Vec::new();
    for (i, eco) in opts.ecosystems.iter().enumerate() {
        let url = export_url(&opts.base_url, eco);
        let v = match &live {
            Some(db) => validators(&db.conn, eco).map_err(|e| db.sql_err(e))?,
            None => Validators {
                url: None,
                etag: None,
                last_modified: None,
            },
        };
        let dest = temp(path, &format!("-{i}.zip"));
        let mut r = EcosystemUpdate {
            ecosystem: eco.clone(),
            url: url.clone(),
            outcome: Outcome::Unchanged,
            bytes: 0,
            records: 0,
            added: 0,
            updated: 0,
            removed: 0,
            error: None,
        };
        match fetch(&client, &url, &v, &dest) {
            Ok(Download::NotModified) => {}
            Ok(Download::Fetched(f)) => {
                r.bytes = f.bytes;
                downloads.push((i, f));
            }
            Err(e) => {
                let _ = fs::remove_file(&dest);
                r.outcome = Outcome::Failed;
                r.error = Some(e);
            }
        }
        results.push(r);
    }
    let now = now_secs();
    let mut swapped = false;
    if downloads.is_empty() {
        // Nothing changed: only the check time is recorded, in one transaction of the live
        // file (none when there is no database yet).
        if let Some(db) = live {
            drop(db);
            let all_ok = results.iter().all(|r| r.outcome != Outcome::Failed);
            let conn = Connection::open(path).map_err(|source| DbError::Sqlite {
                path: path.to_path_buf(),
                source,
            })?;
            let sql = |source| DbError::Sqlite {
                path: path.to_path_buf(),
                source,
            };
            conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
            let tx = conn.unchecked_transaction().map_err(sql)?;
            for r in results.iter().filter(|r| r.outcome == Outcome::Unchanged) {
                meta_set(
                    &tx,
                    &format!("osv:{}:checked_at", r.ecosystem),
                    &now.to_string(),
                )
                .map_err(sql)?;
            }
            if all_ok && !results.is_empty() {
                meta_set(&tx, "updated_at", &now.to_string()).map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
        }
    } else {
        let tmp = temp(path, ".db");
        let built = build(live, &tmp, &mut results, &downloads, opts, now);
        for (_, f) in &downloads {
            let _ = fs::remove_file(&f.file);
        }
        match built {
            Ok(true) => {
                swap(&tmp, path)?;
                swapped = true;
            }
            Ok(false) => {
                let _ = fs::remove_file(&tmp);
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                let _ = fs::remove_file(sidecar(&tmp, "-wal"));
                let _ = fs::remove_file(sidecar(&tmp, "-shm"));
                return Err(e);
            }
        }
    }
    let updated_at = VulnDb::open(path)
        .ok()
        .and_then(|db| db.updated_at().ok().flatten());
    Ok(UpdateReport {
        path: path.display().to_string(),
        ecosystems: results,
        swapped,
        updated_at,
        seconds: secs(started),
    })
}

/// Builds the new database in `tmp`; true when at least one ecosystem was imported (the file is
/// then complete and checked).
fn build(
    live: Option<VulnDb>,
    tmp: &Path,
    results: &mut [EcosystemUpdate],
    downloads: &[(usize, Fetched)],
    opts: &UpdateOptions,
    now: i64,
) -> Result<bool, DbError> {
    let _ = fs::remove_file(tmp);
    if let Some(db) = live {
        let snap = tmp.to_string_lossy().into_owned();
        db.conn
            .execute("VACUUM INTO ?1", [&snap])
            .map_err(|e| db.sql_err(e))?;
    }
    let mut db = VulnDb::open_or_create(tmp)?;
    let mut imported = 0;
    for (i, f) in downloads {
        let r = &mut results[*i];
        let import = ImportOptions {
            key: Some(r.url.clone()),
            strict: true,
            max_total: Some(opts.max_uncompressed),
        };
        let stats = match import_with(&mut db, &f.file, &import) {
            Ok(s) => s,
            Err(e) => {
                r.outcome = Outcome::Failed;
                r.error = Some(match e {
                    DbError::Source { message, .. } => format!("{}: {message}", r.url),
                    e => format!("{}: {e}", r.url),
                });
                continue;
            }
        };
        let tmp_path = tmp.to_path_buf();
        let sql = |source| DbError::Sqlite {
            path: tmp_path.clone(),
            source,
        };
        let entries: i64 = db
            .conn
            .query_row(
                "SELECT COUNT(*) FROM entries e JOIN sources s ON s.id = e.source_id WHERE s.path = ?1",
                [&r.url],
                |row| row.get(0),
            )
            .map_err(sql)?;
        if entries as u64 != stats.files {
            r.outcome = Outcome::Failed;
            r.error = Some(format!(
                "{}: {} records in the zip, {entries} stored",
                r.url, stats.files
            ));
            continue;
        }
        r.records = stats.files;
        r.added = stats.added;
        r.updated = stats.updated;
        r.removed = stats.removed;
        r.outcome = Outcome::Updated;
        let eco = &r.ecosystem;
        let tx = db.conn.transaction().map_err(sql)?;
        meta_set(&tx, &format!("osv:{eco}:url"), &r.url).map_err(sql)?;
        for (k, v) in [("etag", &f.etag), ("last_modified", &f.last_modified)] {
            match v {
                Some(v) => meta_set(&tx, &format!("osv:{eco}:{k}"), v).map_err(sql)?,
                None => {
                    tx.execute(
                        "DELETE FROM meta WHERE key = ?1",
                        [format!("osv:{eco}:{k}")],
                    )
                    .map_err(sql)?;
                }
            }
        }
        meta_set(&tx, &format!("osv:{eco}:checked_at"), &now.to_string()).map_err(sql)?;
        tx.commit().map_err(sql)?;
        imported += 1;
    }
    if imported == 0 {
        return Ok(false);
    }
    let sql = |e| db.sql_err(e);
    for r in results.iter().filter(|r| r.outcome == Outcome::Unchanged) {
        meta_set(
            &db.conn,
            &format!("osv:{}:checked_at", r.ecosystem),
            &now.to_string(),
        )
        .map_err(sql)?;
    }
    if results.iter().all(|r| r.outcome != Outcome::Failed) {
        meta_set(&db.conn, "updated_at", &now.to_string()).map_err(sql)?;
    }
    // One self-contained file: no -wal beside it when it is renamed into place.
    let mode: String = db
        .conn
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(DbError::Source {
            path: tmp.to_path_buf(),
            message: format!("could not leave WAL mode ({mode})"),
        });
    }
    let check: String = db
        .conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sql)?;
    if check != "ok" {
        return Err(DbError::Source {
            path: tmp.to_path_buf(),
            message: format!("the new database fails its check: {check}"),
        });
    }
    drop(db);
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|source| DbError::Io {
            path: tmp.to_path_buf(),
            source,
        })?;
    Ok(true)
}

/// Renames `tmp` over `live`. A live file left in WAL mode with frames in its `-wal` (an
/// import killed midway) would have them applied to the new file by the next reader, so they
/// are checkpointed first; the empty `-wal` and `-shm` go after the rename.
fn swap(tmp: &Path, live: &Path) -> Result<(), DbError> {
    let wal = sidecar(live, "-wal");
    if fs::metadata(&wal).is_ok_and(|m| m.len() > 0) && live.is_file() {
        let sql = |source| DbError::Sqlite {
            path: live.to_path_buf(),
            source,
        };
        let conn = Connection::open(live).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(sql)?;
        drop(conn);
        if busy != 0 || fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(DbError::Source {
                path: live.to_path_buf(),
                message: "its write-ahead log could not be emptied (a writer is active); try again"
                    .into(),
            });
        }
    }
    fs::rename(tmp, live).map_err(|source| DbError::Io {
        path: live.to_path_buf(),
        source,
    })?;
    let _ = fs::remove_file(&wal);
    let _ = fs::remove_file(sidecar(live, "-shm"));
    if let Some(dir) = live.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystem_names_are_escaped_as_path_segments() {
        assert_eq!(
            export_url("https://m.example/osv/", "Rocky Linux"),
            "https://m.example/osv/Rocky%20Linux/all.zip"
        );
        assert_eq!(
            export_url("http://h", "crates.io"),
            "http://h/crates.io/all.zip"
        );
        assert_eq!(export_url("http://h", "../x"), "http://h/..%2Fx/all.zip");
    }
}
