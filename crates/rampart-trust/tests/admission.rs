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

fn image_id(image: &str) -> String {
    let o = std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .expect("docker");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
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
    // An exception for the image's digest (its id) skips the rule; a name pattern is refused.
    let id = image_id(&image);
    let e = engine(
        d,
        &format!("{rules}exceptions:\n  - digest: \"{id}\"\n    skip: [scanned]\n"),
    );
    assert!(e.authorize(&create(&image)).await.allow);
    std::fs::write(
        d.join("admission.yaml"),
        format!(
            "{rules}exceptions:\n  - match: \"docker.io/rampart-test/*\"\n    skip: [scanned]\n"
        ),
    )
    .expect("w");
    assert!(AdmissionPolicy::load(&d.join("admission.yaml")).is_err());
    assert_eq!(Rule::Scanned.as_str(), "scanned");
}

/// Regression (issue 15): the vulnerability database sat behind one mutex held for whole
/// scans, so a cold scan of one image stalled (and timed out) decisions for every other image.
/// A decision for an image with a cached scan must complete while another image's scan runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_scan_does_not_hold_up_decisions_for_cached_images() {
    testkit::require!(Root, Docker);
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    rampart_scan::VulnDb::open_or_create(&d.join("vulns.db")).expect("db");
    let e = std::sync::Arc::new(engine(d, "rules: [scanned]\nscan_timeout: 300s\n"));
    let (cached, cold) = (testkit::busybox_image(), testkit::debian_image());
    assert!(e.authorize(&create(&cached)).await.allow, "fills the cache");
    let e2 = e.clone();
    let cold_decision = tokio::spawn(async move { e2.authorize(&create(&cold)).await });
    // Let the cold scan start reading the image.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        let r = e.authorize(&create(&cached)).await;
        assert!(r.allow, "{r:?}");
    }
    assert!(
        !cold_decision.is_finished(),
        "the cold scan finished before the cached decisions: nothing was shown (use a bigger image)"
    );
    let r = cold_decision.await.expect("join");
    assert!(r.allow, "{r:?}");
}

fn request(method: &str, uri: &str, body: Option<&str>) -> AuthzRequest {
    AuthzRequest {
        request_method: method.into(),
        request_uri: uri.into(),
        request_body: body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        ..Default::default()
    }
}

