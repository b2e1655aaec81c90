//! Issue 22, shared incident state: a mark recorded through one server (`rampart incident
//! mark` writes it to the shared control store) is applied by the server that holds the fleet
//! job lease after a takeover, and the deadline alerts the first holder raised are not raised
//! (nor written into the incident's timeline) again by the next, and the new-country
//! detector continues the first holder's baseline. Two servers, one PostgreSQL
//! and one ClickHouse, all started by the test.
#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

mod support;

use std::time::{Duration, Instant};

use rampart_fleet::incident::EntryKind;
use rampart_fleet::{FleetSlot, IncidentSource, Mark};
use rampart_server::{Query, RecordKind, StoredRecord};
use support::*;

const S: u64 = 1_000_000_000;

fn now_ns() -> u64 {
    rampart_event::now_ns()
}

fn incident_of(slot: &FleetSlot, host: &str) -> Option<rampart_fleet::Incident> {
    let fleet = slot.get().unwrap();
    let c = fleet.correlator();
    let c = c.lock().unwrap();
    c.incidents()
        .iter()
        .find(|i| i.regions.contains_key(host))
        .cloned()
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what} after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn deadline_entries(inc: &rampart_fleet::Incident) -> Vec<String> {
    inc.timeline
        .iter()
        .filter(|e| e.kind == EntryKind::Deadline)
        .map(|e| e.id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mark_made_through_one_server_holds_after_a_takeover_and_no_deadline_alert_repeats() {
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let Some(ch) = testkit::ClickHouse::start(module_path!()) else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, slot_a) = start(&pg, &ch, dir_a.path()).await;
    wait_for("server A holds the fleet job lease", 30, || {
        a.server.leads_fleet().then_some(())
    })
    .await;
    let (b, slot_b) = start(&pg, &ch, dir_b.path()).await;
    assert!(!b.server.leads_fleet());

    // Password guessing on a host in Germany and two in India: one incident, CERT-In's
    // 6-hour report applies (India), GDPR's 72 hours only once a person says personal data
    // was breached.
    let src = "198.51.100.20";
    let t0 = now_ns();
    let rows: Vec<StoredRecord> = [("de-1", "de"), ("in-1", "in"), ("in-2", "in")]
        .iter()
        .enumerate()
        .map(|(i, (h, region))| {
            let ev = login(
                &device(h, region),
                10 + i as u64,
                t0 + i as u64 * S,
                false,
                src,
            );
            let mut r = row(&ev, &format!("agt-{h}"), now_ns());
            r.region = region.to_string();
            r
        })
        .collect();
    b.server.store().insert(&rows).await.unwrap();
    let inc = wait_for("an incident on A", 20, || incident_of(&slot_a, "de-1")).await;
    // The holder shares it; B shows it.
    wait_for("the incident on B", 20, || incident_of(&slot_b, "de-1")).await;

    // Seven hours later (checked now with that clock): CERT-In's report is overdue.
    let lease_a = a.server.fleet_lease();
    let fleet_a = slot_a.get().unwrap().clone();
    let at7h = t0 + 7 * 3600 * S;
    let raised_a = fleet_a
        .check_deadlines_shared(&lease_a, at7h)
        .await
        .unwrap();
    assert!(raised_a >= 1, "no deadline alert on A");
    let entries_a = deadline_entries(&incident_of(&slot_a, "de-1").unwrap());
    assert_eq!(entries_a.len(), raised_a, "{entries_a:?}");
    assert!(
        entries_a.iter().any(|e| e.contains("cert-in")),
        "{entries_a:?}"
    );

    // A person marks the incident a personal-data breach through A (what `rampart incident
    // mark` does with control_store:).
    let control = rampart_server::control::Control::open_postgres(&pg.url(), None).unwrap();
    let mut shared = IncidentSource::Shared(control);
    shared
        .set_marks(&inc.id, &[Mark::PersonalDataBreach(true)], now_ns())
        .unwrap();
    assert!(shared.get(&inc.id).unwrap().unwrap().personal_data_breach);
    // A's new-country detector starts learning the fleet's countries: France.
    let fr = connect(&device("de-1", "de"), 50, t0, "192.0.2.50", 443, Some("FR"));
    b.server
        .store()
        .insert(&[row(&fr, "agt-de-1", now_ns())])
        .await
        .unwrap();
    // A's correlator reads it, and shares it and the timeline entries at its read round.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // A goes away; B takes the fleet jobs over.
    a.stop().await;
    wait_for("server B holds the fleet job lease", 30, || {
        b.server.leads_fleet().then_some(())
    })
    .await;
    let on_b = wait_for("B continues the incident with the mark", 20, || {
        incident_of(&slot_b, "de-1").filter(|i| i.personal_data_breach)
    })
    .await;
    assert_eq!(deadline_entries(&on_b), entries_a, "A's timeline, once");

    // B checks the same moment: nothing is raised again, nothing added to the timeline.
    let lease_b = b.server.fleet_lease();
    let fleet_b = slot_b.get().unwrap().clone();
    assert_eq!(
        fleet_b
            .check_deadlines_shared(&lease_b, at7h)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        deadline_entries(&incident_of(&slot_b, "de-1").unwrap()),
        entries_a
    );
    // Eighty hours on, GDPR's 72 hours (which apply only through the mark) are over: B
    // raises that, and still not CERT-In's again.
    let at80h = t0 + 80 * 3600 * S;
    fleet_b
        .check_deadlines_shared(&lease_b, at80h)
        .await
        .unwrap();
    let entries_b = deadline_entries(&incident_of(&slot_b, "de-1").unwrap());
    assert!(
        entries_b
            .iter()
            .any(|e| e.contains("gdpr") && e.contains("overdue")),
        "{entries_b:?}"
    );
    let mut unique = entries_b.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), entries_b.len(), "{entries_b:?}");
    for e in &entries_a {
        assert_eq!(entries_b.iter().filter(|x| *x == e).count(), 1, "{e}");
    }
    // A day and an hour after France was first seen (past the 24-hour learning period that
    // started on A): France is known to B, Brazil is new for the fleet.
    let later = t0 + 25 * 3600 * S;
    let rows: Vec<StoredRecord> = [("FR", 51), ("BR", 52)]
        .iter()
        .map(|(c, seq)| {
            let ev = connect(
                &device("in-1", "in"),
                *seq,
                later,
                "192.0.2.51",
                443,
                Some(c),
            );
            row(&ev, "agt-in-1", now_ns())
        })
        .collect();
    b.server.store().insert(&rows).await.unwrap();
    let t = Instant::now();
    let country_alerts = loop {
        let got: Vec<StoredRecord> = b
            .server
            .store()
            .query(&Query {
                kind: Some(RecordKind::Alert),
                rule: Some("Fleet new outbound country".into()),
                limit: 100,
                ..Query::default()
            })
            .await
            .unwrap();
        if !got.is_empty() || t.elapsed() > Duration::from_secs(10) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(country_alerts.len(), 1, "{country_alerts:?}");
    assert!(
        country_alerts[0].json.contains("BR"),
        "{}",
        country_alerts[0].json
    );
    // The stored alerts: each deadline alert once.
    let stored = b
        .server
        .store()
        .query(&Query {
            kind: Some(RecordKind::Alert),
            limit: 1000,
            ..Query::default()
        })
        .await
        .unwrap();
    let deadline_ids: Vec<&str> = stored
        .iter()
        .filter(|r| r.id.starts_with("deadline-"))
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(deadline_ids.len(), entries_b.len(), "{deadline_ids:?}");
    b.stop().await;
}
