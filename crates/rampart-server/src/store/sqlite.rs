//! The SQLite store: one database file in WAL mode, one writer connection and one reader
//! connection (WAL lets queries run while a batch commits).
//!
//! Schema: table `records` (one row per record, `(id, agent_id)` unique: ids are unique per
//! agent, so one agent cannot pre-claim another's), indexes on `time_ns` and
//! `(region, day)`, and two partial indexes over alerts only (`time_ns`, `(host, time_ns)`: the
//! newest alerts, a host's alerts, without walking the events); table `retention_log`.
//! `INSERT OR IGNORE` on the unique (id, agent) makes ingest idempotent; one transaction per
//! batch.
//!
//! Summaries kept in the batch's transaction, so that the dashboard's first page never scans
//! the records: `host_summary` (per host: region and agent of its newest event, newest event
//! time, last ingest time) and `latest_inventory` (per `inventory.*` type, host and container:
//! the id of the newest record). A database written before they existed is summarised once
//! when opened (`PRAGMA user_version` 0 -> 1); one whose ids were unique across agents is
//! re-keyed (1 -> 2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection};

use super::{
    is_inventory_type, BoxFuture, Committed, DeleteOutcome, HostSummary, InsertOutcome, Query,
    RecordKind, RetentionRecord, Store, StoreError, StoredRecord,
};

