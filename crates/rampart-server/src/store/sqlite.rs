//! The SQLite store: one database file in WAL mode, one writer connection and one reader
//! connection (WAL lets queries run while a batch commits).
//!
//! Schema: table `records` (one row per record, `id` unique), indexes on `time_ns` and
//! `(region, day)`; table `retention_log`. `INSERT OR IGNORE` on the unique id makes ingest
//! idempotent; one transaction per batch.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection};

use super::{
    BoxFuture, DeleteOutcome, InsertOutcome, Query, RecordKind, RetentionRecord, Store, StoreError,
    StoredRecord,
};

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    type TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    day INTEGER NOT NULL,
    host TEXT NOT NULL,
    region TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    container_id TEXT NOT NULL,
    container_name TEXT NOT NULL,
    image TEXT NOT NULL,
    rule TEXT NOT NULL,
    priority TEXT NOT NULL,
    severity INTEGER NOT NULL,
    ingested_ns INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records (time_ns);
CREATE INDEX IF NOT EXISTS records_region_day ON records (region, day);
CREATE TABLE IF NOT EXISTS retention_log (
    run_ns INTEGER NOT NULL,
    region TEXT NOT NULL,
    cutoff_day TEXT NOT NULL,
    rows INTEGER NOT NULL,
    partitions TEXT NOT NULL
);
";

const COLUMNS: &str = "id, kind, type, time_ns, day, host, region, agent_id, container_id, \
                       container_name, image, rule, priority, severity, ingested_ns, json";

impl SqliteStore {
    /// Opens (creating when missing) the database at `path`. `synchronous_full`: a commit is
    /// on disk before `insert` returns (survives power loss); otherwise it survives a crash of
    /// the process only.
    pub fn open(path: &Path, synchronous_full: bool) -> Result<SqliteStore, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let sync = if synchronous_full { "FULL" } else { "NORMAL" };
        let writer = Connection::open(path).map_err(err)?;
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=10000;
                 PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=16384; {SCHEMA}"
            ))
            .map_err(err)?;
        let reader = Connection::open(path).map_err(err)?;
        reader
            .execute_batch("PRAGMA busy_timeout=10000; PRAGMA query_only=1;")
            .map_err(err)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
            }),
        })
    }

    fn blocking<T: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let m = if write { &inner.writer } else { &inner.reader };
                let mut c = m.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut c).map_err(|source| StoreError::Sqlite {
                    path: inner.path.display().to_string(),
                    source,
                })
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
        })
    }
}

fn where_clause(q: &Query) -> (String, Vec<SqlValue>) {
    let mut conds: Vec<&str> = Vec::new();
    let mut args: Vec<SqlValue> = Vec::new();
    let text = |s: &String| SqlValue::Text(s.clone());
    if let Some(k) = q.kind {
        conds.push("kind = ?");
        args.push(SqlValue::Text(k.as_str().into()));
    }
    if let Some(v) = &q.id {
        conds.push("id = ?");
        args.push(text(v));
    }
    if let Some(v) = &q.host {
        conds.push("host = ?");
        args.push(text(v));
    }
    if let Some(v) = &q.container {
        conds.push("(substr(container_id, 1, length(?)) = ? OR container_name = ?)");
        args.extend([text(v), text(v), text(v)]);
    }
    if let Some(v) = &q.rule {
        conds.push("rule = ?");
        args.push(text(v));
    }
    if let Some(v) = &q.event_type {
        conds.push("type = ?");
        args.push(text(v));
    }
    if let Some(v) = &q.region {
        conds.push("region = ?");
        args.push(text(v));
    }
    if let Some(v) = &q.agent_id {
        conds.push("agent_id = ?");
        args.push(text(v));
    }
    if let Some(v) = q.since_ns {
        conds.push("time_ns >= ?");
        args.push(SqlValue::Integer(v as i64));
    }
    if let Some(v) = q.until_ns {
        conds.push("time_ns < ?");
        args.push(SqlValue::Integer(v as i64));
    }
    let w = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (w, args)
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    let kind: String = r.get(1)?;
    Ok(StoredRecord {
        id: r.get(0)?,
        kind: RecordKind::parse(&kind).unwrap_or(RecordKind::Event),
        event_type: r.get(2)?,
        time_ns: r.get::<_, i64>(3)? as u64,
        day: r.get::<_, i64>(4)? as u32,
        host: r.get(5)?,
        region: r.get(6)?,
        agent_id: r.get(7)?,
        container_id: r.get(8)?,
        container_name: r.get(9)?,
        image: r.get(10)?,
        rule: r.get(11)?,
        priority: r.get(12)?,
        severity: r.get::<_, i64>(13)? as u8,
        ingested_ns: r.get::<_, i64>(14)? as u64,
        json: r.get(15)?,
    })
}

