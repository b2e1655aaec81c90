//! Where the server keeps records: one [`Store`] trait, two engines.
//!
//! * [`SqliteStore`]: SQLite in WAL mode, the embedded default (`rampart up`, one VPS).
//! * [`ClickHouseStore`]: ClickHouse over its HTTP interface, for fleets; several stateless
//!   servers can write to one ClickHouse.
//!
//! Both pass the same test suite (`tests/store_suite.rs`). Guarantees every engine gives:
//! * ids are unique per agent: inserting a record whose (agent, id) is stored already stores
//!   nothing (ingest is idempotent), and the first stored version wins; another agent's
//!   record with the same id is stored beside it (no agent can pre-claim another's ids);
//! * [`Store::insert`] returns only once the records are committed;
//! * queries return each (agent, id) at most once, newest first;
//! * [`Store::delete_before`] removes every record of a region whose day (UTC, by event time)
//!   is before the cutoff, and nothing else.

mod clickhouse;
mod hook;
mod sqlite;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

pub use clickhouse::{ClickHouseConfig, ClickHouseStore};
pub use hook::{AfterInsert, InsertHook};
pub use sqlite::SqliteStore;

/// Called by [`Store::insert_with`] once the records are committed, with what was stored.
pub type Committed<'a> = Box<dyn FnOnce(&InsertOutcome) + Send + 'a>;

/// A boxed future, as the trait's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Store failures; the message names the engine and the operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("sqlite {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("sqlite {path}: syncing the write-ahead log: {source}")]
    Sync {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sqlite {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("clickhouse {url}: {message}")]
    ClickHouse { url: String, message: String },
    #[error("store task failed: {0}")]
    Task(String),
    /// The engine cannot answer this call (e.g. reading by ingest order on SQLite).
    #[error("{engine} store: {what} is not supported")]
    Unsupported {
        engine: &'static str,
        what: &'static str,
    },
}

/// Event or alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Event,
    Alert,
}

impl RecordKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RecordKind::Event => "event",
            RecordKind::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        match s {
            "event" => Some(RecordKind::Event),
            "alert" => Some(RecordKind::Alert),
            _ => None,
        }
    }
}

/// A record as stored: its JSON (after anonymisation) plus the columns queries filter on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's stable id (`metadata.uid`).
    pub id: String,
    pub kind: RecordKind,
    /// `type`: `process.exec`, ..., or `alert`.
    pub event_type: String,
    pub time_ns: u64,
    /// Days since the Unix epoch (UTC) of `time_ns`: the retention unit.
    pub day: u32,
    pub host: String,
    pub region: String,
    pub agent_id: String,
    pub container_id: String,
    pub container_name: String,
    pub image: String,
    /// Alerts: the rule's name.
    pub rule: String,
    /// Alerts: the priority name.
    pub priority: String,
    pub severity: u8,
    pub ingested_ns: u64,
    pub json: String,
}

/// Filters of a query; all given ones must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub kind: Option<RecordKind>,
    pub id: Option<String>,
    pub host: Option<String>,
    /// A container id prefix or an exact container name.
    pub container: Option<String>,
    pub rule: Option<String>,
    pub event_type: Option<String>,
    pub region: Option<String>,
    pub agent_id: Option<String>,
    /// Event time at or after, ns.
    pub since_ns: Option<u64>,
    /// Event time before, ns.
    pub until_ns: Option<u64>,
    /// At most this many records (0: the default of 100).
    pub limit: usize,
    /// At most about this many bytes of records' JSON (0: [`DEFAULT_QUERY_BYTES`]): a page
    /// ends early at this budget, after at least one record, so that a store holding very
    /// large records (an agent may store records up to `limits.ingest_record_bytes`) cannot
    /// make one query hold gigabytes. Continue with `until` = the last record's time.
    pub max_bytes: usize,
}

/// The default byte budget of one query's records.
pub const DEFAULT_QUERY_BYTES: usize = 16 << 20;

