//! Issue 22, late records: the store-fed fleet correlator (one `rampart server` with a shared
//! PostgreSQL control store and ClickHouse, both started by the test) correlates records that
//! became visible in ClickHouse after it had read past their ingest time (a slow server's
//! insert), with event times skewed into the past and the future; replayed records (same agent
//! and id, fresh and old ingest times) raise nothing twice and are not counted twice; another
//! agent reusing an agent's ids does not hide that agent's records; and records committed past
//! the correlator's look-back are counted and reported with an alert naming their host.
#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

mod support;

use std::time::{Duration, Instant};

use rampart_event::Event;
use rampart_fleet::RunningServer;
use rampart_server::{Query, RecordKind, StoredRecord};
use support::*;

const SPRAYING: &str = "Fleet password guessing across hosts";
const S: u64 = 1_000_000_000;

fn now_ns() -> u64 {
    rampart_event::now_ns()
}

fn failed(host: &str, seq: u64, t: u64, src: &str) -> Event {
    login(&device(host, "eu-de"), seq, t, false, src)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

async fn alerts(server: &RunningServer, rule: &str, needle: &str) -> Vec<StoredRecord> {
    let rows = server
        .server
        .store()
        .query(&Query {
            kind: Some(RecordKind::Alert),
            rule: Some(rule.into()),
            limit: 1000,
            ..Query::default()
        })
        .await
        .unwrap();
    rows.into_iter()
        .filter(|r| r.json.contains(needle))
        .collect()
}

/// Waits up to `secs` for at least one alert of `rule` containing `needle`.
async fn wait_alert(server: &RunningServer, rule: &str, needle: &str, secs: u64) -> Duration {
    let t0 = Instant::now();
    while alerts(server, rule, needle).await.is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "no {rule:?} alert naming {needle} after {secs} s; metrics:\n{}",
            server.server.metrics_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_skewed_and_replayed_records_are_correlated_once_and_too_late_ones_reported() {
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let Some(ch) = testkit::ClickHouse::start(module_path!()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (server, slot) = start(&pg, &ch, dir.path()).await;
    let store = server.server.store();

    // The correlator runs once this server holds the lease; wait until its look-back reaches
    // 15 s behind its position (it starts at the position it took over).
    let t0 = Instant::now();
    loop {
        let m = server.server.metrics_text();
        if server.server.leads_fleet()
            && metric(&m, "rampart_fleet_correlator_lookback_seconds") >= 15.0
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the correlator did not start:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 1. A campaign over three hosts. web-1 ships at once; web-2's clock is 4 minutes ahead
    // (inside the server's 5-minute clamp); web-3's agent was offline: its event is 3 minutes
    // old, and the server that received it stalled, so its insert became visible 8 s after it
    // was stamped, long after the correlator had read past that time.
    let src = "198.51.100.7";
    let now = now_ns();
    let e1 = failed("web-1", 1, now, src);
    let e2 = failed("web-2", 2, now + 240 * S, src);
    let e3 = failed("web-3", 3, now - 180 * S, src);
    let rows12 = vec![row(&e1, "agt-1", now_ns()), row(&e2, "agt-2", now_ns())];
    store.insert(&rows12).await.unwrap();
    // Other servers' records stamped after web-3's are read first: past the feed lag and a
    // few polls, the correlator's position is past web-3's stamp.
    let stamp3 = now_ns();
    let other = row(&failed("web-0", 9, now, "192.0.2.9"), "agt-0", now_ns());
    store.insert(std::slice::from_ref(&other)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(alerts(&server, SPRAYING, src).await.is_empty());
    let m = server.server.metrics_text();
    let late_before = metric(&m, "rampart_fleet_correlator_late_records_total");
    assert_eq!(late_before, 0.0);
    let row3 = row(&e3, "agt-3", stamp3);
    store.insert(std::slice::from_ref(&row3)).await.unwrap();
    let took = wait_alert(&server, SPRAYING, src, 15).await;
    eprintln!("fleet alert on the late record after {took:?}");
    // Until the correlator has read back the alert it stored.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m = server.server.metrics_text();
    assert_eq!(
        metric(&m, "rampart_fleet_correlator_late_records_total"),
        1.0,
        "{m}"
    );
    let read_before = metric(&m, "rampart_fleet_correlator_read_records_total");

    // 2. Replays: the same three records again (same agents and ids), stamped now and stamped
    // in the look-back, through the store as another server would store a retry.
    let mut replay: Vec<StoredRecord> = rows12.clone();
    replay.push(row3.clone());
    for r in &mut replay {
        r.ingested_ns = now_ns();
    }
    store.insert(&replay).await.unwrap();
    let mut old = replay.clone();
    for r in &mut old {
        r.ingested_ns = now_ns() - 6 * S;
    }
    store.insert(&old).await.unwrap();
    // Past the feed lag and two look-back rechecks.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(alerts(&server, SPRAYING, src).await.len(), 1);
    let m = server.server.metrics_text();
    assert_eq!(
        metric(&m, "rampart_fleet_correlator_late_records_total"),
        1.0,
        "replays are not late records: {m}"
    );
    assert_eq!(
        metric(&m, "rampart_fleet_correlator_read_records_total"),
        read_before,
        "replays are not read as new records: {m}"
    );
    {
        let fleet = slot.get().unwrap();
        let c = fleet.correlator();
        let c = c.lock().unwrap();
        let incidents: Vec<_> = c
            .incidents()
            .iter()
            .filter(|i| i.regions.contains_key("web-3"))
            .collect();
        assert_eq!(incidents.len(), 1, "{:?}", c.incidents());
        assert_eq!(incidents[0].alert_ids.len(), 1, "{:?}", incidents[0]);
        assert_eq!(c.stats().fleet_alerts, 1, "{:?}", c.stats());
    }

    // 3. An agent that sends another agent's future ids first (a compromised host trying to
    // hide a campaign: ids are unique per agent only) hides nothing.
    let src2 = "198.51.100.8";
    let t = now_ns();
    let hosts = ["db-1", "db-2", "db-3"];
    let decoys: Vec<StoredRecord> = (0..3)
        .map(|i| {
            let mut ev = failed("evil-1", 100 + i, t, "192.0.2.1");
            ev.auth.as_mut().unwrap().outcome = rampart_event::AuthOutcome::Success;
            row(&ev, "agt-evil", now_ns())
        })
        .collect();
    store.insert(&decoys).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let campaign: Vec<StoredRecord> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            row(
                &failed(h, 100 + i as u64, t + i as u64 * S, src2),
                &format!("agt-{h}"),
                now_ns(),
            )
        })
        .collect();
    assert_eq!(campaign[0].id, decoys[0].id, "the decoys pre-claim the ids");
    store.insert(&campaign).await.unwrap();
    wait_alert(&server, SPRAYING, src2, 15).await;

    // 4. A record committed 200 s after its server stamped it is past the look-back: the
    // server that committed it counts it and stores an alert naming its host.
    let e7 = failed("web-7", 7, now_ns(), "198.51.100.9");
    let r7 = row(&e7, "agt-7", now_ns() - 200 * S);
    store.insert(std::slice::from_ref(&r7)).await.unwrap();
    let m = server.server.metrics_text();
    assert_eq!(metric(&m, "rampart_fleet_records_too_late_total"), 1.0);
    let late = alerts(&server, rampart_fleet::TOO_LATE_RULE, "web-7").await;
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0].host, "web-7");
    assert!(
        late[0].json.contains("1 records of host web-7"),
        "{}",
        late[0].json
    );

    server.stop().await;
}