struct Inner {
    path: PathBuf,
    /// The write-ahead log, fsynced after each insert's commit (`synchronous_full`).
    wal: Option<PathBuf>,
    /// Bytes of records committed since the checkpoint thread last checkpointed.
    since_checkpoint: std::sync::atomic::AtomicU64,
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
    id TEXT NOT NULL,
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
    json TEXT NOT NULL,
    UNIQUE (id, agent_id)
);
CREATE TABLE IF NOT EXISTS host_summary (
    host TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    last_event_ns INTEGER NOT NULL,
    last_ingested_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS latest_inventory (
    type TEXT NOT NULL,
    host TEXT NOT NULL,
    container_id TEXT NOT NULL,
    region TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    PRIMARY KEY (type, host, container_id)
);
CREATE TABLE IF NOT EXISTS retention_log (
    run_ns INTEGER NOT NULL,
    region TEXT NOT NULL,
    cutoff_day TEXT NOT NULL,
    rows INTEGER NOT NULL,
    partitions TEXT NOT NULL
);
";

const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS records_time ON records (time_ns);
CREATE INDEX IF NOT EXISTS records_region_day ON records (region, day);
CREATE INDEX IF NOT EXISTS records_alert_time ON records (time_ns) WHERE kind = 'alert';
CREATE INDEX IF NOT EXISTS records_alert_host ON records (host, time_ns) WHERE kind = 'alert';
";

/// Version 1 -> 2: ids unique per agent (`UNIQUE (id, agent_id)`, was `id UNIQUE`), and
/// `latest_inventory` names the agent of the record it points to. Tables of version 1 are
/// copied into tables of the new form, in one transaction.
const REKEY: &str = "
BEGIN;
ALTER TABLE records RENAME TO records_v1;
DROP INDEX IF EXISTS records_time;
DROP INDEX IF EXISTS records_region_day;
DROP INDEX IF EXISTS records_alert_time;
DROP INDEX IF EXISTS records_alert_host;
CREATE TABLE records (
    id TEXT NOT NULL,
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
    json TEXT NOT NULL,
    UNIQUE (id, agent_id)
);
INSERT INTO records SELECT * FROM records_v1;
DROP TABLE records_v1;
DROP TABLE latest_inventory;
CREATE TABLE latest_inventory (
    type TEXT NOT NULL,
    host TEXT NOT NULL,
    container_id TEXT NOT NULL,
    region TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    PRIMARY KEY (type, host, container_id)
);
INSERT INTO latest_inventory (type, host, container_id, region, time_ns, id, agent_id)
    SELECT type, host, container_id, region, max(time_ns), id, agent_id FROM records
    WHERE type >= 'inventory.' AND type < 'inventory/' GROUP BY type, host, container_id;
PRAGMA user_version = 2;
COMMIT;
";

/// Builds the summaries from the records (a database written by an older version).
const SUMMARISE: &str = "
BEGIN;
INSERT OR REPLACE INTO host_summary (host, region, agent_id, last_event_ns, last_ingested_ns)
    SELECT host, region, agent_id, max(time_ns), max(ingested_ns) FROM records
    WHERE kind = 'event' GROUP BY host;
INSERT OR REPLACE INTO latest_inventory (type, host, container_id, region, time_ns, id, agent_id)
    SELECT type, host, container_id, region, max(time_ns), id, agent_id FROM records
    WHERE type >= 'inventory.' AND type < 'inventory/' GROUP BY type, host, container_id;
PRAGMA user_version = 1;
COMMIT;
";

const UPSERT_HOST: &str = "
INSERT INTO host_summary (host, region, agent_id, last_event_ns, last_ingested_ns)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (host) DO UPDATE SET
    region = CASE WHEN excluded.last_event_ns >= last_event_ns THEN excluded.region ELSE region END,
    agent_id = CASE WHEN excluded.last_event_ns >= last_event_ns THEN excluded.agent_id ELSE agent_id END,
    last_event_ns = max(last_event_ns, excluded.last_event_ns),
    last_ingested_ns = max(last_ingested_ns, excluded.last_ingested_ns)";

const UPSERT_INVENTORY: &str = "
INSERT INTO latest_inventory (type, host, container_id, region, time_ns, id, agent_id)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (type, host, container_id) DO UPDATE SET
    region = excluded.region, time_ns = excluded.time_ns, id = excluded.id,
    agent_id = excluded.agent_id
WHERE excluded.time_ns >= latest_inventory.time_ns";

const COLUMNS: &str = "id, kind, type, time_ns, day, host, region, agent_id, container_id, \
                       container_name, image, rule, priority, severity, ingested_ns, json";

impl SqliteStore {
    /// Opens (creating when missing) the database at `path`. `synchronous_full`: a commit is
    /// on disk before `insert` returns (survives power loss); otherwise it survives a crash of
    /// the process only.
    ///
    /// A new database gets 16 KiB pages: records are about 1 KiB of JSON, and with 4 KiB pages
    /// the insert costs about 1.6 times the CPU per record (the `pages` part of the ingest
    /// benchmark, docs/benchmarks.md). An existing database keeps its page size.
    pub fn open(path: &Path, synchronous_full: bool) -> Result<SqliteStore, StoreError> {
        Self::open_with(path, synchronous_full, CHECKPOINT_BYTES)
    }

    /// Sets the page cache of the writer and of the reader connection to `mib` MiB each
    /// (64 when opened). The cache is what the store's memory grows to under a steady ingest.
    pub fn set_cache_mib(&self, mib: u32) -> Result<(), StoreError> {
        let pragma = format!("PRAGMA cache_size=-{};", u64::from(mib) * 1024);
        for c in [&self.inner.writer, &self.inner.reader] {
            c.lock()
                .unwrap_or_else(|p| p.into_inner())
                .execute_batch(&pragma)
                .map_err(|source| StoreError::Sqlite {
                    path: self.inner.path.display().to_string(),
                    source,
                })?;
        }
        Ok(())
    }

    /// [`SqliteStore::open`], checkpointing every `checkpoint_bytes` of records.
    fn open_with(
        path: &Path,
        synchronous_full: bool,
        checkpoint_bytes: u64,
    ) -> Result<SqliteStore, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        // Records are evidence and may hold secrets: 0600 (its -wal and -shm follow).
        crate::fsmode::secret_file(path).map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let writer = Connection::open(path).map_err(err)?;
        // The writer commits with synchronous=NORMAL (the WAL is not fsynced inside the
        // commit), and `insert` fsyncs the WAL itself after the commit when `synchronous_full`,
        // with the writer free: the next batch's insert runs while this one's fsync waits for
        // the disk. That is what synchronous=FULL does in WAL mode (an fsync of the WAL after
        // each commit), moved out of the lock. The writer does not checkpoint: a thread of its
        // own does (see `checkpoints`), so that copying the WAL into the database runs beside
        // the inserts. A checkpoint syncs the WAL before copying it, and the database after.
        writer
            .execute_batch(&format!(
                "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
                 PRAGMA busy_timeout=10000; PRAGMA cache_size=-65536;
                 PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=134217728; {SCHEMA}"
            ))
            .map_err(err)?;
        let version: i64 = writer
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version < 2 {
            let sql: String = writer
                .query_row(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'records'",
                    [],
                    |r| r.get(0),
                )
                .map_err(err)?;
            if !sql.contains("UNIQUE (id, agent_id)") {
                // Version 0 or 1: ids were unique across agents.
                writer.execute_batch(REKEY).map_err(err)?;
            }
        }
        if version < 1 {
            // Summaries of records stored before the summaries existed (one scan, once).
            writer.execute_batch(SUMMARISE).map_err(err)?;
        }
        writer
            .execute_batch(&format!("{INDEXES} PRAGMA user_version = 2;"))
            .map_err(err)?;
        let reader = Connection::open(path).map_err(err)?;
        reader
            .execute_batch(
                "PRAGMA busy_timeout=10000; PRAGMA query_only=1; PRAGMA cache_size=-65536;",
            )
            .map_err(err)?;
        let checkpointer = Connection::open(path).map_err(err)?;
        checkpointer
            .execute_batch("PRAGMA busy_timeout=10000; PRAGMA synchronous=NORMAL;")
            .map_err(err)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            wal: synchronous_full.then(|| wal.clone()),
            since_checkpoint: std::sync::atomic::AtomicU64::new(0),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoints(weak, checkpointer, wal, checkpoint_bytes))
            .map_err(|e| StoreError::Task(format!("starting the checkpoint thread: {e}")))?;
        Ok(SqliteStore { inner })
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
    // A literal (from the enum, never input text), so the planner can use the partial
    // indexes over alerts.
    match q.kind {
        Some(RecordKind::Alert) => conds.push("kind = 'alert'"),
        Some(RecordKind::Event) => conds.push("kind = 'event'"),
        None => {}
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

/// The index a newest-first query walks. Without statistics, SQLite 3.53 plans a filter on
/// unindexed columns (`host = ? AND type = ?`) as a scan of the whole table and a sort, which
/// takes seconds at 10 million records; walking the time index from the newest end stops after
/// `limit` matches. Alerts have their own (partial) indexes, an id its unique one.
fn index_hint(q: &Query) -> &'static str {
    if q.id.is_some() {
        return "";
    }
    match q.kind {
        Some(RecordKind::Alert) if q.host.is_some() => " INDEXED BY records_alert_host",
        Some(RecordKind::Alert) => " INDEXED BY records_alert_time",
        _ => " INDEXED BY records_time",
    }
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

/// Bytes of records committed after which the checkpoint thread copies the WAL into the
/// database.
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// WAL size at which it waits for the writer to let it finish and restart the WAL (a
/// checkpoint that keeps falling behind: a long read, a writer that never pauses).
const RESTART_BYTES: u64 = 1 << 30;

/// The checkpoint thread: every 100 ms, while the store is open, copies the WAL into the
/// database once [`CHECKPOINT_BYTES`] of records were committed since it last did (a PASSIVE
/// checkpoint runs beside the writer and the reader), and when the WAL file is past
/// [`RESTART_BYTES`] makes the writer wait until the WAL can start over. The writer's own
/// automatic checkpoints are off: they ran inside a commit, with the writer held for the copy
/// and the database's fsync.
fn checkpoints(store: std::sync::Weak<Inner>, c: Connection, wal: PathBuf, every: u64) {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Some(inner) = store.upgrade() else {
            return;
        };
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        let committed = inner.since_checkpoint.load(Ordering::Relaxed);
        let mode = if size >= RESTART_BYTES {
            "RESTART"
        } else if committed >= every {
            "PASSIVE"
        } else {
            continue;
        };
        inner
            .since_checkpoint
            .fetch_sub(committed, Ordering::Relaxed);
        let checkpoint = |mode: &str| {
            if let Err(e) = c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
                tracing::warn!(path = %inner.path.display(), "sqlite checkpoint: {e}");
            }
        };
        // Most of the copy beside the writer; then, with the writer held, the frames committed
        // meanwhile, so that the WAL is wholly in the database and the next commit starts it
        // over (a WAL whose checkpoint is always behind would grow without end).
        checkpoint(mode);
        let writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        checkpoint("PASSIVE");
        drop(writer);
    }
}

