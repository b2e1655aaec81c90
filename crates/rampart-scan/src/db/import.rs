//! Importing OSV sources: directories, zips and single files of OSV JSON or YAML.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::osv::{record_severity, Record, StoredAffected};
use super::{normalize_name, now_secs, secs, DbError, VulnDb};

/// Largest single OSV record accepted (a record is a few KiB; osv.dev's largest are ~2 MiB).
const MAX_RECORD: u64 = 32 << 20;

/// What one import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportStats {
    pub source: String,
    /// `dir`, `zip` or `file`.
    pub kind: String,
    /// OSV files (or zip members) in the source.
    pub files: u64,
    /// Files unchanged since the last import of this source (not read again).
    pub unchanged: u64,
    pub added: u64,
    pub updated: u64,
    /// Records deleted because their file left the source.
    pub removed: u64,
    /// Records not stored because another source has a newer version of them.
    pub kept_newer: u64,
    /// Files that could not be read as OSV records: `source!member:line: message`.
    pub errors: Vec<String>,
    pub seconds: f64,
}

/// A member name osv.dev could have written: relative, no `..`, `\\` or NUL. Stricter than the
/// zip crate's `enclosed_name`, which accepts `/etc/x` by dropping the root.
fn plain_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains(['\\', '\0'])
        && !name.split('/').any(|c| c == "..")
}

fn is_osv_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.ends_with(".json") || lower.ends_with(".yaml") || lower.ends_with(".yml"))
        && !lower.rsplit('/').next().unwrap_or("").starts_with('.')
}

/// One member of a source, not yet read.
struct Member {
    name: String,
    fingerprint: String,
    /// Index in the zip, or the file path.
    at: MemberAt,
}

enum MemberAt {
    Zip(usize),
    File(PathBuf),
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<Member>) -> Result<(), DbError> {
    let io = |source| DbError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.is_dir() {
            if !e.file_name().to_string_lossy().starts_with('.') {
                walk(&p, root, out)?;
            }
        } else if m.is_file() {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            if is_osv_name(&rel) {
                out.push(Member {
                    name: rel,
                    fingerprint: format!("{}-{}.{}", m.len(), m.mtime(), m.mtime_nsec()),
                    at: MemberAt::File(p),
                });
            }
        }
    }
    Ok(())
}

fn parse(name: &str, data: &[u8]) -> Result<Record, String> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".json") {
        serde_json::from_slice(data).map_err(|e| format!("{}: {e}", e.line()))
    } else {
        serde_yaml::from_slice(data).map_err(|e| match e.location() {
            Some(l) => format!("{}: {e}", l.line()),
            None => format!("0: {e}"),
        })
    }
}

enum Outcome {
    Added,
    Updated,
    KeptNewer,
}

fn zlib(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(text.as_bytes());
    enc.finish().unwrap_or_default()
}

fn store(conn: &Connection, source_id: i64, r: &Record) -> rusqlite::Result<Outcome> {
    let existing: Option<(String, i64)> = conn
        .prepare_cached("SELECT modified, source_id FROM vulns WHERE id = ?1")?
        .query_row([&r.id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if let Some((modified, sid)) = &existing {
        if *sid != source_id && *modified > r.modified {
            return Ok(Outcome::KeptNewer);
        }
    }
    let (severity, score, vector) = record_severity(r);
    let refs: Vec<&str> = r.references.iter().map(|x| x.url.as_str()).collect();
    conn.prepare_cached(
        "INSERT OR REPLACE INTO vulns(id, modified, withdrawn, summary, details, severity, cvss_score,
             cvss_vector, aliases, upstream, refs, source_id)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        r.id,
        r.modified,
        r.withdrawn,
        r.summary,
        (!r.details.is_empty()).then(|| zlib(&r.details)),
        severity.as_str(),
        score,
        vector,
        to_json(&r.aliases),
        to_json(&r.upstream),
        to_json(&refs),
        source_id,
    ])?;
    conn.prepare_cached("DELETE FROM affected WHERE vuln_id = ?1")?
        .execute([&r.id])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO affected(vuln_id, ecosystem, name, data) VALUES(?1, ?2, ?3, ?4)",
    )?;
    for a in &r.affected {
        let Some(p) = &a.package else { continue };
        if p.ecosystem.is_empty() || p.name.is_empty() {
            continue;
        }
        let stored = StoredAffected::from_affected(a);
        if stored.ranges.is_empty() && stored.versions.is_empty() {
            continue; // nothing we can evaluate (GIT ranges only, no enumerated versions)
        }
        insert.execute(params![
            r.id,
            p.ecosystem,
            normalize_name(&p.ecosystem, &p.name),
            serde_json::to_string(&stored).unwrap_or_default(),
        ])?;
    }
    Ok(if existing.is_some() {
        Outcome::Updated
    } else {
        Outcome::Added
    })
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// How an import treats its source (the defaults are `rampart db import`'s).
#[derive(Debug, Clone, Default)]
pub(crate) struct ImportOptions {
    /// The name the source is recorded under (`sources.path`); default its canonical path.
    /// `db update` records a download under its URL, so the next download of the same URL
    /// re-imports incrementally.
    pub key: Option<String>,
    /// Refuse the whole source (nothing is committed) when any member cannot be read as an OSV
    /// record, a member name is not a plain relative path, or the members' total
    /// decompressed size exceeds `max_total`; the default reports and skips bad members.
    pub strict: bool,
    /// The largest total decompressed size of a zip's members (declared and actually read).
    pub max_total: Option<u64>,
}