impl Store for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn insert<'a>(
        &'a self,
        rows: &'a [StoredRecord],
    ) -> BoxFuture<'a, Result<InsertOutcome, StoreError>> {
        let rows = rows.to_vec();
        self.blocking(true, move |c| {
            let tx = c.transaction()?;
            let mut inserted = 0u64;
            {
                let mut st = tx.prepare_cached(&format!(
                    "INSERT OR IGNORE INTO records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
                ))?;
                for r in &rows {
                    inserted += st.execute(params![
                        r.id,
                        r.kind.as_str(),
                        r.event_type,
                        r.time_ns as i64,
                        r.day,
                        r.host,
                        r.region,
                        r.agent_id,
                        r.container_id,
                        r.container_name,
                        r.image,
                        r.rule,
                        r.priority,
                        r.severity,
                        r.ingested_ns as i64,
                        r.json,
                    ])? as u64;
                }
            }
            tx.commit()?;
            Ok(InsertOutcome {
                inserted,
                duplicates: rows.len() as u64 - inserted,
            })
        })
    }

    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        let (w, mut args) = where_clause(q);
        args.push(SqlValue::Integer(q.effective_limit() as i64));
        self.blocking(false, move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM records{w} ORDER BY time_ns DESC, id DESC LIMIT ?"
            ))?;
            let rows = st.query_map(params_from_iter(args), row_to_record)?;
            rows.collect()
        })
    }

    fn count<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<u64, StoreError>> {
        let (w, args) = where_clause(q);
        self.blocking(false, move |c| {
            c.query_row(
                &format!("SELECT count(*) FROM records{w}"),
                params_from_iter(args),
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.blocking(false, |c| {
            let mut st = c.prepare("SELECT DISTINCT region FROM records ORDER BY region")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn delete_before<'a>(
        &'a self,
        region: &'a str,
        cutoff_day: u32,
    ) -> BoxFuture<'a, Result<DeleteOutcome, StoreError>> {
        let region = region.to_string();
        self.blocking(true, move |c| {
            // In chunks, so that ingest is not locked out for the whole deletion.
            let mut rows = 0u64;
            loop {
                let n = c.execute(
                    "DELETE FROM records WHERE rowid IN (SELECT rowid FROM records WHERE region = ?1 AND day < ?2 LIMIT 20000)",
                    params![region, cutoff_day],
                )?;
                rows += n as u64;
                if n == 0 {
                    break;
                }
            }
            Ok(DeleteOutcome {
                rows,
                partitions: Vec::new(),
            })
        })
    }

    fn record_retention<'a>(
        &'a self,
        r: &'a RetentionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let r = r.clone();
        self.blocking(true, move |c| {
            c.execute(
                "INSERT INTO retention_log (run_ns, region, cutoff_day, rows, partitions) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.run_ns as i64, r.region, r.cutoff_day, r.rows as i64, r.partitions.join(" ")],
            )
            .map(|_| ())
        })
    }

    fn retention_log(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RetentionRecord>, StoreError>> {
        self.blocking(false, move |c| {
            let mut st = c.prepare(
                "SELECT run_ns, region, cutoff_day, rows, partitions FROM retention_log ORDER BY run_ns DESC, rowid DESC LIMIT ?1",
            )?;
            let rows = st.query_map(params![limit as i64], |r| {
                let parts: String = r.get(4)?;
                Ok(RetentionRecord {
                    run_ns: r.get::<_, i64>(0)? as u64,
                    region: r.get(1)?,
                    cutoff_day: r.get(2)?,
                    rows: r.get::<_, i64>(3)? as u64,
                    partitions: parts.split_whitespace().map(str::to_string).collect(),
                })
            })?;
            rows.collect()
        })
    }
}
