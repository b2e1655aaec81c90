//! The offline vulnerability database: OSV records imported into an embedded SQLite file.
//!
//! # On-disk format (schema version [`SCHEMA_VERSION`])
//! ```text
//! meta(key PRIMARY KEY, value)                  schema_version, created
//! sources(id, path UNIQUE, kind, imported_at, records, newest_modified)
//! entries(source_id, name, fingerprint, vuln_id)  one per file or zip member, for re-imports
//! vulns(id PRIMARY KEY, modified, withdrawn, summary, details (zlib), severity, cvss_score,
//!       cvss_vector, aliases (JSON), upstream (JSON), refs (JSON), source_id)
//! affected(vuln_id, ecosystem, name, data (JSON: ranges, versions, severity))
//!        index (ecosystem, name)
//! ```
//! Names are stored as advisories spell them, PyPI names normalised (PEP 503). A record found
//! in two sources is kept once: the newer `modified` wins.
//!
//! # Re-import
//! Importing a source again compares each file's (or zip member's) fingerprint (size and mtime,
//! or size and CRC-32) with the last import: unchanged members are not even decompressed,
//! changed ones are re-read, and records whose file disappeared from the source are deleted.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rampart_event::Severity;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

mod import;
pub(crate) mod osv;
mod text;
mod update;

pub use import::ImportStats;
pub use update::{
    export_url, lock, update, EcosystemUpdate, Outcome as UpdateOutcome, UpdateOptions,
    UpdateReport, WriteLock, DEFAULT_ECOSYSTEMS, DEFAULT_OSV_URL, DEFAULT_STALE_AFTER,
};

/// Version of the database layout; a database of another version must be re-created.
pub const SCHEMA_VERSION: u32 = 1;

/// Where `rampart` keeps its database unless told otherwise (`--db`).
pub const DEFAULT_DB_PATH: &str = "/var/lib/rampart/vuln.db";

/// Why the database could not be used. Every variant names the path (and, for a record, the
/// file or zip member and the line).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A source given to [`import_sources`] does not exist.
    #[error("{path}: no such file or directory")]
    NoSource { path: PathBuf },
    #[error("{path}: no vulnerability database here; fetch one with `rampart db update` (or create one with `rampart db import`)")]
    Missing { path: PathBuf },
    #[error("{path}: database schema {found}, this rampart reads {expected}; re-create it (delete the file and import again)")]
    Schema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{path}: {message}")]
    Source { path: PathBuf, message: String },
}

/// One OSV record as stored, with what a finding needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVuln {
    pub id: String,
    pub modified: String,
    pub summary: String,
    pub details: String,
    pub severity: Severity,
    pub cvss_score: Option<f64>,
    pub cvss_vector: Option<String>,
    pub aliases: Vec<String>,
    pub upstream: Vec<String>,
    pub references: Vec<String>,
}

/// An imported source, as `rampart db status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    pub path: String,
    pub kind: String,
    /// Unix seconds of the last import.
    pub imported_at: i64,
    pub records: u64,
    /// The newest `modified` of its records (RFC 3339).
    pub newest_modified: String,
}

/// What the database holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbStatus {
    pub path: String,
    pub schema_version: u32,
    pub size_bytes: u64,
    pub records: u64,
    pub withdrawn: u64,
    pub affected_packages: u64,
    pub sources: Vec<SourceStatus>,
    /// Records per ecosystem (`Debian:12`, `PyPI`, ...), most first.
    pub ecosystems: Vec<(String, u64)>,
    /// Unix seconds of the last complete `db update` (every ecosystem fetched or confirmed
    /// unchanged), else of the newest import; `None` for an empty database.
    pub updated_at: Option<i64>,
    /// Seconds since `updated_at`.
    pub age_secs: Option<i64>,
    /// What `db update` last did per ecosystem.
    pub feeds: Vec<FeedStatus>,
}

