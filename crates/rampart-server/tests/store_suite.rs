//! One test suite, run against every store engine: SQLite and a real ClickHouse server
//! (Debian's 18.16, started by the test on loopback ports).
#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

mod support;

use std::collections::HashSet;

use rampart_server::store::{
    day_of, day_string, ClickHouseConfig, ClickHouseStore, Query, RecordKind, RetentionRecord,
    SqliteStore, Store,
};
use support::record;

const DAY: u64 = 86_400_000_000_000;
/// 2024-03-10T12:00:00Z
const T0: u64 = 1_710_072_000_000_000_000;

async fn suite(store: &dyn Store) {
    let e1 = record("e1", RecordKind::Event, T0, "web-1", "eu-de");
    let e2 = record("e2", RecordKind::Event, T0 + 1_000, "web-2", "eu-de");
    let a1 = record("a1", RecordKind::Alert, T0 + 2_000, "web-1", "eu-de");
    let old = record("old", RecordKind::Event, T0 - 100 * DAY, "db-1", "eu-de");
    let cn_old = record("cn-old", RecordKind::Event, T0 - 100 * DAY, "sh-1", "cn");
    let cn_new = record("cn-new", RecordKind::Event, T0, "sh-1", "cn");

    // Insert, then insert again with one new record: only the new one is stored.
    let out = store
        .insert(&[
            e1.clone(),
            e2.clone(),
            a1.clone(),
            old.clone(),
            cn_old.clone(),
        ])
        .await
        .unwrap();
    assert_eq!((out.inserted, out.duplicates), (5, 0));
    let out = store
        .insert(&[e1.clone(), e2.clone(), cn_new.clone()])
        .await
        .unwrap();
    assert_eq!((out.inserted, out.duplicates), (1, 2), "{}", store.engine());

    // The first stored version wins.
    let mut e1_changed = e1.clone();
    e1_changed.json = "{\"changed\":true}".into();
    e1_changed.ingested_ns += 10;
    store.insert(&[e1_changed]).await.unwrap();
    let got = store
        .query(&Query {
            id: Some("e1".into()),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![e1.clone()],
        "{}: stored row comes back unchanged",
        store.engine()
    );

    // Filters, order, limit, count.
    let all = store.query(&Query::default()).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["a1", "e2", "e1", "cn-new", "old", "cn-old"],
        "{}",
        store.engine()
    );
    // Newest first (ties by id descending).
    let times: Vec<(u64, &str)> = all.iter().map(|r| (r.time_ns, r.id.as_str())).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "{}", store.engine());
    assert_eq!(all.len(), 6);
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    let ids_of = |rows: Vec<rampart_server::StoredRecord>| -> Vec<String> {
        rows.into_iter().map(|r| r.id).collect()
    };
    assert_eq!(
        ids_of(
            store
                .query(&q(|q| q.kind = Some(RecordKind::Alert)))
                .await
                .unwrap()
        ),
        vec!["a1"]
    );
    assert_eq!(
        ids_of(
            store
                .query(&q(|q| q.host = Some("web-1".into())))
                .await
                .unwrap()
        ),
        vec!["a1", "e1"]
    );
    assert_eq!(
        ids_of(
            store
                .query(&q(|q| q.container = Some("web-2-web".into())))
                .await
                .unwrap()
        ),
        vec!["e2"],
        "container by name"
    );
    // Container ids are 64 digits ending in the host name's length: "...05" for web-1/web-2.
    assert_eq!(
        store
            .count(&q(|q| q.container = Some("0000000000".into())))
            .await
            .unwrap(),
        6,
        "container by id prefix"
    );
    assert_eq!(
        ids_of(
            store
                .query(&q(|q| q.rule = Some("Shell in container".into())))
                .await
                .unwrap()
        ),
        vec!["a1"]
    );
    assert_eq!(
        ids_of(
            store
                .query(&q(|q| q.event_type = Some("alert".into())))
                .await
                .unwrap()
        ),
        vec!["a1"]
    );
    assert_eq!(
        ids_of(
            store
                .query(&q(|q| q.region = Some("cn".into())))
                .await
                .unwrap()
        ),
        vec!["cn-new", "cn-old"]
    );
    assert_eq!(
        ids_of(
            store
                .query(&q(|q| q.agent_id = Some("agt-db-1".into())))
                .await
                .unwrap()
        ),
        vec!["old"]
    );
    let window = Query {
        since_ns: Some(T0 + 500),
        until_ns: Some(T0 + 2_000),
        ..Query::default()
    };
    assert_eq!(ids_of(store.query(&window).await.unwrap()), vec!["e2"]);
    assert_eq!(store.count(&window).await.unwrap(), 1);
    let limited = Query {
        limit: 2,
        ..Query::default()
    };
    assert_eq!(
        ids_of(store.query(&limited).await.unwrap()),
        vec!["a1", "e2"]
    );
    assert_eq!(store.count(&Query::default()).await.unwrap(), 6);
    // A filter value with quotes and backslashes is a value, not SQL.
    assert_eq!(
        store
            .count(&q(|q| q.host = Some("x' OR '1'='1\\".into())))
            .await
            .unwrap(),
        0
    );

    let mut regions = store.regions().await.unwrap();
    regions.sort();
    assert_eq!(regions, vec!["cn", "eu-de"]);

    // Retention: eu-de loses days before T0 - 50 days; cn is untouched.
    let cutoff = day_of(T0 - 50 * DAY);
    let out = store.delete_before("eu-de", cutoff).await.unwrap();
    assert_eq!(out.rows, 1, "{}: {out:?}", store.engine());
    let left: HashSet<String> = ids_of(store.query(&Query::default()).await.unwrap())
        .into_iter()
        .collect();
    assert_eq!(
        left,
        ["a1", "e2", "e1", "cn-new", "cn-old"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let run = RetentionRecord {
        run_ns: T0,
        region: "eu-de".into(),
        cutoff_day: day_string(cutoff),
        rows: out.rows,
        partitions: out.partitions.clone(),
    };
    store.record_retention(&run).await.unwrap();
    let later = RetentionRecord {
        run_ns: T0 + 1,
        region: "cn".into(),
        cutoff_day: day_string(cutoff),
        rows: 0,
        partitions: vec![],
    };
    store.record_retention(&later).await.unwrap();
    assert_eq!(store.retention_log(10).await.unwrap(), vec![later, run]);

    // Volume with retries and concurrent double delivery: every id exactly once.
    let batch: Vec<_> = (0..6000)
        .map(|i| {
            record(
                &format!("bulk-{i}"),
                RecordKind::Event,
                T0 + 10_000 + i,
                "bulk",
                "eu-de",
            )
        })
        .collect();
    let (a, b) = tokio::join!(store.insert(&batch[..4000]), store.insert(&batch[2000..]));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.inserted + b.inserted >= 6000, "{a:?} {b:?}");
    store.insert(&batch).await.unwrap();
    let bulk = Query {
        host: Some("bulk".into()),
        ..Query::default()
    };
    assert_eq!(
        store.count(&bulk).await.unwrap(),
        6000,
        "{}",
        store.engine()
    );
    let rows = store
        .query(&Query {
            limit: 10_000,
            ..bulk
        })
        .await
        .unwrap();
    let distinct: HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        (rows.len(), distinct.len()),
        (6000, 6000),
        "{}",
        store.engine()
    );

    // Agent-style ids (`<instance>-<hex seq>`, across a change of digit count, with gaps):
    // a replay that overlaps what is stored counts exactly the stored ones as duplicates.
    let agent = |n: u64| {
        record(
            &format!("00000000000000ab-{n:x}"),
            RecordKind::Event,
            T0 + 20_000 + n,
            "agent",
            "sg",
        )
    };
    let first: Vec<_> = (0xf00..0x1080u64)
        .filter(|n| n % 5 != 0)
        .map(agent)
        .collect();
    let out = store.insert(&first).await.unwrap();
    assert_eq!((out.inserted, out.duplicates), (first.len() as u64, 0));
    let replay: Vec<_> = (0xfc0..0x1100u64).map(agent).collect();
    let stored_before = replay.iter().filter(|r| first.contains(r)).count() as u64;
    let out = store.insert(&replay).await.unwrap();
    assert_eq!(
        (out.inserted, out.duplicates),
        (replay.len() as u64 - stored_before, stored_before),
        "{}",
        store.engine()
    );
    let sg = Query {
        region: Some("sg".into()),
        ..Query::default()
    };
    let expected = (0xf00..0x1100u64)
        .filter(|n| *n >= 0xfc0 || n % 5 != 0)
        .count() as u64;
    assert_eq!(
        store.count(&sg).await.unwrap(),
        expected,
        "{}",
        store.engine()
    );
    store.delete_before("sg", u32::MAX).await.unwrap();

    // Records the sender never sent before are stored all the same by `insert_with` with `unsent`; a
    // wrong claim (an id stored already, ingested again later) shows the id once in query
    // results, in its first stored version.
    let fresh = record("fresh-1", RecordKind::Event, T0 - 1, "web-1", "eu-de");
    let out = store
        .insert_with(std::slice::from_ref(&fresh), true, Box::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(out.inserted, 1, "{}", store.engine());
    let mut fresh_again = fresh.clone();
    fresh_again.json = "{\"changed\":true}".into();
    fresh_again.ingested_ns += 10;
    store
        .insert_with(&[fresh_again], true, Box::new(|_| {}))
        .await
        .unwrap();
    let by_id = Query {
        id: Some("fresh-1".into()),
        ..Query::default()
    };
    assert_eq!(
        store.query(&by_id).await.unwrap(),
        vec![fresh.clone()],
        "{}: a wrongly claimed unsent record is stored once, first version",
        store.engine()
    );
    assert_eq!(store.count(&by_id).await.unwrap(), 1, "{}", store.engine());

    // A page ends at its byte budget, after at least one record, newest first (issue 16: large
    // stored records cannot make one read hold gigabytes).
    let page = |max_bytes: usize| Query {
        limit: 5,
        max_bytes,
        ..Query::default()
    };
    let all = store.query(&page(0)).await.unwrap();
    assert_eq!(all.len(), 5, "{}", store.engine());
    let one = store.query(&page(1)).await.unwrap();
    assert_eq!(one, all[..1].to_vec(), "{}", store.engine());
    let three: usize = all[..3].iter().map(|r| r.json.len()).sum();
    let got = store.query(&page(three)).await.unwrap();
    assert_eq!(got, all[..3].to_vec(), "{}", store.engine());
}

