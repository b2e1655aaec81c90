//! The ClickHouse store, over ClickHouse's HTTP interface.
//!
//! Written for every ClickHouse from 18.16 (Debian's) on: no TTL, no codecs, no query
//! parameters, no LowCardinality.
//!
//! * Table `records`: `ReplacingMergeTree(keep)`, `PARTITION BY (region, day)`,
//!   `ORDER BY (agent_id, id)`: ids are unique per agent, so one agent cannot pre-claim
//!   another's ids (a table of an older version, `ORDER BY id`, is re-keyed when opened).
//!   Partitions per region and day make retention a matter of dropping
//!   partitions, which every version can do, and let one region's data go without touching
//!   another's. `keep = u64::MAX - ingested_ns`, so when merges collapse rows with one
//!   (agent, id), the first ingested wins (as in SQLite).
//! * Idempotence: before inserting, the ids of a batch are looked up (within the batch's
//!   agent and partitions, by primary key), and known ones are left out. Two servers inserting the same
//!   batch at the same instant can still both insert it; merges collapse such rows, and every
//!   query reads with `FINAL`, so results never show an (agent, id) twice.
//! * String values in SQL are quoted by [`quote`]; 18.16 has no query parameters.

use std::collections::BTreeSet;
use std::sync::Mutex;

use bytes::Bytes;
use hyper::Method;
use rampart_ship::client::{ClientError, HttpClient, HttpResponse};
use serde::Deserialize;

use super::{
    day_string, parse_day, BoxFuture, Committed, DeleteOutcome, HostSummary, IngestCursor,
    InsertOutcome, Query, RecordKind, RetentionRecord, Store, StoreError, StoredRecord,
};

/// How to reach ClickHouse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// `http://host:8123` (https needs a CA bundle the agent-side TLS loader understands).
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// ClickHouse-backed [`Store`].
pub struct ClickHouseStore {
    cfg: ClickHouseConfig,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pool: Mutex<Vec<HttpClient>>,
    version: String,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("url", &self.cfg.url)
            .field("database", &self.cfg.database)
            .field("version", &self.version)
            .finish()
    }
}

/// A ClickHouse string literal: single-quoted, with `\` and `'` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A database name: letters, digits and `_`.
fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

/// Columns of `records` in the order [`row_binary`] writes them.
const INSERT_COLUMNS: &str = "day, region, time_ns, id, kind, type, host, agent_id, \
                              container_id, container_name, image, rule, priority, severity, \
                              ingested_ns, keep, json";

/// A `String` of ClickHouse's RowBinary format: LEB128 length, then the bytes.
fn put_string(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(s.as_bytes());
}

/// One row of [`INSERT_COLUMNS`] in RowBinary (every version from 18.16 reads it): no text
/// escaping of the record's JSON on our side, no parsing of it on ClickHouse's.
fn row_binary(out: &mut Vec<u8>, r: &StoredRecord) {
    // Date: days since the epoch, UInt16 (up to 2149-06-06).
    out.extend_from_slice(&u16::try_from(r.day).unwrap_or(u16::MAX).to_le_bytes());
    put_string(out, &r.region);
    out.extend_from_slice(&r.time_ns.to_le_bytes());
    put_string(out, &r.id);
    put_string(out, r.kind.as_str());
    put_string(out, &r.event_type);
    put_string(out, &r.host);
    put_string(out, &r.agent_id);
    put_string(out, &r.container_id);
    put_string(out, &r.container_name);
    put_string(out, &r.image);
    put_string(out, &r.rule);
    put_string(out, &r.priority);
    out.push(r.severity);
    out.extend_from_slice(&r.ingested_ns.to_le_bytes());
    out.extend_from_slice(&(u64::MAX - r.ingested_ns).to_le_bytes());
    put_string(out, &r.json);
}

#[derive(Deserialize)]
struct RowIn {
    id: String,
    kind: String,
    #[serde(rename = "type")]
    event_type: String,
    time_ns: u64,
    day: String,
    host: String,
    region: String,
    agent_id: String,
    container_id: String,
    container_name: String,
    image: String,
    rule: String,
    priority: String,
    severity: u8,
    ingested_ns: u64,
    json: String,
}

const SELECT_COLUMNS: &str = "id, kind, type, time_ns, day, host, region, agent_id, container_id, \
                              container_name, image, rule, priority, severity, ingested_ns, json";