/// One ecosystem kept current by `rampart db update`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedStatus {
    pub ecosystem: String,
    pub url: String,
    /// Unix seconds of the last successful fetch or 304.
    pub checked_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// "9 days", "5 hours": an age for people.
pub fn describe_age(secs: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs.max(0) {
        s if s < 120 => plural(s, "second"),
        s if s < 7200 => plural(s / 60, "minute"),
        s if s < 172_800 => plural(s / 3600, "hour"),
        s => plural(s / 86_400, "day"),
    }
}

/// The vulnerability database.
pub struct VulnDb {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for VulnDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VulnDb").field("path", &self.path).finish()
    }
}

/// Normalises a package name the way an ecosystem compares names (PyPI: PEP 503).
pub(crate) fn normalize_name(ecosystem: &str, name: &str) -> String {
    if ecosystem == "PyPI" {
        let mut out = String::with_capacity(name.len());
        let mut sep = false;
        for c in name.chars() {
            if matches!(c, '-' | '_' | '.') {
                sep = true;
            } else {
                if sep && !out.is_empty() {
                    out.push('-');
                }
                sep = false;
                out.push(c.to_ascii_lowercase());
            }
        }
        out
    } else {
        name.to_string()
    }
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl DbError {
    /// Whether the error is the user's input being wrong: no database, a foreign one, a
    /// source that does not exist.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            DbError::Missing { .. } | DbError::Schema { .. } | DbError::NoSource { .. }
        )
    }
}

/// Imports `sources` in order into the database at `path` (created when missing), holding the
/// database lock so that a `db update` does not replace the file meanwhile; `each` sees every
/// source's result as soon as it is done. A source that does not exist stops the import
/// ([`DbError::NoSource`]); the sources before it stay imported.
pub fn import_sources(
    path: &Path,
    sources: &[PathBuf],
    mut each: impl FnMut(&ImportStats),
) -> Result<Vec<ImportStats>, DbError> {
    let _lock = lock(path)?;
    let mut db = VulnDb::open_or_create(path)?;
    let mut all = Vec::new();
    for src in sources {
        if !src.exists() {
            return Err(DbError::NoSource { path: src.clone() });
        }
        let stats = db.import(src)?;
        each(&stats);
        all.push(stats);
    }
    Ok(all)
}

impl VulnDb {
    fn sql_err(&self, source: rusqlite::Error) -> DbError {
        DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens the database at `path` for importing, creating it (and its directory) if needed.
    pub fn open_or_create(path: &Path) -> Result<VulnDb, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        let db = VulnDb {
            conn,
            path: path.to_path_buf(),
        };
        db.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
                 CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS sources(id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE,
                     kind TEXT NOT NULL, imported_at INTEGER NOT NULL, records INTEGER NOT NULL,
                     newest_modified TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS entries(source_id INTEGER NOT NULL, name TEXT NOT NULL,
                     fingerprint TEXT NOT NULL, vuln_id TEXT, PRIMARY KEY(source_id, name)) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS vulns(id TEXT PRIMARY KEY, modified TEXT NOT NULL,
                     withdrawn TEXT, summary TEXT NOT NULL, details BLOB, severity TEXT NOT NULL,
                     cvss_score REAL, cvss_vector TEXT, aliases TEXT NOT NULL, upstream TEXT NOT NULL,
                     refs TEXT NOT NULL, source_id INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS affected(vuln_id TEXT NOT NULL, ecosystem TEXT NOT NULL,
                     name TEXT NOT NULL, data TEXT NOT NULL);
                 CREATE INDEX IF NOT EXISTS affected_pkg ON affected(ecosystem, name);
                 CREATE INDEX IF NOT EXISTS affected_vuln ON affected(vuln_id);",
            )
            .map_err(|e| db.sql_err(e))?;
        let found: Option<String> = db
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db.sql_err(e))?;
        match found {
            None => {
                db.conn
                    .execute(
                        "INSERT INTO meta(key, value) VALUES('schema_version', ?1), ('created', ?2)",
                        params![SCHEMA_VERSION.to_string(), now_secs().to_string()],
                    )
                    .map_err(|e| db.sql_err(e))?;
            }
            Some(v) => db.check_schema(&v)?,
        }
        Ok(db)
    }