/// The summaries (run after [`suite`]).
async fn summaries(store: &dyn Store) {
    // The summaries: hosts with events (region and agent of the newest), newest inventory
    // record per (type, host, container).
    let hosts = store.hosts().await.unwrap();
    let mut names: Vec<&str> = hosts.iter().map(|h| h.host.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["bulk", "sh-1", "web-1", "web-2"],
        "{}: db-1 lost its only event to retention",
        store.engine()
    );
    let sh = hosts.iter().find(|h| h.host == "sh-1").unwrap();
    assert_eq!((sh.last_event_ns, sh.region.as_str()), (T0, "cn"));
    let inv = |id: &str, t: u64, host: &str, container: &str| {
        let mut r = record(id, RecordKind::Event, t, host, "eu-de");
        r.event_type = "inventory.container".into();
        r.container_id = container.into();
        r
    };
    store
        .insert(&[
            inv("i1", T0, "web-1", "c1"),
            inv("i2", T0 + 5, "web-1", "c1"),
            inv("i3", T0 + 1, "web-1", "c2"),
            inv("i4", T0 + 2, "web-2", "c3"),
        ])
        .await
        .unwrap();
    // An older record arriving late does not replace the newest.
    store
        .insert(&[inv("i0", T0 - 5, "web-1", "c1")])
        .await
        .unwrap();
    let latest = store
        .latest_inventory("inventory.container", None)
        .await
        .unwrap();
    let ids: Vec<&str> = latest.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["i2", "i4", "i3"], "{}", store.engine());
    let one = store
        .latest_inventory("inventory.container", Some("web-2"))
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, "i4");
    assert!(store
        .latest_inventory("inventory.host", None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn sqlite_passes_the_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("events.db"), true).unwrap();
    suite(&store).await;
    summaries(&store).await;
    // Reopening finds everything.
    drop(store);
    let store = SqliteStore::open(&dir.path().join("events.db"), true).unwrap();
    assert_eq!(store.count(&Query::default()).await.unwrap(), 6011);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_passes_the_store_suite() {
    let Some(ch) = support::ClickHouse::start("clickhouse_passes_the_store_suite") else {
        return;
    };
    let store = ClickHouseStore::open(ClickHouseConfig {
        url: ch.url(),
        database: "rampart_test".into(),
        user: None,
        password: None,
    })
    .await
    .unwrap();
    assert!(store.server_version().starts_with(char::is_numeric));
    suite(&store).await;
    summaries(&store).await;
    // A second store on the same database (a second stateless server) sees the same data.
    let other = ClickHouseStore::open(ClickHouseConfig {
        url: ch.url(),
        database: "rampart_test".into(),
        user: None,
        password: None,
    })
    .await
    .unwrap();
    assert_eq!(other.count(&Query::default()).await.unwrap(), 6011);
}

/// Issue 16: ids are unique per agent. One agent's record cannot pre-claim another's id (the
/// other's record is stored beside it), while an agent's own retry is still a duplicate; the
/// newest-inventory summary points at the right agent's record.
async fn ids_are_unique_per_agent(store: &dyn Store) {
    let mut a = record("dup-1", RecordKind::Event, T0, "web-1", "eu-de");
    a.event_type = "inventory.host".into();
    let mut b = record("dup-1", RecordKind::Event, T0 + 1, "db-1", "eu-de");
    b.event_type = "inventory.host".into();
    assert_ne!(a.agent_id, b.agent_id);
    let out = store.insert(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!((out.inserted, out.duplicates), (1, 0));
    let out = store.insert(&[b.clone(), a.clone()]).await.unwrap();
    assert_eq!(
        (out.inserted, out.duplicates),
        (1, 1),
        "{}: the other agent's record is new, the agent's own retry is not",
        store.engine()
    );
    let got = store
        .query(&Query {
            id: Some("dup-1".into()),
            ..Query::default()
        })
        .await
        .unwrap();
    let mut agents: Vec<&str> = got.iter().map(|r| r.agent_id.as_str()).collect();
    agents.sort();
    assert_eq!(agents, ["agt-db-1", "agt-web-1"], "{}", store.engine());
    let inv = store
        .latest_inventory("inventory.host", Some("db-1"))
        .await
        .unwrap();
    assert_eq!(inv.len(), 1, "{}", store.engine());
    assert_eq!(inv[0].agent_id, "agt-db-1", "{}", store.engine());
    let inv = store
        .latest_inventory("inventory.host", Some("web-1"))
        .await
        .unwrap();
    assert_eq!(inv.len(), 1, "{}", store.engine());
    assert_eq!(inv[0].agent_id, "agt-web-1", "{}", store.engine());
}

#[tokio::test]
async fn sqlite_ids_are_unique_per_agent_also_in_a_database_of_the_old_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("new.db"), true).unwrap();
    ids_are_unique_per_agent(&store).await;
    // A database written when ids were unique across agents (user_version 1).
    let old = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&old).unwrap();
        c.execute_batch(
            "CREATE TABLE records (id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, type TEXT NOT NULL,
                time_ns INTEGER NOT NULL, day INTEGER NOT NULL, host TEXT NOT NULL,
                region TEXT NOT NULL, agent_id TEXT NOT NULL, container_id TEXT NOT NULL,
                container_name TEXT NOT NULL, image TEXT NOT NULL, rule TEXT NOT NULL,
                priority TEXT NOT NULL, severity INTEGER NOT NULL, ingested_ns INTEGER NOT NULL,
                json TEXT NOT NULL);
             CREATE INDEX records_time ON records (time_ns);
             CREATE TABLE host_summary (host TEXT PRIMARY KEY, region TEXT NOT NULL,
                agent_id TEXT NOT NULL, last_event_ns INTEGER NOT NULL,
                last_ingested_ns INTEGER NOT NULL);
             CREATE TABLE latest_inventory (type TEXT NOT NULL, host TEXT NOT NULL,
                container_id TEXT NOT NULL, region TEXT NOT NULL, time_ns INTEGER NOT NULL,
                id TEXT NOT NULL, PRIMARY KEY (type, host, container_id));
             CREATE TABLE retention_log (run_ns INTEGER NOT NULL, region TEXT NOT NULL,
                cutoff_day TEXT NOT NULL, rows INTEGER NOT NULL, partitions TEXT NOT NULL);
             INSERT INTO records VALUES ('kept', 'event', 'inventory.host', 5, 0, 'old-1', 'eu-de',
                'agt-old', '', '', '', '', '', 1, 6, '{}');
             INSERT INTO latest_inventory VALUES ('inventory.host', 'old-1', '', 'eu-de', 5, 'kept');
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&old, true).unwrap();
    let inv = store
        .latest_inventory("inventory.host", Some("old-1"))
        .await
        .unwrap();
    assert_eq!(inv.len(), 1, "the old records and summaries are kept");
    assert_eq!(inv[0].id, "kept");
    ids_are_unique_per_agent(&store).await;
    assert_eq!(store.count(&Query::default()).await.unwrap(), 3);
}