pub(crate) fn import(db: &mut VulnDb, source: &Path) -> Result<ImportStats, DbError> {
    import_with(db, source, &ImportOptions::default())
}

pub(crate) fn import_with(
    db: &mut VulnDb,
    source: &Path,
    opts: &ImportOptions,
) -> Result<ImportStats, DbError> {
    let started = Instant::now();
    let canonical = source.canonicalize().map_err(|e| DbError::Io {
        path: source.to_path_buf(),
        source: e,
    })?;
    let meta = fs::metadata(&canonical).map_err(|e| DbError::Io {
        path: canonical.clone(),
        source: e,
    })?;
    let src_err = |message: String| DbError::Source {
        path: canonical.clone(),
        message,
    };
    let mut zip = None;
    let (kind, members) = if meta.is_dir() {
        let mut m = Vec::new();
        walk(&canonical, &canonical, &mut m)?;
        ("dir", m)
    } else {
        let mut magic = [0u8; 4];
        let mut f = File::open(&canonical).map_err(|e| DbError::Io {
            path: canonical.clone(),
            source: e,
        })?;
        let n = f.read(&mut magic).unwrap_or(0);
        if n == 4 && magic == *b"PK\x03\x04" {
            let f = File::open(&canonical).map_err(|e| DbError::Io {
                path: canonical.clone(),
                source: e,
            })?;
            let mut archive = crate::limit::zip_archive(BufReader::new(f))
                .map_err(|e| src_err(format!("not a readable zip: {e}")))?;
            let mut m = Vec::new();
            let mut declared: u64 = 0;
            for i in 0..archive.len() {
                let entry = archive
                    .by_index_raw(i)
                    .map_err(|e| src_err(format!("zip member {i}: {e}")))?;
                let name = entry
                    .name()
                    .map(|n| n.into_owned())
                    .map_err(|e| src_err(format!("zip member {i}: {e}")))?;
                if opts.strict && !plain_relative(&name) {
                    // Members are never extracted, but osv.dev never writes such a name: an
                    // archive holding one is not an OSV export.
                    return Err(src_err(format!(
                        "zip member {i} {name:?} is not a plain relative path (absolute or `..`)"
                    )));
                }
                declared = declared.saturating_add(entry.size());
                if let Some(max) = opts.max_total.filter(|max| declared > *max) {
                    return Err(src_err(format!(
                        "zip members declare more than {max} bytes decompressed (zip bomb?)"
                    )));
                }
                if entry.is_file() && is_osv_name(&name) {
                    m.push(Member {
                        name,
                        fingerprint: format!("{:08x}-{}", entry.crc32(), entry.size()),
                        at: MemberAt::Zip(i),
                    });
                }
            }
            zip = Some(archive);
            ("zip", m)
        } else {
            let name = canonical
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let m = vec![Member {
                name,
                fingerprint: format!("{}-{}.{}", meta.len(), meta.mtime(), meta.mtime_nsec()),
                at: MemberAt::File(canonical.clone()),
            }];
            ("file", m)
        }
    };
    if opts.strict && (kind != "zip" || members.is_empty()) {
        return Err(src_err(format!(
            "not an OSV export: {}",
            if kind == "zip" {
                "the zip holds no OSV records"
            } else {
                "not a zip"
            }
        )));
    }
    let path_str = opts
        .key
        .clone()
        .unwrap_or_else(|| canonical.display().to_string());
    let mut stats = ImportStats {
        source: path_str.clone(),
        kind: kind.to_string(),
        files: members.len() as u64,
        ..ImportStats::default()
    };
    let dbpath = db.path.clone();
    let sql = |source| DbError::Sqlite {
        path: dbpath.clone(),
        source,
    };
    let tx = db.conn.transaction().map_err(sql)?;
    tx.execute(
        "INSERT OR IGNORE INTO sources(path, kind, imported_at, records, newest_modified) VALUES(?1, ?2, 0, 0, '')",
        params![path_str, kind],
    )
    .map_err(sql)?;
    let source_id: i64 = tx
        .query_row("SELECT id FROM sources WHERE path = ?1", [&path_str], |r| {
            r.get(0)
        })
        .map_err(sql)?;
    let mut previous: HashMap<String, (String, Option<String>)> = HashMap::new();
    {
        let mut stmt = tx
            .prepare("SELECT name, fingerprint, vuln_id FROM entries WHERE source_id = ?1")
            .map_err(sql)?;
        let rows = stmt
            .query_map([source_id], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
            .map_err(sql)?;
        for row in rows {
            let (k, v) = row.map_err(sql)?;
            previous.insert(k, v);
        }
    }
    let mut seen = HashSet::with_capacity(members.len());
    let mut budget = opts.max_total.unwrap_or(u64::MAX);
    for m in members {
        seen.insert(m.name.clone());
        let unchanged = previous
            .get(&m.name)
            .is_some_and(|(fp, _)| *fp == m.fingerprint);
        if unchanged && !opts.strict {
            stats.unchanged += 1;
            continue;
        }
        let data = match &m.at {
            MemberAt::File(p) => File::open(p)
                .and_then(|f| crate::limit::read_capped(f, MAX_RECORD))
                .map_err(|e| e.to_string()),
            MemberAt::Zip(i) => match zip.as_mut().map(|z| z.by_index(*i)) {
                Some(Ok(entry)) => crate::limit::read_capped(entry, MAX_RECORD.min(budget))
                    .map_err(|e| e.to_string()),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("zip closed".into()),
            },
        };
        if let Ok(d) = &data {
            budget = budget.saturating_sub(d.len() as u64);
        }
        let record = data.and_then(|d| parse(&m.name, &d)).and_then(|r| {
            if opts.strict && (r.id.is_empty() || r.modified.is_empty()) {
                Err("0: an OSV record needs `id` and `modified`".to_string())
            } else {
                Ok(r)
            }
        });
        let vuln_id = match record {
            // Strict: read (CRC checked) and parsed like every member, but stored already.
            Ok(_) if unchanged => {
                stats.unchanged += 1;
                continue;
            }
            Ok(r) => {
                match store(&tx, source_id, &r).map_err(sql)? {
                    Outcome::Added => stats.added += 1,
                    Outcome::Updated => stats.updated += 1,
                    Outcome::KeptNewer => stats.kept_newer += 1,
                }
                // A changed file may now hold another record: the old one goes.
                if let Some((_, Some(old))) = previous.get(&m.name) {
                    if *old != r.id {
                        stats.removed += delete_owned(&tx, source_id, old).map_err(sql)?;
                    }
                }
                Some(r.id)
            }
            Err(e) if opts.strict => {
                // Dropping the transaction rolls back everything this import wrote.
                return Err(src_err(format!("{}: {e}", m.name)));
            }
            Err(e) => {
                stats.errors.push(format!("{path_str}!{}:{e}", m.name));
                None
            }
        };
        tx.execute(
            "INSERT OR REPLACE INTO entries(source_id, name, fingerprint, vuln_id) VALUES(?1, ?2, ?3, ?4)",
            params![source_id, m.name, m.fingerprint, vuln_id],
        )
        .map_err(sql)?;
    }
    for (name, (_, vuln_id)) in &previous {
        if seen.contains(name) {
            continue;
        }
        if let Some(id) = vuln_id {
            stats.removed += delete_owned(&tx, source_id, id).map_err(sql)?;
        }
        tx.execute(
            "DELETE FROM entries WHERE source_id = ?1 AND name = ?2",
            params![source_id, name],
        )
        .map_err(sql)?;
    }
    tx.execute(
        "UPDATE sources SET kind = ?2, imported_at = ?3,
             records = (SELECT COUNT(*) FROM vulns WHERE source_id = ?1),
             newest_modified = COALESCE((SELECT MAX(modified) FROM vulns WHERE source_id = ?1), '')
         WHERE id = ?1",
        params![source_id, kind, now_secs()],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    stats.seconds = secs(started);
    Ok(stats)
}

/// Deletes record `id` if this source owns it; returns 1 when deleted.
fn delete_owned(conn: &Connection, source_id: i64, id: &str) -> rusqlite::Result<u64> {
    let n = conn.execute(
        "DELETE FROM vulns WHERE id = ?1 AND source_id = ?2",
        params![id, source_id],
    )?;
    if n > 0 {
        conn.execute("DELETE FROM affected WHERE vuln_id = ?1", [id])?;
    }
    Ok(n as u64)
}