    /// Opens an existing database read-only (for scanning and status).
    pub fn open(path: &Path) -> Result<VulnDb, DbError> {
        if !path.is_file() {
            return Err(DbError::Missing {
                path: path.to_path_buf(),
            });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| DbError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        let db = VulnDb {
            conn,
            path: path.to_path_buf(),
        };
        let v: String = db
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| db.sql_err(e))?;
        db.check_schema(&v)?;
        Ok(db)
    }

    fn check_schema(&self, v: &str) -> Result<(), DbError> {
        let found = v.parse().unwrap_or(0);
        if found != SCHEMA_VERSION {
            return Err(DbError::Schema {
                path: self.path.clone(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A token that changes whenever the content changes (the newest import time and the record
    /// count): cached scan results computed with another token are stale.
    pub fn revision(&self) -> Result<String, DbError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(imported_at), 0), (SELECT COUNT(*) FROM vulns) FROM sources",
                [],
                |r| Ok(format!("{}-{}", r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .map_err(|e| self.sql_err(e))
    }

    /// Unix seconds of the last complete `db update`, else of the newest import; `None` when
    /// nothing was ever imported.
    pub fn updated_at(&self) -> Result<Option<i64>, DbError> {
        let meta: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'updated_at'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql_err(e))?;
        if let Some(t) = meta.and_then(|m| m.parse::<i64>().ok()) {
            return Ok(Some(t));
        }
        self.conn
            .query_row(
                "SELECT MAX(imported_at) FROM sources WHERE imported_at > 0",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(|e| self.sql_err(e))
    }

    fn feeds(&self) -> Result<Vec<FeedStatus>, DbError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM meta WHERE key LIKE 'osv:%'")
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.sql_err(e))?;
        let mut feeds: std::collections::BTreeMap<String, FeedStatus> = Default::default();
        for row in rows {
            let (k, v) = row.map_err(|e| self.sql_err(e))?;
            let Some((eco, field)) = k["osv:".len()..].rsplit_once(':') else {
                continue;
            };
            let f = feeds.entry(eco.to_string()).or_insert_with(|| FeedStatus {
                ecosystem: eco.to_string(),
                url: String::new(),
                checked_at: None,
                etag: None,
                last_modified: None,
            });
            match field {
                "url" => f.url = v,
                "checked_at" => f.checked_at = v.parse().ok(),
                "etag" => f.etag = Some(v),
                "last_modified" => f.last_modified = Some(v),
                _ => {}
            }
        }
        Ok(feeds.into_values().collect())
    }

    /// Imports OSV data from `source`: a directory (searched recursively for `.json`, `.yaml`,
    /// `.yml`), a zip of such files (OSV's `all.zip`), or one file.
    pub fn import(&mut self, source: &Path) -> Result<ImportStats, DbError> {
        import::import(self, source)
    }

    /// What the database holds.
    pub fn status(&self) -> Result<DbStatus, DbError> {
        let e = |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let count = |sql: &str| -> Result<u64, DbError> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(e)
        };
        let mut sources = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT path, kind, imported_at, records, newest_modified FROM sources ORDER BY path")
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SourceStatus {
                    path: r.get(0)?,
                    kind: r.get(1)?,
                    imported_at: r.get(2)?,
                    records: r.get::<_, i64>(3)? as u64,
                    newest_modified: r.get(4)?,
                })
            })
            .map_err(e)?;
        for row in rows {
            sources.push(row.map_err(e)?);
        }
        let mut ecosystems = Vec::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT ecosystem, COUNT(DISTINCT vuln_id) AS n FROM affected GROUP BY ecosystem ORDER BY n DESC, ecosystem",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(e)?;
        for row in rows {
            ecosystems.push(row.map_err(e)?);
        }
        let size_bytes = [self.path.clone(), self.path.with_extension("db-wal")]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let updated_at = self.updated_at()?;
        Ok(DbStatus {
            updated_at,
            age_secs: updated_at.map(|t| now_secs() - t),
            feeds: self.feeds()?,
            path: self.path.display().to_string(),
            schema_version: SCHEMA_VERSION,
            size_bytes,
            records: count("SELECT COUNT(*) FROM vulns")?,
            withdrawn: count("SELECT COUNT(*) FROM vulns WHERE withdrawn IS NOT NULL")?,
            affected_packages: count("SELECT COUNT(*) FROM affected")?,
            sources,
            ecosystems,
        })
    }