/// Runs one statement on a ClickHouse server over HTTP.
fn clickhouse_sql(url: &str, sql: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{sql}: {out}"
    );
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_ids_are_unique_per_agent_also_in_a_table_of_the_old_key() {
    let Some(ch) = support::ClickHouse::start(
        "clickhouse_ids_are_unique_per_agent_also_in_a_table_of_the_old_key",
    ) else {
        return;
    };
    let open = |db: &str| {
        ClickHouseStore::open(ClickHouseConfig {
            url: ch.url(),
            database: db.into(),
            user: None,
            password: None,
        })
    };
    let store = open("rampart_ids").await.unwrap();
    ids_are_unique_per_agent(&store).await;
    // A table of the old key (`ORDER BY id`), with a record in it.
    clickhouse_sql(&ch.url(), "CREATE DATABASE rampart_old");
    clickhouse_sql(
        &ch.url(),
        "CREATE TABLE rampart_old.records (
            day Date, region String, time_ns UInt64, id String, kind String,
            type String, host String, agent_id String, container_id String,
            container_name String, image String, rule String, priority String,
            severity UInt8, ingested_ns UInt64, keep UInt64, json String
        ) ENGINE = ReplacingMergeTree(keep) PARTITION BY (region, day) ORDER BY id",
    );
    clickhouse_sql(
        &ch.url(),
        "INSERT INTO rampart_old.records VALUES ('2024-03-10', 'eu-de', 5, 'kept', 'event',
            'process.exec', 'old-1', 'agt-old', '', '', '', '', '', 1, 6, 0, '{}')",
    );
    let store = open("rampart_old").await.unwrap();
    let key = clickhouse_sql(
        &ch.url(),
        "SELECT engine_full FROM system.tables WHERE database = 'rampart_old' AND name = 'records' FORMAT TabSeparated",
    );
    assert!(key.contains("ORDER BY (agent_id, id)"), "{key}");
    ids_are_unique_per_agent(&store).await;
    let kept = store
        .query(&Query {
            id: Some("kept".into()),
            ..Query::default()
        })
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "the old table's records are kept");
    // Opening again does not re-key twice.
    let again = open("rampart_old").await.unwrap();
    assert_eq!(again.count(&Query::default()).await.unwrap(), 3);
}