impl Query {
    /// The effective byte budget: [`DEFAULT_QUERY_BYTES`] unless one is given.
    pub fn effective_max_bytes(&self) -> usize {
        match self.max_bytes {
            0 => DEFAULT_QUERY_BYTES,
            n => n,
        }
    }

    /// The effective limit: 100 by default, at most 10 000.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(10_000),
        }
    }
}

/// What [`Store::insert`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    pub inserted: u64,
    /// Records whose id was stored already.
    pub duplicates: u64,
}

/// What [`Store::delete_before`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeleteOutcome {
    pub rows: u64,
    /// Partitions dropped (ClickHouse), e.g. `('eu-de','2024-01-31')`.
    pub partitions: Vec<String>,
}

/// One run of the retention job for one region, as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionRecord {
    pub run_ns: u64,
    pub region: String,
    /// Records of days before this one (YYYY-MM-DD, UTC) were deleted.
    pub cutoff_day: String,
    pub rows: u64,
    pub partitions: Vec<String>,
}

/// A host that has records, as the store's summary keeps it (maintained at insert, so reading
/// it never scans the records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSummary {
    pub host: String,
    /// Region and agent of the host's newest record.
    pub region: String,
    pub agent_id: String,
    /// Newest event time of the host's records, ns.
    pub last_event_ns: u64,
    /// When the server last stored a record of the host, ns.
    pub last_ingested_ns: u64,
}

/// True for the record types whose newest record per (host, container) the stores keep
/// findable without a scan ([`Store::latest_inventory`]).
pub fn is_inventory_type(event_type: &str) -> bool {
    event_type.starts_with("inventory.")
}

/// The storage engine behind the server.
pub trait Store: Send + Sync {
    /// `sqlite` or `clickhouse`.
    fn engine(&self) -> &'static str;

    /// Prometheus text a store layer adds to the server's `/metrics` (the fleet console's
    /// notifiers). Default: nothing.
    fn metrics_text(&self) -> String {
        String::new()
    }