    /// Advisories naming package `name` in `ecosystem` (withdrawn ones excluded), with the
    /// stored affected data.
    pub(crate) fn advisories(
        &self,
        ecosystem: &str,
        name: &str,
    ) -> Result<Vec<(String, osv::StoredAffected)>, DbError> {
        let name = normalize_name(ecosystem, name);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.vuln_id, a.data FROM affected a JOIN vulns v ON v.id = a.vuln_id
                 WHERE a.ecosystem = ?1 AND a.name = ?2 AND v.withdrawn IS NULL",
            )
            .map_err(|e| self.sql_err(e))?;
        let rows = stmt
            .query_map(params![ecosystem, name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.sql_err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, data) = row.map_err(|e| self.sql_err(e))?;
            // Written by this code; a row that does not parse is damage, skipped rather than
            // failing the whole scan.
            if let Ok(a) = serde_json::from_str(&data) {
                out.push((id, a));
            }
        }
        Ok(out)
    }

    /// The stored record `id`, if present.
    pub fn vuln(&self, id: &str) -> Result<Option<StoredVuln>, DbError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, modified, summary, details, severity, cvss_score, cvss_vector, aliases,
                        upstream, refs FROM vulns WHERE id = ?1",
            )
            .map_err(|e| self.sql_err(e))?;
        stmt.query_row([id], |r| {
            let details: Option<Vec<u8>> = r.get(3)?;
            let json_list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
            Ok(StoredVuln {
                id: r.get(0)?,
                modified: r.get(1)?,
                summary: r.get(2)?,
                details: details
                    .and_then(|d| crate::limit::inflate_zlib(&d, 1 << 20).ok())
                    .map(|d| String::from_utf8_lossy(&d).into_owned())
                    .unwrap_or_default(),
                severity: r.get::<_, String>(4)?.parse().unwrap_or(Severity::Unknown),
                cvss_score: r.get(5)?,
                cvss_vector: r.get(6)?,
                aliases: json_list(r.get(7)?),
                upstream: json_list(r.get(8)?),
                references: json_list(r.get(9)?),
            })
        })
        .optional()
        .map_err(|e| self.sql_err(e))
    }
}

/// Elapsed seconds since `t`, for statistics.
pub(crate) fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

#[cfg(test)]
mod import_sources_tests {
    use super::*;

    const OSV: &str = r#"{"id":"GHSA-test-0001","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"PyPI","name":"demo"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0"}]}]}]}"#;

    #[test]
    fn sources_import_in_order_and_a_missing_one_is_bad_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db/vuln.db");
        let src = dir.path().join("GHSA-test-0001.json");
        std::fs::write(&src, OSV).expect("osv");
        let mut seen = Vec::new();
        let all = import_sources(&db, std::slice::from_ref(&src), |s| {
            seen.push(s.source.clone())
        })
        .expect("import");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].added, 1, "{:?}", all[0]);
        assert_eq!(seen, vec![all[0].source.clone()]);

        let missing = dir.path().join("nope");
        let e = import_sources(&db, &[src.clone(), missing.clone()], |_| {})
            .expect_err("missing source");
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            format!("{}: no such file or directory", missing.display())
        );
        // The source before the missing one was imported (unchanged the second time).
        let db = VulnDb::open(&db).expect("open");
        assert!(db.status().is_ok());
    }
}