impl ClickHouseStore {
    /// Connects, creates the database and tables when missing, and returns the store.
    pub async fn open(cfg: ClickHouseConfig) -> Result<ClickHouseStore, StoreError> {
        if !valid_ident(&cfg.database) {
            return Err(StoreError::ClickHouse {
                url: cfg.url.clone(),
                message: format!(
                    "database name {:?}: letters, digits and '_' only",
                    cfg.database
                ),
            });
        }
        let tls = if cfg.url.starts_with("https://") {
            let roots = rampart_ship::tls::load_roots(std::path::Path::new(
                rampart_ship::tls::SYSTEM_CA_BUNDLE,
            ))
            .map_err(|e| StoreError::ClickHouse {
                url: cfg.url.clone(),
                message: e.to_string(),
            })?;
            Some(rampart_ship::tls::client_config(roots, None).map_err(|e| {
                StoreError::ClickHouse {
                    url: cfg.url.clone(),
                    message: e.to_string(),
                }
            })?)
        } else {
            None
        };
        let mut store = ClickHouseStore {
            cfg,
            tls,
            pool: Mutex::new(Vec::new()),
            version: String::new(),
        };
        store.version = store
            .sql("SELECT version()", None)
            .await?
            .trim()
            .to_string();
        let db = &store.cfg.database;
        store
            .sql(&format!("CREATE DATABASE IF NOT EXISTS {db}"), None)
            .await?;
        store
            .sql(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {db}.records (
                        day Date, region String, time_ns UInt64, id String, kind String,
                        type String, host String, agent_id String, container_id String,
                        container_name String, image String, rule String, priority String,
                        severity UInt8, ingested_ns UInt64, keep UInt64, json String
                    ) ENGINE = ReplacingMergeTree(keep) PARTITION BY (region, day) ORDER BY (agent_id, id)"
                ),
                None,
            )
            .await?;
        store.migrate_key().await?;
        store
            .sql(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {db}.retention_log (
                        run_ns UInt64, region String, cutoff_day String, rows UInt64,
                        partitions String
                    ) ENGINE = MergeTree ORDER BY run_ns"
                ),
                None,
            )
            .await?;
        Ok(store)
    }

    /// Ids are unique per agent (one agent cannot claim another's ids): a table written when
    /// they were unique across agents (`ORDER BY id`) is copied into one ordered by
    /// `(agent_id, id)`, which then takes its name; the old table is dropped.
    async fn migrate_key(&self) -> Result<(), StoreError> {
        let db = &self.cfg.database;
        let key = self
            .sql(
                &format!(
                    "SELECT engine_full FROM system.tables WHERE database = {} AND name = 'records' FORMAT TabSeparated",
                    quote(db)
                ),
                None,
            )
            .await?;
        // `ORDER BY id` ends the engine of the old table (18.16 has no `sorting_key` column).
        let key = key.trim();
        if !(key.ends_with("ORDER BY id") || key.contains("ORDER BY id ")) {
            return Ok(());
        }
        tracing::info!(database = %db, "clickhouse: re-keying records by (agent_id, id)");
        for sql in [
            format!("DROP TABLE IF EXISTS {db}.records_by_agent"),
            format!(
                "CREATE TABLE {db}.records_by_agent AS {db}.records ENGINE = ReplacingMergeTree(keep) PARTITION BY (region, day) ORDER BY (agent_id, id)"
            ),
            format!("INSERT INTO {db}.records_by_agent SELECT * FROM {db}.records"),
            format!(
                "RENAME TABLE {db}.records TO {db}.records_by_id, {db}.records_by_agent TO {db}.records"
            ),
            format!("DROP TABLE {db}.records_by_id"),
        ] {
            self.sql(&sql, None).await?;
        }
        Ok(())
    }

    /// The server's version string (`18.16.1`).
    pub fn server_version(&self) -> &str {
        &self.version
    }

    fn client(&self) -> Result<HttpClient, StoreError> {
        if let Some(c) = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        HttpClient::new(&self.cfg.url, self.tls.clone()).map_err(|e| self.err(e.to_string()))
    }

    fn err(&self, message: String) -> StoreError {
        StoreError::ClickHouse {
            url: self.cfg.url.clone(),
            message,
        }
    }

    fn path(&self, query_in_url: Option<&str>) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut p =
            String::from("/?output_format_json_quote_64bit_integers=0&max_query_size=16777216");
        if let Some(u) = &self.cfg.user {
            p.push_str(&format!("&user={}", enc(u)));
        }
        if let Some(pw) = &self.cfg.password {
            p.push_str(&format!("&password={}", enc(pw)));
        }
        if let Some(q) = query_in_url {
            p.push_str(&format!("&query={}", enc(q)));
        }
        p
    }

    async fn post(&self, path: &str, body: Bytes) -> Result<HttpResponse, StoreError> {
        // One retry on a fresh connection: ClickHouse closes idle keep-alive connections
        // after a few seconds, and a pooled connection may have been closed underneath us.
        for attempt in 0..2 {
            let mut c = self.client()?;
            match c.request(Method::POST, path, &[], body.clone()).await {
                Ok(r) => {
                    self.pool.lock().unwrap_or_else(|p| p.into_inner()).push(c);
                    return Ok(r);
                }
                Err(ClientError::Http { .. } | ClientError::Connect { .. }) if attempt == 0 => {
                    continue
                }
                Err(e) => return Err(self.err(e.to_string())),
            }
        }
        Err(self.err("no answer".into()))
    }

    /// Runs `sql` (with `data` after it, for inserts) and returns the answer text.
    async fn sql(&self, sql: &str, data: Option<Bytes>) -> Result<String, StoreError> {
        let resp = match data {
            None => {
                self.post(&self.path(None), Bytes::from(sql.to_string()))
                    .await?
            }
            Some(d) => self.post(&self.path(Some(sql)), d).await?,
        };
        if resp.status != 200 {
            let first_line = sql.lines().next().unwrap_or("").trim();
            return Err(self.err(format!(
                "{first_line}: HTTP {}: {}",
                resp.status,
                resp.body_text().trim()
            )));
        }
        String::from_utf8(resp.body.to_vec()).map_err(|e| self.err(e.to_string()))
    }

    fn where_clause(q: &Query) -> String {
        let mut c: Vec<String> = Vec::new();
        if let Some(k) = q.kind {
            c.push(format!("kind = {}", quote(k.as_str())));
        }
        if let Some(v) = &q.id {
            c.push(format!("id = {}", quote(v)));
        }
        if let Some(v) = &q.host {
            c.push(format!("host = {}", quote(v)));
        }
        if let Some(v) = &q.container {
            c.push(format!(
                "(substring(container_id, 1, {}) = {} OR container_name = {})",
                v.len(),
                quote(v),
                quote(v)
            ));
        }
        if let Some(v) = &q.rule {
            c.push(format!("rule = {}", quote(v)));
        }
        if let Some(v) = &q.event_type {
            c.push(format!("type = {}", quote(v)));
        }
        if let Some(v) = &q.region {
            c.push(format!("region = {}", quote(v)));
        }
        if let Some(v) = &q.agent_id {
            c.push(format!("agent_id = {}", quote(v)));
        }
        if let Some(v) = q.since_ns {
            c.push(format!("time_ns >= {v}"));
            c.push(format!(
                "day >= toDate({})",
                quote(&day_string(super::day_of(v)))
            ));
        }
        if let Some(v) = q.until_ns {
            c.push(format!("time_ns < {v}"));
            c.push(format!(
                "day <= toDate({})",
                quote(&day_string(super::day_of(v)))
            ));
        }
        if c.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", c.join(" AND "))
        }
    }

    /// Rows of a `FORMAT JSONEachRow` answer of `SELECT {SELECT_COLUMNS}`.
    fn rows(&self, text: &str) -> Result<Vec<StoredRecord>, StoreError> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let r: RowIn =
                serde_json::from_str(line).map_err(|e| self.err(format!("reading a row: {e}")))?;
            out.push(StoredRecord {
                id: r.id,
                kind: RecordKind::parse(&r.kind).unwrap_or(RecordKind::Event),
                event_type: r.event_type,
                time_ns: r.time_ns,
                day: parse_day(&r.day).unwrap_or(0),
                host: r.host,
                region: r.region,
                agent_id: r.agent_id,
                container_id: r.container_id,
                container_name: r.container_name,
                image: r.image,
                rule: r.rule,
                priority: r.priority,
                severity: r.severity,
                ingested_ns: r.ingested_ns,
                json: r.json,
            });
        }
        Ok(out)
    }

    /// Ids of `rows` already stored. Runs of one producer's ids (`<instance>-<hex seq>`) are
    /// looked up as key ranges, the rest by list: a range costs ClickHouse little, while
    /// parsing a literal list of thousands of ids and building its set was half of its work
    /// per ingested record.
    async fn known_ids(&self, rows: &[StoredRecord]) -> Result<Known, StoreError> {
        let db = &self.cfg.database;
        let mut known = Known::new();
        for chunk in rows.chunks(5000) {
            // Ids are unique per agent: one lookup per agent of the chunk (an ingest batch
            // has one).
            let mut agents: std::collections::BTreeMap<&str, Vec<&StoredRecord>> =
                std::collections::BTreeMap::new();
            for r in chunk {
                agents.entry(r.agent_id.as_str()).or_default().push(r);
            }
            for (agent, chunk) in agents {
                let regions: BTreeSet<&str> = chunk.iter().map(|r| r.region.as_str()).collect();
                let days: BTreeSet<u32> = chunk.iter().map(|r| r.day).collect();
                let ids: BTreeSet<&str> = chunk.iter().map(|r| r.id.as_str()).collect();
                let (ranges, rest) = id_ranges(&ids);
                let list = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>().join(",");
                let mut any: Vec<String> = ranges
                    .iter()
                    .map(|(lo, hi)| format!("(id >= {} AND id <= {})", quote(lo), quote(hi)))
                    .collect();
                if !rest.is_empty() {
                    any.push(format!(
                        "id IN ({})",
                        list(&mut rest.iter().map(|r| quote(r)))
                    ));
                }
                let sql = format!(
                    "SELECT id FROM {db}.records WHERE agent_id = {} AND region IN ({}) AND day IN ({}) AND ({}) FORMAT TabSeparated",
                    quote(agent),
                    list(&mut regions.iter().map(|r| quote(r))),
                    list(&mut days.iter().map(|d| format!("toDate({})", quote(&day_string(*d))))),
                    any.join(" OR "),
                );
                for line in self.sql(&sql, None).await?.lines() {
                    // TabSeparated escapes \ and control characters; ids are plain text, so a
                    // line is the id itself. An id that needs escaping is simply not matched
                    // and is inserted again, where FINAL removes the duplicate. A range may
                    // hold ids of other batches: only this batch's count.
                    if ids.contains(line) {
                        known
                            .entry(agent.to_string())
                            .or_default()
                            .insert(line.to_string());
                    }
                }
            }
        }
        Ok(known)
    }

    /// Inserts the rows whose id is not in `known` (one INSERT, RowBinary; none for none).
    async fn insert_rows(
        &self,
        rows: &[StoredRecord],
        known: &Known,
    ) -> Result<InsertOutcome, StoreError> {
        let mut body = Vec::with_capacity(rows.iter().map(|r| r.json.len() + 300).sum());
        let mut inserted = 0u64;
        for r in rows
            .iter()
            .filter(|r| !known.get(&r.agent_id).is_some_and(|k| k.contains(&r.id)))
        {
            row_binary(&mut body, r);
            inserted += 1;
        }
        if inserted > 0 {
            let db = &self.cfg.database;
            self.sql(
                &format!("INSERT INTO {db}.records ({INSERT_COLUMNS}) FORMAT RowBinary"),
                Some(Bytes::from(body)),
            )
            .await?;
        }
        Ok(InsertOutcome {
            inserted,
            duplicates: rows.len() as u64 - inserted,
        })
    }
}