/// Regression (issue 15): `fail: open` covers only "could not decide". With the daemon
/// unreachable (nothing can be looked up), a body that breaks a rule is still denied, and an
/// ambiguous or unknown request is denied; only a harmless one falls to the fail mode.
#[tokio::test]
async fn fail_open_never_allows_a_rule_violation() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    std::fs::write(
        d.join("admission.yaml"),
        "fail: open\nrules: [privileged, host-namespaces, sensitive-mounts, limits, capabilities]\n",
    )
    .expect("policy");
    let e = Engine::new(
        EngineConfig {
            policy: AdmissionPolicy::load(&d.join("admission.yaml")).expect("policy"),
            docker_socket: d.join("no-docker.sock"),
            db_path: d.join("vulns.db"),
            cache_dir: d.join("cache"),
            verdict_ttl: Duration::from_secs(60),
        },
        Box::new(std::io::sink()),
    )
    .expect("engine");
    let limits = r#""Memory":67108864,"NanoCpus":500000000,"PidsLimit":64"#;
    let harmless = format!(r#"{{"Image":"x","User":"1000","HostConfig":{{{limits}}}}}"#);
    let r = e
        .authorize(&request(
            "POST",
            "/v1.41/containers/create",
            Some(&harmless),
        ))
        .await;
    assert!(r.allow, "harmless, undecidable: fail open {r:?}");
    for body in [
        format!(r#"{{"Image":"x","User":"1000","HostConfig":{{{limits},"privileged":true}}}}"#),
        format!(r#"{{"Image":"x","User":"1000","HostConfig":{{{limits},"Binds":["/:/h"]}}}}"#),
        format!(r#"{{"Image":"x","image":"y","HostConfig":{{{limits}}}}}"#),
    ] {
        let r = e
            .authorize(&request("POST", "/v1.41/containers/create", Some(&body)))
            .await;
        assert!(!r.allow && r.msg.starts_with("rampart: ["), "{body}: {r:?}");
    }
    let r = e
        .authorize(&request(
            "POST",
            "/v1.41/containers/x/exec",
            Some(r#"{"Cmd":["sh"],"Privileged":true}"#),
        ))
        .await;
    assert!(!r.allow && r.msg.contains("[privileged]"), "{r:?}");
    let r = e
        .authorize(&request("POST", "/v1.41/frobnicate", Some("{}")))
        .await;
    assert!(!r.allow && r.msg.contains("denied by default"), "{r:?}");
    let r = e
        .authorize(&request("POST", "/v1.41/plugins/pull?remote=x", Some("[]")))
        .await;
    assert!(!r.allow && r.msg.contains("gated (plugins)"), "{r:?}");
    let r = e
        .authorize(&request("GET", "/v1.41/containers/json", None))
        .await;
    assert!(r.allow, "{r:?}");
}

/// Exceptions and break glass follow the user dockerd authenticated (`User`, the TLS client
/// certificate name) and the image's digest, never what the requester writes in the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_and_break_glass_follow_the_authenticated_user() {
    testkit::require!(Root, Docker);
    let image = testkit::busybox_image();
    let id = image_id(&image);
    let dir = tempfile::tempdir().expect("tmp");
    let e = engine(
        dir.path(),
        &format!(
            "rules: [privileged, limits, non-root]\nbreak_glass: [alice]\nexceptions:\n  - user: ci\n    skip: [limits]\n  - user: ops\n    digest: \"{id}\"\n    skip: [privileged]\n"
        ),
    );
    let ask = |user: &str, body: serde_json::Value| AuthzRequest {
        user: user.into(),
        request_method: "POST".into(),
        request_uri: "/v1.41/containers/create".into(),
        request_body: Some(base64::engine::general_purpose::STANDARD.encode(body.to_string())),
        ..Default::default()
    };
    let unlimited = serde_json::json!({"Image": image, "User": "1000"});
    assert!(!e.authorize(&ask("", unlimited.clone())).await.allow);
    assert!(!e.authorize(&ask("bob", unlimited.clone())).await.allow);
    assert!(e.authorize(&ask("ci", unlimited.clone())).await.allow);
    let privileged = serde_json::json!({"Image": image, "User": "1000",
        "HostConfig": {"Memory": 1 << 26, "NanoCpus": 500_000_000, "PidsLimit": 64, "Privileged": true}});
    assert!(!e.authorize(&ask("ci", privileged.clone())).await.allow);
    // The digest exception holds for this image only (its id), for its user only.
    assert!(e.authorize(&ask("ops", privileged.clone())).await.allow);
    assert!(!e.authorize(&ask("bob", privileged.clone())).await.allow);
    // Break glass: the label is honoured for alice, not for anyone who writes it.
    let mut glass = privileged.clone();
    glass["Labels"] = serde_json::json!({"rampart.break-glass": "INC-42"});
    let r = e.authorize(&ask("alice", glass.clone())).await;
    assert!(r.allow, "{r:?}");
    let r = e.authorize(&ask("", glass.clone())).await;
    assert!(!r.allow && r.msg.contains("[privileged]"), "{r:?}");
    // Not over a body the plugin reads differently from dockerd.
    let mut ambiguous = glass.clone();
    ambiguous["hostconfig"] = serde_json::json!({"Privileged": true});
    assert!(!e.authorize(&ask("alice", ambiguous)).await.allow);
}

/// Services (issue 15, item 1) against the main dockerd: what the spec names is looked up
/// there. The `host` network by its id is the host's; a service without `User` takes the
/// image's (busybox: root); an image not on this node leaves the user undecidable (the fail
/// mode applies), while a rule the body breaks still denies under `fail: open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_are_judged_by_what_dockerd_resolves() {
    testkit::require!(Root, Docker);
    let image = testkit::busybox_image();
    let dir = tempfile::tempdir().expect("tmp");
    let e = engine(
        dir.path(),
        "fail: open\nrules: [host-namespaces, sensitive-mounts, non-root, limits]\n",
    );
    let o = std::process::Command::new("docker")
        .args(["network", "inspect", "--format", "{{.Id}}", "host"])
        .output()
        .expect("docker");
    let host_id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(host_id.len(), 64, "{o:?}");
    let limits =
        r#""Resources":{"Limits":{"NanoCPUs":500000000,"MemoryBytes":67108864,"Pids":64}}"#;
    let spec = |cs: &str, extra: &str| {
        format!(r#"{{"Name":"s","TaskTemplate":{{"ContainerSpec":{cs},{limits}{extra}}}}}"#)
    };
    let ask = |body: String| request("POST", "/v1.41/services/create", Some(&body));
    let ok = spec(&format!(r#"{{"Image":"{image}","User":"1000"}}"#), "");
    let r = e.authorize(&ask(ok)).await;
    assert!(r.allow, "{r:?}");
    let by_id = spec(
        &format!(r#"{{"Image":"{image}","User":"1000"}}"#),
        &format!(r#","Networks":[{{"Target":"{host_id}"}}]"#),
    );
    let r = e.authorize(&ask(by_id)).await;
    assert!(!r.allow && r.msg.contains("is the host's network"), "{r:?}");
    let image_user = spec(&format!(r#"{{"Image":"{image}"}}"#), "");
    let r = e.authorize(&ask(image_user)).await;
    assert!(!r.allow && r.msg.contains("[non-root]"), "{r:?}");
    // Not on this node: undecidable, so fail open allows a harmless spec...
    let absent = spec(r#"{"Image":"rampart-test/absent:1"}"#, "");
    let r = e.authorize(&ask(absent)).await;
    assert!(r.allow, "undecidable, fail open: {r:?}");
    // ...but never one that breaks a rule.
    let absent_bind = spec(
        r#"{"Image":"rampart-test/absent:1","Mounts":[{"Type":"bind","Source":"/"}]}"#,
        "",
    );
    let r = e.authorize(&ask(absent_bind)).await;
    assert!(!r.allow && r.msg.contains("[sensitive-mounts]"), "{r:?}");
}
