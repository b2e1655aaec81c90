//! Issue 22, the vulnerability tracker shared by a fleet of servers: SBOMs and running
//! containers received through server A are in the shared control store, so after A's fleet
//! job lease is lost, server B (which took it over) re-matches them against a new
//! vulnerability database and raises the "now vulnerable" alert for A's image, once. Two
//! servers, one PostgreSQL and one ClickHouse, all started by the test.
#![allow(clippy::unwrap_used, reason = "tests: a failure is a test failure")]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{
    Container, ContainerInventory, ContainerRuntime, Event, EventId, EventKind, ImageInventory,
    Package, PackageKind,
};
use rampart_fleet::vulns::FINDINGS_DOCS;
use rampart_fleet::{RunningServer, VulnTracker, VulnsConfig, NEWLY_VULNERABLE_RULE};
use rampart_server::control::Control;
use rampart_server::{Query, RecordKind, StoredRecord};
use support::*;

fn bash() -> Package {
    Package {
        kind: PackageKind::Deb,
        name: "bash".into(),
        version: "5.2.15-2+b13".into(),
        ecosystem: "Debian:12".into(),
        source_name: Some("bash".into()),
        source_version: Some("5.2.15-2".into()),
        arch: Some("amd64".into()),
        licenses: vec![],
        purl: "pkg:deb/debian/bash@5.2.15-2+b13".into(),
        path: "var/lib/dpkg/status".into(),
        layer: None,
        locations: Vec::new(),
    }
}

fn advisory(id: &str, fixed: &str) -> String {
    serde_json::json!({
        "id": id, "modified": "2026-11-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "bash"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
        "database_specific": {"severity": "CRITICAL"}
    })
    .to_string()
}

