//! The fleet correlator hooked into the real server (SQLite store, loopback listener): events
//! of three agents in three regions go through the server's ingest path, the fleet alert is
//! stored beside the agents' records, and the incident lands in incidents.db.

mod support;

use rampart_fleet::{FleetConfig, IncidentDb};
use rampart_server::{Query, RecordKind, ServerConfig};
use rampart_ship::output::Output;
use rampart_ship::queue::Entry;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rules_run_on_records_the_server_ingests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServerConfig::with_data_dir(dir.path());
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let db = rampart_fleet::db_path(dir.path());
    let (layer, slot) = rampart_fleet::server_layer(FleetConfig::new(Some(db.clone())))
        .unwrap_or_else(|e| panic!("{e}"));
    let server = rampart_server::start_with(cfg, layer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fleet = slot
        .get()
        .expect("the server opened its store through the layer")
        .clone();
    let t0 = at("2026-03-06T10:00:00Z");
    // Each agent claims a region in its events; the server stamps the region it enrolled with.
    for (n, (host, region)) in [("web-1", "eu-de"), ("web-2", "in"), ("web-3", "us-ca")]
        .into_iter()
        .enumerate()
    {
        let mut out = server.local_output("fleet-test", &format!("agt-{n}"), region);
        let ev = login(
            &device(host, "xx"),
            n as u64,
            t0 + n as u64 * 1_000_000_000,
            false,
            "203.0.113.9",
        );
        let batch = vec![Entry {
            seq: 1,
            written_ms: 0,
            payload: serde_json::to_vec(&ev).expect("json"),
        }];
        out.send(&batch).await.unwrap_or_else(|e| panic!("{e}"));
    }
    let alerts = server
        .store()
        .query(&Query {
            kind: Some(RecordKind::Alert),
            ..Query::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].rule, "Fleet password guessing across hosts");
    assert_eq!(alerts[0].agent_id, "fleet");
    let db_reader = IncidentDb::open(&db).unwrap_or_else(|e| panic!("{e}"));
    let incidents = db_reader.all().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        incidents[0].jurisdictions().into_iter().collect::<Vec<_>>(),
        vec!["eu-de", "in", "us-ca"],
        "regions from the server's enrollment, not the events' claims"
    );
    // Seven hours after the first alert, CERT-In's 6 hours for the host in India are over:
    // the deadline check stores an overdue alert.
    let now = t0 + 7 * 3_600_000_000_000;
    assert_eq!(
        fleet
            .check_deadlines(now)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        1
    );
    let overdue = server
        .store()
        .query(&Query {
            rule: Some("Notification deadline overdue".into()),
            ..Query::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].region, "in");
    server.shutdown().await;
}