/// One batch in one transaction: the records (`INSERT OR IGNORE` on the unique id) and the
/// summaries of what was new.
fn insert_rows(c: &mut Connection, rows: &[StoredRecord]) -> rusqlite::Result<InsertOutcome> {
    let tx = c.transaction()?;
    let mut inserted = 0u64;
    // Per host: (region, agent, newest event time, newest ingest time).
    let mut hosts: HashMap<&str, (&str, &str, u64, u64)> = HashMap::new();
    {
        let mut st = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
            ))?;
        let mut inv = tx.prepare_cached(UPSERT_INVENTORY)?;
        for r in rows {
            let n = st.execute(params![
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
            inserted += n;
            if n == 0 {
                continue;
            }
            if r.kind == RecordKind::Event {
                let h = hosts.entry(&r.host).or_insert((
                    &r.region,
                    &r.agent_id,
                    r.time_ns,
                    r.ingested_ns,
                ));
                if r.time_ns >= h.2 {
                    (h.0, h.1, h.2) = (&r.region, &r.agent_id, r.time_ns);
                }
                h.3 = h.3.max(r.ingested_ns);
            }
            if is_inventory_type(&r.event_type) {
                inv.execute(params![
                    r.event_type,
                    r.host,
                    r.container_id,
                    r.region,
                    r.time_ns as i64,
                    r.id,
                    r.agent_id
                ])?;
            }
        }
        let mut up = tx.prepare_cached(UPSERT_HOST)?;
        for (host, (region, agent, last, ingested)) in &hosts {
            up.execute(params![host, region, agent, *last as i64, *ingested as i64])?;
        }
    }
    tx.commit()?;
    Ok(InsertOutcome {
        inserted,
        duplicates: rows.len() as u64 - inserted,
    })
}