/// Imports the advisories into `data`'s database and publishes it (what `rampart server db
/// import` does); returns the published version.
fn publish(data: &Path, advisories: &[(&str, &str)]) -> String {
    let osv = data.join("osv-import");
    let _ = std::fs::remove_dir_all(&osv);
    std::fs::create_dir_all(&osv).unwrap();
    for (id, fixed) in advisories {
        std::fs::write(osv.join(format!("{id}.json")), advisory(id, fixed)).unwrap();
    }
    let ca = rampart_server::ca::Ca::load_or_create(&data.join("publisher-ca")).unwrap();
    let mut db =
        rampart_scan::VulnDb::open_or_create(&rampart_server::vulndb::db_path(data)).unwrap();
    db.import(&osv).unwrap();
    drop(db);
    rampart_server::vulndb::publish(data, &ca).unwrap().version
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what} after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn newly_vulnerable(server: &RunningServer) -> Vec<StoredRecord> {
    server
        .server
        .store()
        .query(&Query {
            kind: Some(RecordKind::Alert),
            rule: Some(NEWLY_VULNERABLE_RULE.into()),
            limit: 100,
            ..Query::default()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sboms_received_by_one_server_are_rematched_by_the_next_lease_holder_alerting_once() {
    testkit::require!(Root);
    let Some(pg) = testkit::Postgres::start(module_path!()) else {
        return;
    };
    let Some(ch) = testkit::ClickHouse::start(module_path!()) else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, slot_a) = start(&pg, &ch, dir_a.path()).await;
    wait_for("server A holds the fleet job lease", 30, async || {
        a.server.leads_fleet().then_some(())
    })
    .await;
    let (b, slot_b) = start(&pg, &ch, dir_b.path()).await;
    assert!(!b.server.leads_fleet());
    let tracker_a = slot_a.get().unwrap().vulns().unwrap();

    // A's first database: an advisory fixed long before the image's bash (no finding).
    let v1 = publish(dir_a.path(), &[("CVE-2099-0001", "4.0-1")]);
    wait_for("A re-matched with the first database", 20, async || {
        let t = tracker_a.lock().unwrap();
        (t.db_version().unwrap().as_deref() == Some(v1.as_str())).then_some(())
    })
    .await;

    // Host h-a's agent ships to A: its image's SBOM and a container running it.
    let dev = device("h-a", "eu-de");
    let image_id = "sha256:a11ce";
    let mut img = Event::new(
        EventId::new(7, 1),
        rampart_event::now_ns(),
        EventKind::InventoryImage,
        dev.clone(),
    );
    img.image_inventory = Some(Box::new(ImageInventory {
        image: "registry.example/shop:1.4".into(),
        image_id: image_id.into(),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        packages: vec![bash()],
    }));
    let mut ctr = Event::new(
        EventId::new(7, 2),
        rampart_event::now_ns(),
        EventKind::InventoryContainer,
        dev.clone(),
    );
    let mut c = Container::unnamed("c0ffee000001", ContainerRuntime::Docker);
    c.name = "shop".into();
    c.image = "registry.example/shop:1.4".into();
    c.image_id = image_id.into();
    ctr.container = Some(Arc::new(c));
    ctr.container_inventory = Some(Box::new(ContainerInventory {
        image: "registry.example/shop:1.4".into(),
        image_id: image_id.into(),
        ..ContainerInventory::default()
    }));
    a.server
        .store()
        .insert(&[
            row(&img, "agt-h-a", rampart_event::now_ns()),
            row(&ctr, "agt-h-a", rampart_event::now_ns()),
        ])
        .await
        .unwrap();
    wait_for(
        "A's tracker has the SBOM and the container",
        20,
        async || {
            let t = tracker_a.lock().unwrap();
            (t.images().unwrap() == 1 && t.running().unwrap().len() == 1).then_some(())
        },
    )
    .await;
    assert!(newly_vulnerable(&a).await.is_empty());

    // A goes away; B takes the fleet jobs over. B never received the SBOM itself.
    a.stop().await;
    wait_for("server B holds the fleet job lease", 30, async || {
        b.server.leads_fleet().then_some(())
    })
    .await;
    // A new database on B: bash 5.2.15-2+b13 is now vulnerable.
    let v2 = publish(
        dir_b.path(),
        &[("CVE-2099-0001", "4.0-1"), ("CVE-2099-1234", "5.2.15-3")],
    );
    assert_ne!(v1, v2);
    let alerts = wait_for("B's now-vulnerable alert", 30, async || {
        let got = newly_vulnerable(&b).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    // Further polls of B's loop raise nothing more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fleet_b = slot_b.get().unwrap().clone();
    assert_eq!(
        fleet_b.check_vulndb(rampart_event::now_ns()).await.unwrap(),
        0
    );
    let again = newly_vulnerable(&b).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(alerts[0].id, again[0].id);
    let json = &again[0].json;
    for want in [
        "registry.example/shop:1.4",
        image_id,
        "host=h-a",
        "CVE-2099-1234",
        v2.as_str(),
    ] {
        assert!(json.contains(want), "{want} not in {json}");
    }
    assert!(!json.contains("CVE-2099-0001"), "{json}");
    {
        let t = fleet_b.vulns().unwrap();
        let t = t.lock().unwrap();
        assert_eq!(t.db_version().unwrap().as_deref(), Some(v2.as_str()));
        assert_eq!(t.image_findings(image_id).unwrap().len(), 1);
    }

    // A server racing B's re-match (it read the fleet's state before B committed, e.g. a
    // holder that lost the lease mid-check) re-matches the same version: it stores the same
    // findings but raises nothing, B claimed the version's alerts.
    let dir_c = tempfile::tempdir().unwrap();
    let vulndb_c = rampart_server::vulndb::dir(dir_c.path());
    std::fs::create_dir_all(&vulndb_c).unwrap();
    for f in std::fs::read_dir(rampart_server::vulndb::dir(dir_b.path())).unwrap() {
        let f = f.unwrap();
        if f.file_type().unwrap().is_file() {
            std::fs::copy(f.path(), vulndb_c.join(f.file_name())).unwrap();
        }
    }
    let control = Control::open_postgres(&pg.url(), None).unwrap();
    control
        .put_docs(
            FINDINGS_DOCS,
            vec![
                (image_id.to_string(), "[]".to_string()),
                (String::new(), serde_json::to_string(&v1).unwrap()),
            ],
        )
        .unwrap();
    let mut racer = VulnTracker::open(&VulnsConfig {
        db_path: dir_c.path().join("vulns.db"),
        data_dir: dir_c.path().to_path_buf(),
        shared: Some(Arc::new(control)),
    })
    .unwrap();
    assert!(racer.check_db(rampart_event::now_ns()).unwrap().is_empty());
    assert_eq!(racer.image_findings(image_id).unwrap().len(), 1);
    assert_eq!(racer.db_version().unwrap().as_deref(), Some(v2.as_str()));
    assert!(
        !dir_c.path().join("vulns.db").exists(),
        "shared: no vulns.db"
    );
    b.stop().await;
}