/// Issue 22: the fleet correlator reads every server's records in ingest order
/// ([`Store::ingested_after`]): paging by (ingested_ns, id) loses and repeats nothing even when
/// a whole batch shares one `ingested_ns` and a page ends inside it, ids with quotes and
/// backslashes are compared as values, and nothing ingested after `until_ns` is read yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_reads_every_servers_records_in_ingest_order() {
    use rampart_server::IngestCursor;
    let Some(ch) =
        support::ClickHouse::start("clickhouse_reads_every_servers_records_in_ingest_order")
    else {
        return;
    };
    let open = || async {
        ClickHouseStore::open(ClickHouseConfig {
            url: ch.url(),
            database: "rampart_ingest_order".into(),
            user: None,
            password: None,
        })
        .await
        .unwrap()
    };
    let (a, b) = (open().await, open().await);
    // Server A commits one batch stamped at one instant; server B two later batches.
    let batch_ns = T0 + 10;
    let mut on_a = Vec::new();
    for i in 0..23 {
        let id = match i {
            0 => "it's".to_string(),
            1 => "back\\slash".to_string(),
            2 => "'); DROP TABLE records; --".to_string(),
            i => format!("a-{i:02}"),
        };
        let mut r = record(&id, RecordKind::Event, T0, "web-1", "eu-de");
        r.ingested_ns = batch_ns;
        on_a.push(r);
    }
    a.insert(&on_a).await.unwrap();
    let mut on_b = Vec::new();
    for i in 0..5 {
        let mut r = record(&format!("b-{i}"), RecordKind::Alert, T0, "web-2", "eu-de");
        r.ingested_ns = batch_ns + 1 + i / 3;
        on_b.push(r);
    }
    b.insert(&on_b).await.unwrap();
    let mut late = record("late", RecordKind::Event, T0, "web-3", "eu-de");
    late.ingested_ns = batch_ns + 1_000;
    b.insert(&[late]).await.unwrap();

    // Read through either server, in pages of 4, up to before the late record.
    let until = batch_ns + 999;
    let mut cur = IngestCursor::default();
    let mut read = Vec::new();
    for page in 0.. {
        assert!(page < 20, "paging does not end: {cur:?}");
        let store = if page % 2 == 0 { &a } else { &b };
        let rows = store.ingested_after(&cur, until, None, 4).await.unwrap();
        assert!(rows.len() <= 4);
        let Some(last) = rows.last() else { break };
        cur = IngestCursor::after(last);
        read.extend(rows);
    }
    let mut want: Vec<_> = on_a.iter().chain(&on_b).cloned().collect();
    want.sort_by(|x, y| (x.ingested_ns, &x.id).cmp(&(y.ingested_ns, &y.id)));
    assert_eq!(
        read.iter().map(|r| &r.id).collect::<Vec<_>>(),
        want.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
    assert_eq!(read, want, "rows come back as stored");
    // Later, the late record, and nothing else.
    let rows = a.ingested_after(&cur, u64::MAX, None, 4).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["late"]
    );
    // Alerts only (the dashboards' live streams): B's five.
    let rows = b
        .ingested_after(
            &IngestCursor::default(),
            u64::MAX,
            Some(RecordKind::Alert),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["b-0", "b-1", "b-2", "b-3", "b-4"]
    );
    // The stored form of a cursor round-trips, also with a space in the id.
    let c = IngestCursor {
        ingested_ns: 7,
        id: "a b".into(),
    };
    assert_eq!(IngestCursor::parse(&c.to_text()), Some(c));
    assert_eq!(IngestCursor::parse("x y"), None);
}

/// SQLite holds one server's records: reading in ingest order is refused with the reason.
#[tokio::test]
async fn sqlite_refuses_reading_in_ingest_order_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("events.db"), true).unwrap();
    let e = store
        .ingested_after(&rampart_server::IngestCursor::default(), u64::MAX, None, 10)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("sqlite") && e.to_string().contains("ingest order"),
        "{e}"
    );
}