impl Store for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    /// `committed` is called with the writer released, before the WAL's fsync (on a
    /// current-thread runtime, after it).
    fn insert_with<'a>(
        &'a self,
        rows: &'a [StoredRecord],
        _unsent: bool,
        committed: Committed<'a>,
    ) -> BoxFuture<'a, Result<InsertOutcome, StoreError>> {
        let inner = self.inner.clone();
        let commit = move |rows: &[StoredRecord],
                           committed: Option<Committed<'_>>|
              -> Result<InsertOutcome, StoreError> {
            let mut c = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            let outcome = insert_rows(&mut c, rows).map_err(|source| StoreError::Sqlite {
                path: inner.path.display().to_string(),
                source,
            })?;
            drop(c);
            let bytes: usize = rows.iter().map(|r| r.json.len()).sum();
            inner
                .since_checkpoint
                .fetch_add(bytes as u64, Ordering::Relaxed);
            if let Some(f) = committed {
                f(&outcome);
            }
            if let Some(wal) = &inner.wal {
                std::fs::File::open(wal)
                    .and_then(|f| f.sync_data())
                    .map_err(|source| StoreError::Sync {
                        path: wal.display().to_string(),
                        source,
                    })?;
            }
            Ok(outcome)
        };
        Box::pin(async move {
            // On a multi-threaded runtime the blocking commit borrows the rows where they are
            // (copying a batch of 5000 records cost about a third of parsing it); a
            // current-thread runtime cannot block in place, so there they are copied to a
            // blocking thread.
            let multi = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            if multi {
                tokio::task::block_in_place(|| commit(rows, Some(committed)))
            } else {
                let rows = rows.to_vec();
                let outcome = tokio::task::spawn_blocking(move || commit(&rows, None))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??;
                committed(&outcome);
                Ok(outcome)
            }
        })
    }

    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        let (w, mut args) = where_clause(q);
        args.push(SqlValue::Integer(q.effective_limit() as i64));
        let hint = index_hint(q);
        let budget = q.effective_max_bytes();
        self.blocking(false, move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM records{hint}{w} ORDER BY time_ns DESC, id DESC LIMIT ?"
            ))?;
            let rows = st.query_map(params_from_iter(args), row_to_record)?;
            // Rows are read one at a time: the page stops at the byte budget.
            let (mut out, mut bytes) = (Vec::new(), 0usize);
            for r in rows {
                let r = r?;
                bytes += r.json.len();
                out.push(r);
                if bytes >= budget {
                    break;
                }
            }
            Ok(out)
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
            // A skip scan over the (region, day) index: one seek per region instead of a walk
            // over every record (seconds at 10 million records, with the reader held).
            let mut st = c.prepare(
                "WITH RECURSIVE r(region) AS (
                     SELECT min(region) FROM records
                     UNION ALL
                     SELECT (SELECT min(region) FROM records WHERE region > r.region) FROM r
                     WHERE r.region IS NOT NULL)
                 SELECT region FROM r WHERE region IS NOT NULL",
            )?;
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
            // A host whose newest event is before the cutoff has no event of the region left.
            c.execute(
                "DELETE FROM host_summary WHERE region = ?1 AND last_event_ns < ?2",
                params![region, i64::from(cutoff_day).saturating_mul(86_400_000_000_000)],
            )?;
            c.execute(
                "DELETE FROM latest_inventory WHERE region = ?1 AND NOT EXISTS (SELECT 1 FROM records r WHERE r.id = latest_inventory.id AND r.agent_id = latest_inventory.agent_id)",
                params![region],
            )?;
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

    fn hosts(&self) -> BoxFuture<'_, Result<Vec<HostSummary>, StoreError>> {
        self.blocking(false, |c| {
            let mut st = c.prepare(
                "SELECT host, region, agent_id, last_event_ns, last_ingested_ns FROM host_summary ORDER BY last_ingested_ns DESC, host",
            )?;
            let rows = st.query_map([], |r| {
                Ok(HostSummary {
                    host: r.get(0)?,
                    region: r.get(1)?,
                    agent_id: r.get(2)?,
                    last_event_ns: r.get::<_, i64>(3)? as u64,
                    last_ingested_ns: r.get::<_, i64>(4)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn latest_inventory<'a>(
        &'a self,
        event_type: &'a str,
        host: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        let event_type = event_type.to_string();
        let host = host.map(str::to_string);
        self.blocking(false, move |c| {
            let cols: Vec<String> = COLUMNS.split(", ").map(|c| format!("r.{c}")).collect();
            let mut args = vec![SqlValue::Text(event_type)];
            let mut sql = format!(
                "SELECT {} FROM latest_inventory l JOIN records r ON r.id = l.id AND r.agent_id = l.agent_id WHERE l.type = ?",
                cols.join(", ")
            );
            if let Some(h) = host {
                sql.push_str(" AND l.host = ?");
                args.push(SqlValue::Text(h));
            }
            sql.push_str(" ORDER BY l.time_ns DESC, l.host, l.container_id");
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(args), row_to_record)?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> StoredRecord {
        StoredRecord {
            id: format!("r-{i:x}"),
            kind: RecordKind::Event,
            event_type: "net.connect".into(),
            time_ns: 1_700_000_000_000_000_000 + i,
            day: 19_675,
            host: "vps1".into(),
            region: "eu-de".into(),
            agent_id: "agt-1".into(),
            container_id: String::new(),
            container_name: String::new(),
            image: String::new(),
            rule: String::new(),
            priority: String::new(),
            severity: 1,
            ingested_ns: 1,
            json: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(1000)),
        }
    }

    /// `store.cache_mib` (issue 20): both connections' page caches are set, and inserts and
    /// queries still work.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cache_mib_sets_the_page_cache_of_both_connections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("events.db"), false).expect("open");
        let cache = |c: &Mutex<Connection>| -> i64 {
            c.lock()
                .expect("lock")
                .query_row("PRAGMA cache_size", [], |r| r.get(0))
                .expect("pragma")
        };
        assert_eq!(cache(&store.inner.writer), -65536);
        store.set_cache_mib(8).expect("set");
        assert_eq!(cache(&store.inner.writer), -8192);
        assert_eq!(cache(&store.inner.reader), -8192);
        let rows: Vec<StoredRecord> = (0..100).map(record).collect();
        store.insert(&rows).await.expect("insert");
    }

    /// The checkpoint thread copies the WAL into the database while batches keep coming, and
    /// the WAL starts over instead of growing with everything ever inserted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_checkpointed_beside_the_writer_and_stays_small() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        let store = SqliteStore::open_with(&path, true, 1 << 20).expect("open");
        let wal = dir.path().join("events.db-wal");
        let mut largest_wal = 0;
        // 30 batches of 1 MiB, 40 ms apart: the thread checks every 100 ms.
        for b in 0..30u64 {
            let rows: Vec<StoredRecord> = (b * 1000..(b + 1) * 1000).map(record).collect();
            store.insert(&rows).await.expect("insert");
            largest_wal = largest_wal.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        }
        let db = std::fs::metadata(&path).expect("database").len();
        assert!(
            db > 20 << 20,
            "records were copied into the database: {db} bytes"
        );
        assert!(
            largest_wal < 20 << 20,
            "the WAL started over instead of holding all 30 MiB: at most {largest_wal} bytes"
        );
        assert_eq!(store.count(&Query::default()).await.expect("count"), 30_000);
    }
}
