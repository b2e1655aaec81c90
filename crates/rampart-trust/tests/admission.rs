//! The admission engine's `scanned` rule against the main dockerd: the Debian test image, a
//! vulnerability database holding one OSV record for its `bash`, scans on demand within a time
//! bound and from the cache.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use rampart_trust::authz::{AdmissionPolicy, AuthzRequest, Engine, EngineConfig, Rule};

fn engine(d: &Path, policy: &str) -> Engine {
    std::fs::write(d.join("admission.yaml"), policy).expect("policy");
    Engine::new(
        EngineConfig {
            policy: AdmissionPolicy::load(&d.join("admission.yaml")).expect("policy"),
            docker_socket: "/var/run/docker.sock".into(),
            db_path: d.join("vulns.db"),
            cache_dir: d.join("cache"),
            verdict_ttl: Duration::from_secs(60),
        },
        Box::new(std::io::sink()),
    )
    .expect("engine")
}

fn create(image: &str) -> AuthzRequest {
    let body = serde_json::json!({"Image": image, "User": "1000",
        "HostConfig": {"Memory": 1 << 26, "NanoCpus": 500_000_000, "PidsLimit": 64}});
    AuthzRequest {
        request_method: "POST".into(),
        request_uri: "/v1.47/containers/create?name=x".into(),
        request_body: Some(base64::engine::general_purpose::STANDARD.encode(body.to_string())),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanned_rule_denies_a_vulnerable_image_on_demand_and_from_the_cache() {
    testkit::require!(Root, Docker);
    let image = testkit::debian_image();
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let osv = d.join("osv");
    std::fs::create_dir(&osv).expect("dir");
    let record = serde_json::json!({"id": "DSA-0000-1", "modified": "2024-01-01T00:00:00Z",
        "aliases": ["CVE-2099-0001"], "summary": "test record",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "bash"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}]}]});
    std::fs::write(osv.join("DSA-0000-1.json"), record.to_string()).expect("w");
    rampart_scan::VulnDb::open_or_create(&d.join("vulns.db"))
        .expect("db")
        .import(&osv)
        .expect("import");
    let rules = "rules: [scanned]\nmax_severity: high\n";

    // No cached scan and no time to scan: the decision cannot be made; closed, then open.
    let e = engine(d, &format!("{rules}scan_timeout: 1ms\n"));
    let r = e.authorize(&create(&image)).await;
    assert!(
        !r.allow && r.msg.contains("fail: closed") && r.msg.contains("no cached scan"),
        "{r:?}"
    );
    let e = engine(d, &format!("{rules}scan_timeout: 1ms\nfail: open\n"));
    let r = e.authorize(&create(&image)).await;
    assert!(r.allow, "{r:?}");

    // Time enough: scanned on demand, denied with the record; then from the cache.
    let e = engine(d, &format!("{rules}scan_timeout: 120s\n"));
    for _ in 0..2 {
        let r = e.authorize(&create(&image)).await;
        assert!(!r.allow, "{r:?}");
        assert!(
            r.msg.contains("[scanned]") && r.msg.contains("DSA-0000-1") && r.msg.contains("bash"),
            "{r:?}"
        );
    }
    assert!(std::fs::read_dir(d.join("cache"))
        .expect("cache")
        .next()
        .is_some());
    // The record is critical (CVSS 9.8): a critical threshold still denies.
    let e = engine(d, "rules: [scanned]\nmax_severity: critical\n");
    let r = e.authorize(&create(&image)).await;
    assert!(!r.allow, "the record is critical (CVSS 9.8): {r:?}");
    // An exception for the image skips the rule.
    let e = engine(
        d,
        &format!(
            "{rules}exceptions:\n  - match: \"docker.io/rampart-test/*\"\n    skip: [scanned]\n"
        ),
    );
    assert!(e.authorize(&create(&image)).await.allow);
    assert_eq!(Rule::Scanned.as_str(), "scanned");
}