    /// Stores `rows`, skipping (agent, id)s already stored; returns once committed (and durable, as
    /// far as the engine's settings make it).
    fn insert<'a>(
        &'a self,
        rows: &'a [StoredRecord],
    ) -> BoxFuture<'a, Result<InsertOutcome, StoreError>> {
        self.insert_with(rows, false, Box::new(|_| {}))
    }

    /// [`Store::insert`], calling `committed` as soon as the records are committed (a later
    /// insert commits after them), which may be before they are durable; returns once they
    /// are. The server releases an agent's next batch from `committed`, so that one batch's
    /// fsync overlaps the next one's insert; wrappers run their own work there to see batches
    /// in commit order.
    ///
    /// `unsent`: the sender says it never sent these records before
    /// ([`rampart_ship::protocol::BATCH_UNSENT_HEADER`]); an engine may then skip looking
    /// for their ids among the stored records, and counts them all as inserted. Query results
    /// still hold each id once (the ClickHouse table deduplicates by id), so a wrong claim
    /// costs only the counts.
    fn insert_with<'a>(
        &'a self,
        rows: &'a [StoredRecord],
        unsent: bool,
        committed: Committed<'a>,
    ) -> BoxFuture<'a, Result<InsertOutcome, StoreError>>;

    /// Records matching `q`, newest first, each (agent, id) once.
    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>>;

    /// How many records match `q` (ignoring its limit).
    fn count<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Regions that have records.
    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// Deletes every record of `region` whose day is before `cutoff_day` (days since epoch).
    fn delete_before<'a>(
        &'a self,
        region: &'a str,
        cutoff_day: u32,
    ) -> BoxFuture<'a, Result<DeleteOutcome, StoreError>>;

    /// Appends to the retention log.
    fn record_retention<'a>(
        &'a self,
        r: &'a RetentionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The newest `limit` retention log entries, newest first.
    fn retention_log(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RetentionRecord>, StoreError>>;

    /// Every host that has events (region and agent of its newest event), most recently heard
    /// from first. Never scans the records on SQLite.
    fn hosts(&self) -> BoxFuture<'_, Result<Vec<HostSummary>, StoreError>>;

    /// The newest stored record of `event_type` (an `inventory.*` type, see
    /// [`is_inventory_type`]) per (host, container id), of one host when `host` is given;
    /// newest first. Never scans the records on SQLite.
    fn latest_inventory<'a>(
        &'a self,
        event_type: &'a str,
        host: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>>;

    /// Up to `limit` records (of `kind` when given) in ingest order (`ingested_ns`, then
    /// id) strictly after `after` and ingested at or before `until_ns`, as every server of a
    /// fleet committed them (the fleet correlator and the dashboards' live streams read the
    /// whole fleet's records this way). A record stored twice (an agent's retry through
    /// another server) may come twice. Default: unsupported (SQLite holds one server's
    /// records only).
    fn ingested_after<'a>(
        &'a self,
        after: &'a IngestCursor,
        until_ns: u64,
        kind: Option<RecordKind>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        let _ = (after, until_ns, kind, limit);
        let engine = self.engine();
        Box::pin(async move {
            Err(StoreError::Unsupported {
                engine,
                what: "reading records in ingest order",
            })
        })
    }
    /// How many records were ingested in each whole second (`ingested_ns / 1e9`) of
    /// `[from_ns, until_ns)`, as (second, rows), every server's and every copy of a record
    /// stored twice counted (the fleet correlator compares them with what it read to find
    /// records that became visible after it had read past their ingest time). Default:
    /// unsupported.
    fn ingest_counts(
        &self,
        from_ns: u64,
        until_ns: u64,
    ) -> BoxFuture<'_, Result<Vec<(u64, u64)>, StoreError>> {
        let _ = (from_ns, until_ns);
        let engine = self.engine();
        Box::pin(async move {
            Err(StoreError::Unsupported {
                engine,
                what: "counting records by ingest second",
            })
        })
    }
}

/// A position in ingest order: the last record read was ingested at `ingested_ns` and has
/// `id` (records ingested at the same ns are ordered by id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestCursor {
    pub ingested_ns: u64,
    pub id: String,
}

impl IngestCursor {
    /// The cursor after `r`.
    pub fn after(r: &StoredRecord) -> IngestCursor {
        IngestCursor {
            ingested_ns: r.ingested_ns,
            id: r.id.clone(),
        }
    }

    /// `<ns> <id>`, the stored form.
    pub fn to_text(&self) -> String {
        format!("{} {}", self.ingested_ns, self.id)
    }

    /// The stored form back; `None` when it is not one.
    pub fn parse(s: &str) -> Option<IngestCursor> {
        let (ns, id) = s.split_once(' ')?;
        Some(IngestCursor {
            ingested_ns: ns.parse().ok()?,
            id: id.to_string(),
        })
    }
}

/// Days since the Unix epoch of `ns`.
pub fn day_of(ns: u64) -> u32 {
    (ns / 86_400_000_000_000) as u32
}

/// `YYYY-MM-DD` of a day number.
pub fn day_string(day: u32) -> String {
    // Julian day number of 1970-01-01 is 2440588.
    match time::Date::from_julian_day(2_440_588 + day as i32) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => "1970-01-01".into(),
    }
}

/// The day number of `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Option<u32> {
    let mut it = s.splitn(3, '-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u8 = it.next()?.parse().ok()?;
    let d: u8 = it.next()?.parse().ok()?;
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    u32::try_from(date.to_julian_day() - 2_440_588).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(19_723), "2024-01-01");
        assert_eq!(parse_day("2024-01-01"), Some(19_723));
        assert_eq!(day_of(1_704_067_200_000_000_000), 19_723);
        assert_eq!(parse_day("2024-13-01"), None);
    }
}