/// Ids already stored, per agent.
type Known = std::collections::BTreeMap<String, BTreeSet<String>>;

/// Splits ids into key ranges and the rest. Ids `<prefix>-<hex>` of one prefix and one length
/// sort like their numbers, so such a group whose numbers are dense (the span at most twice
/// the group's size: one producer's consecutive events) becomes one range, which then holds
/// few ids beyond the group's own; everything else is looked up one by one.
fn id_ranges<'a>(ids: &BTreeSet<&'a str>) -> (Vec<(&'a str, &'a str)>, Vec<&'a str>) {
    let mut groups: std::collections::BTreeMap<(&str, usize), Vec<(u64, &'a str)>> =
        std::collections::BTreeMap::new();
    let mut rest = Vec::new();
    for id in ids {
        let seq = id.rsplit_once('-').and_then(|(prefix, hex)| {
            let ok = !hex.is_empty()
                && hex.len() <= 16
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            ok.then(|| u64::from_str_radix(hex, 16).ok().map(|n| (prefix, n)))
                .flatten()
        });
        match seq {
            Some((prefix, n)) => groups.entry((prefix, id.len())).or_default().push((n, id)),
            None => rest.push(*id),
        }
    }
    let mut ranges = Vec::new();
    for (_, mut g) in groups {
        g.sort_unstable();
        let (Some(&(lo, lo_id)), Some(&(hi, hi_id))) = (g.first(), g.last()) else {
            continue;
        };
        if g.len() >= 2 && hi - lo < 2 * g.len() as u64 {
            ranges.push((lo_id, hi_id));
        } else {
            rest.extend(g.iter().map(|(_, id)| *id));
        }
    }
    (ranges, rest)
}

fn partition_parts(p: &str) -> Option<(String, String)> {
    // `('eu-de','2024-01-31')`
    let inner = p.strip_prefix('(')?.strip_suffix(')')?;
    let (a, b) = inner.split_once(',')?;
    let unq = |s: &str| -> Option<String> {
        Some(s.trim().strip_prefix('\'')?.strip_suffix('\'')?.to_string())
    };
    Some((unq(a)?, unq(b)?))
}

impl Store for ClickHouseStore {
    fn engine(&self) -> &'static str {
        "clickhouse"
    }

    /// Unsent batches skip the lookup of known ids, which cost clickhouse-server about a fifth
    /// of its CPU per inserted record at 5000-record batches (docs/benchmarks.md); a record
    /// stored twice all the same is removed by `FINAL` in queries and by merges. `committed`
    /// is called once ClickHouse answered the INSERT.
    fn insert_with<'a>(
        &'a self,
        rows: &'a [StoredRecord],
        unsent: bool,
        committed: Committed<'a>,
    ) -> BoxFuture<'a, Result<InsertOutcome, StoreError>> {
        Box::pin(async move {
            let known = if unsent {
                Known::new()
            } else {
                self.known_ids(rows).await?
            };
            let outcome = self.insert_rows(rows, &known).await?;
            committed(&outcome);
            Ok(outcome)
        })
    }

    fn query<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            // The byte budget: the sizes of the page's records first (small), then only as many
            // records as fit, so that a page of very large records is never held whole.
            let sizes = self
                .sql(
                    &format!(
                        "SELECT length(json) FROM {db}.records FINAL{} ORDER BY time_ns DESC, id DESC LIMIT {} FORMAT TabSeparated",
                        Self::where_clause(q),
                        q.effective_limit()
                    ),
                    None,
                )
                .await?;
            let budget = q.effective_max_bytes();
            let (mut rows, mut bytes) = (0usize, 0usize);
            for line in sizes.lines() {
                bytes += line.trim().parse::<usize>().unwrap_or(0);
                rows += 1;
                if bytes >= budget {
                    break;
                }
            }
            if rows == 0 {
                return Ok(Vec::new());
            }
            let sql = format!(
                "SELECT {SELECT_COLUMNS} FROM {db}.records FINAL{} ORDER BY time_ns DESC, id DESC LIMIT {rows} FORMAT JSONEachRow",
                Self::where_clause(q),
            );
            let text = self.sql(&sql, None).await?;
            self.rows(&text)
        })
    }

    /// Without `FINAL`: a record is read as soon as its insert is visible, and the reader
    /// skips ids it has seen (a record stored twice comes twice).
    fn ingested_after<'a>(
        &'a self,
        after: &'a IngestCursor,
        until_ns: u64,
        kind: Option<RecordKind>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            let kind = match kind {
                Some(k) => format!(" AND kind = {}", quote(k.as_str())),
                None => String::new(),
            };
            let sql = format!(
                "SELECT {SELECT_COLUMNS} FROM {db}.records \
                 WHERE (ingested_ns, id) > ({}, {}) AND ingested_ns <= {until_ns}{kind} \
                 ORDER BY ingested_ns, id LIMIT {} FORMAT JSONEachRow",
                after.ingested_ns,
                quote(&after.id),
                limit.clamp(1, 100_000)
            );
            let text = self.sql(&sql, None).await?;
            self.rows(&text)
        })
    }

    /// Without `FINAL`, like [`ingested_after`](Self::ingested_after): every copy counts.
    fn ingest_counts(
        &self,
        from_ns: u64,
        until_ns: u64,
    ) -> BoxFuture<'_, Result<Vec<(u64, u64)>, StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            let sql = format!(
                "SELECT intDiv(ingested_ns, 1000000000) AS s, count() FROM {db}.records \
                 WHERE ingested_ns >= {from_ns} AND ingested_ns < {until_ns} \
                 GROUP BY s ORDER BY s FORMAT TabSeparated"
            );
            let text = self.sql(&sql, None).await?;
            let mut out = Vec::new();
            for line in text.lines().filter(|l| !l.is_empty()) {
                let parsed = line
                    .split_once('\t')
                    .and_then(|(s, n)| Some((s.parse().ok()?, n.parse().ok()?)));
                match parsed {
                    Some(p) => out.push(p),
                    None => return Err(self.err(format!("ingest counts answered {line:?}"))),
                }
            }
            Ok(out)
        })
    }

    fn count<'a>(&'a self, q: &'a Query) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            let text = self
                .sql(
                    &format!(
                        "SELECT count() FROM {db}.records FINAL{} FORMAT TabSeparated",
                        Self::where_clause(q)
                    ),
                    None,
                )
                .await?;
            text.trim()
                .parse()
                .map_err(|_| self.err(format!("count answered {text:?}")))
        })
    }

    fn regions(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            let text = self
                .sql(
                    &format!(
                        "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = 'records' AND active FORMAT TabSeparated",
                        quote(db)
                    ),
                    None,
                )
                .await?;
            let set: BTreeSet<String> = text
                .lines()
                .filter_map(|l| partition_parts(&l.replace("\\'", "'")))
                .map(|(r, _)| r)
                .collect();
            Ok(set.into_iter().collect())
        })
    }

    fn delete_before<'a>(
        &'a self,
        region: &'a str,
        cutoff_day: u32,
    ) -> BoxFuture<'a, Result<DeleteOutcome, StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            #[derive(Deserialize)]
            struct Part {
                partition: String,
                rows: u64,
            }
            let text = self
                .sql(
                    &format!(
                        "SELECT partition, sum(rows) AS rows FROM system.parts WHERE database = {} AND table = 'records' AND active GROUP BY partition FORMAT JSONEachRow",
                        quote(db)
                    ),
                    None,
                )
                .await?;
            let mut out = DeleteOutcome::default();
            for line in text.lines().filter(|l| !l.is_empty()) {
                let p: Part = serde_json::from_str(line)
                    .map_err(|e| self.err(format!("reading system.parts: {e}")))?;
                let Some((r, day)) = partition_parts(&p.partition) else {
                    continue;
                };
                let Some(d) = parse_day(&day) else { continue };
                if r != region || d >= cutoff_day {
                    continue;
                }
                self.sql(
                    &format!(
                        "ALTER TABLE {db}.records DROP PARTITION ({}, {})",
                        quote(&r),
                        quote(&day)
                    ),
                    None,
                )
                .await?;
                out.rows += p.rows;
                out.partitions.push(p.partition);
            }
            Ok(out)
        })
    }

    fn record_retention<'a>(
        &'a self,
        r: &'a RetentionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            let row = serde_json::json!({
                "run_ns": r.run_ns,
                "region": r.region,
                "cutoff_day": r.cutoff_day,
                "rows": r.rows,
                "partitions": r.partitions.join(" "),
            });
            self.sql(
                &format!("INSERT INTO {db}.retention_log FORMAT JSONEachRow"),
                Some(Bytes::from(row.to_string())),
            )
            .await
            .map(|_| ())
        })
    }

    fn retention_log(
        &self,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RetentionRecord>, StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            #[derive(Deserialize)]
            struct Row {
                run_ns: u64,
                region: String,
                cutoff_day: String,
                rows: u64,
                partitions: String,
            }
            let text = self
                .sql(
                    &format!(
                        "SELECT run_ns, region, cutoff_day, rows, partitions FROM {db}.retention_log ORDER BY run_ns DESC LIMIT {limit} FORMAT JSONEachRow"
                    ),
                    None,
                )
                .await?;
            let mut out = Vec::new();
            for line in text.lines().filter(|l| !l.is_empty()) {
                let r: Row = serde_json::from_str(line)
                    .map_err(|e| self.err(format!("reading retention_log: {e}")))?;
                out.push(RetentionRecord {
                    run_ns: r.run_ns,
                    region: r.region,
                    cutoff_day: r.cutoff_day,
                    rows: r.rows,
                    partitions: r
                        .partitions
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                });
            }
            Ok(out)
        })
    }

    fn hosts(&self) -> BoxFuture<'_, Result<Vec<HostSummary>, StoreError>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct Row {
                host: String,
                region: String,
                agent_id: String,
                last_event_ns: u64,
                last_ingested_ns: u64,
            }
            let db = &self.cfg.database;
            // A column store aggregates this without an index; there is no summary table.
            let text = self
                .sql(
                    &format!(
                        "SELECT host, argMax(region, time_ns) AS region, argMax(agent_id, time_ns) AS agent_id, \
                         max(time_ns) AS last_event_ns, max(ingested_ns) AS last_ingested_ns \
                         FROM {db}.records FINAL WHERE kind = 'event' GROUP BY host \
                         ORDER BY last_ingested_ns DESC, host FORMAT JSONEachRow"
                    ),
                    None,
                )
                .await?;
            let mut out = Vec::new();
            for line in text.lines().filter(|l| !l.is_empty()) {
                let r: Row = serde_json::from_str(line)
                    .map_err(|e| self.err(format!("reading hosts: {e}")))?;
                out.push(HostSummary {
                    host: r.host,
                    region: r.region,
                    agent_id: r.agent_id,
                    last_event_ns: r.last_event_ns,
                    last_ingested_ns: r.last_ingested_ns,
                });
            }
            Ok(out)
        })
    }

    fn latest_inventory<'a>(
        &'a self,
        event_type: &'a str,
        host: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<StoredRecord>, StoreError>> {
        Box::pin(async move {
            let db = &self.cfg.database;
            let mut cond = format!("type = {}", quote(event_type));
            if let Some(h) = host {
                cond.push_str(&format!(" AND host = {}", quote(h)));
            }
            let sql = format!(
                "SELECT {SELECT_COLUMNS} FROM {db}.records FINAL WHERE {cond} \
                 ORDER BY time_ns DESC, id DESC LIMIT 1 BY host, container_id FORMAT JSONEachRow"
            );
            let text = self.sql(&sql, None).await?;
            self.rows(&text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(
            partition_parts("('eu-de','2024-01-31')"),
            Some(("eu-de".into(), "2024-01-31".into()))
        );
        assert!(valid_ident("rampart_1"));
        assert!(!valid_ident("x; DROP"));
    }

    #[test]
    fn dense_runs_of_one_producer_become_ranges() {
        let mut owned: Vec<String> = (0xff0..0x1010u64)
            .filter(|n| n % 7 != 0)
            .map(|n| format!("00000000000000ab-{n:x}"))
            .collect();
        owned.extend([
            "00000000000000cd-5".to_string(),
            "00000000000000cd-50000".to_string(),
            "e1".to_string(),
            "00000000000000ab-loss-1".to_string(),
            "x-ABC".to_string(),
        ]);
        let ids: BTreeSet<&str> = owned.iter().map(String::as_str).collect();
        let (ranges, mut rest) = id_ranges(&ids);
        // Three-digit and four-digit numbers sort apart: one range each.
        assert_eq!(
            ranges,
            vec![
                ("00000000000000ab-ff0", "00000000000000ab-ffe"),
                ("00000000000000ab-1000", "00000000000000ab-100f"),
            ]
        );
        rest.sort_unstable();
        assert_eq!(
            rest,
            vec![
                "00000000000000ab-loss-1",
                "00000000000000cd-5",
                "00000000000000cd-50000",
                "e1",
                "x-ABC"
            ]
        );
        // Every id is in a range or in the rest.
        for id in &ids {
            let in_range = ranges.iter().any(|(lo, hi)| id >= lo && id <= hi);
            assert!(in_range || rest.contains(id), "{id}");
        }
    }

    #[test]
    fn row_binary_strings_carry_leb128_lengths() {
        let mut out = Vec::new();
        put_string(&mut out, "abc");
        assert_eq!(out, b"\x03abc");
        out.clear();
        let long = "x".repeat(300);
        put_string(&mut out, &long);
        assert_eq!(&out[..2], &[0xac, 0x02]);
        assert_eq!(out.len(), 302);
    }
}
