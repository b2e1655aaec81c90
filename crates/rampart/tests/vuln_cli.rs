//! Continuous vulnerability management end to end, through the command line: `rampart server`,
//! an enrolled `rampart agent` shipping its inventory over mTLS while a Debian container runs,
//! `rampart server db import` twice (a first OSV database that affects nothing in the image,
//! then one with an advisory for the image's `bash`), the "now vulnerable" alert in
//! `rampart query --alerts`, the agent installing the signed bundle and reporting the new
//! count, and a tampered manifest refused with the installed database kept.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{debian_image, TestContainer};

mod support;
use support::server::{enroll_cli, start_in};
use support::{rampart_ok, spawn};

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_until<T>(what: &str, timeout: Duration, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An OSV record for Debian 12's `bash`, fixed in `fixed`.
fn advisory(id: &str, fixed: &str, severity: &str) -> String {
    serde_json::json!({
        "schema_version": "1.6.0",
        "id": id,
        "modified": "2026-11-01T00:00:00Z",
        "published": "2026-11-01T00:00:00Z",
        "summary": format!("test advisory {id}"),
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": "bash"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
        }],
        "database_specific": {"severity": severity}
    })
    .to_string()
}

/// The newest `inventory.container` of `container` in the agent's shipped records.
fn container_inventory(shipped: &Path, container: &str) -> Option<Value> {
    lines(shipped)
        .into_iter()
        .rev()
        .find(|r| r["type"] == "inventory.container" && r["container"]["uid"] == container)
        .map(|r| r["container_inventory"].clone())
}

#[test]
fn db_import_raises_now_vulnerable_and_agents_install_the_signed_bundle() {
    testkit::require!(Root, Docker, Bpf);
    let image = debian_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, url, config) =
        start_in(dir.path(), "regions:\n  eu-de:\n    retention_days: 90\n");
    let config = config.to_str().expect("utf-8");
    let data = dir.path().join("data");
    let host = testkit::unique("vuln-host");
    let tls = dir.path().join("tls");
    enroll_cli(config, &url, &tls, &host);
    let c = TestContainer::run("rp-vuln", &[&image, "sleep", "300"]);

    // The agent: ships to the server and to a file, inventory with a 1 s bundle poll.
    let stats = dir.path().join("stats.json");
    let shipped = dir.path().join("shipped.jsonl");
    let agent_db = dir.path().join("agent/vuln.db");
    let state = dir.path().join("agent/state");
    let cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "hostname: {host}\nstats_file: {stats}\ncontainers_only: true\noutputs: []\n\
             ship:\n  queue: {{dir: {queue}, fsync: batch}}\n  outputs:\n    \
             - {{type: server, url: \"{url}\", tls_dir: {tls}}}\n    \
             - {{type: file, path: {file}}}\n  batch: {{linger_ms: 20}}\n  \
             backoff: {{initial_ms: 50, max_ms: 500}}\n\
             inventory:\n  interval: 1h\n  db_poll: 1s\n  db: {db}\n  cache_dir: {cache}\n  \
             state_dir: {state}\n",
            stats = stats.display(),
            queue = dir.path().join("queue").display(),
            tls = tls.display(),
            file = shipped.display(),
            db = agent_db.display(),
            cache = dir.path().join("cache").display(),
            state = state.display(),
        ),
    )
    .expect("agent.yaml");
    let agent_log = dir.path().join("agent.log");
    let agent = spawn(
        &["agent", "--config", cfg.to_str().expect("utf-8")],
        Stdio::null(),
        &agent_log,
    );

    // First round: host, container and image inventories, before any database.
    let inv = wait_until(
        "the container's first inventory",
        Duration::from_secs(120),
        &agent_log,
        || container_inventory(&shipped, &c.id),
    );
    assert_eq!(inv["image"], image.as_str(), "{inv}");
    assert!(
        inv["image_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("sha256:")),
        "{inv}"
    );
    assert_eq!(inv["signature"], "unknown", "{inv}");
    assert!(inv["compliance_score"].as_u64().is_some(), "{inv}");
    let image_id = inv["image_id"].as_str().expect("image id").to_string();
    // The host comes last in a round.
    let host_inv = wait_until(
        "the first inventory.host",
        Duration::from_secs(60),
        &agent_log,
        || {
            lines(&shipped)
                .into_iter()
                .find(|r| r["type"] == "inventory.host")
        },
    );
    let records = lines(&shipped);
    let hi = &host_inv["host_inventory"];
    assert!(
        hi["containers"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == c.id.as_str())),
        "{hi}"
    );
    assert!(
        hi["protections"].as_array().is_some_and(|p| !p.is_empty()),
        "{hi}"
    );
    let img = records
        .iter()
        .find(|r| {
            r["type"] == "inventory.image" && r["image_inventory"]["image_id"] == image_id.as_str()
        })
        .expect("an inventory.image event");
    assert!(
        img["image_inventory"]["packages"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x["name"] == "bash")),
        "bash in the SBOM"
    );
    assert_eq!(
        img["image_inventory"]["os"],
        "Debian GNU/Linux 12 (bookworm)"
    );
    // The server stored them.
    let ca = data.join("ca/ca.crt");
    let token_file = data.join("admin.token");
    let query = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec![
            "query",
            "--server",
            &url,
            "--ca",
            ca.to_str().expect("utf-8"),
            "--token-file",
            token_file.to_str().expect("utf-8"),
            "--host",
            &host,
            "--json",
            "--limit",
            "1000",
        ];
        args.extend_from_slice(extra);
        rampart_ok(&args)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    wait_until(
        "the SBOM stored on the server",
        Duration::from_secs(30),
        &agent_log,
        || (!query(&["--type", "inventory.image"]).is_empty()).then_some(()),
    );

    // Database 1: an advisory fixed long before the installed bash, and one for a package the
    // image does not have: nothing is affected.
    let osv = dir.path().join("osv");
    std::fs::create_dir_all(&osv).expect("osv dir");
    std::fs::write(
        osv.join("old.json"),
        advisory("CVE-2099-0001", "4.0-1", "CRITICAL"),
    )
    .expect("write");
    std::fs::write(
        osv.join("other.json"),
        advisory("CVE-2099-0002", "99.0-1", "HIGH").replace("\"bash\"", "\"not-installed\""),
    )
    .expect("write");
    let out = rampart_ok(&[
        "server",
        "db",
        "import",
        "--config",
        config,
        osv.to_str().expect("utf-8"),
    ]);
    let v1 = out
        .lines()
        .find_map(|l| l.strip_prefix("published vulnerability database "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in {out}"))
        .to_string();
    let manifest_v1 = std::fs::read_to_string(data.join("vulndb/manifest.json")).expect("v1");
    let inv = wait_until(
        "an inventory under database 1",
        Duration::from_secs(60),
        &agent_log,
        || container_inventory(&shipped, &c.id).filter(|i| i["db_version"] == v1.as_str()),
    );
    assert_eq!(inv["vulnerabilities"]["critical"], 0, "{inv}");
    assert_eq!(inv["vulnerabilities"]["high"], 0, "{inv}");

    // Database 2 adds an advisory affecting the running container's bash.
    std::fs::write(
        osv.join("new.json"),
        advisory("CVE-2099-1234", "5.2.15-3", "HIGH"),
    )
    .expect("write");
    let out = rampart_ok(&[
        "server",
        "db",
        "import",
        "--config",
        config,
        osv.to_str().expect("utf-8"),
    ]);
    let v2 = out
        .lines()
        .find_map(|l| l.strip_prefix("published vulnerability database "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in {out}"))
        .to_string();
    assert_ne!(v1, v2);
    let server_log = dir.path().join("server.log");
    let alerts = wait_until(
        "the now-vulnerable alert",
        Duration::from_secs(60),
        &server_log,
        || {
            let a: Vec<Value> = query(&["--alerts"])
                .into_iter()
                .filter(|a| a["rule"] == "Container image newly vulnerable")
                .collect();
            (!a.is_empty()).then_some(a)
        },
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    let msg = a["message"].as_str().expect("message");
    for part in [
        host.as_str(),
        c.name.as_str(),
        image.as_str(),
        "CVE-2099-1234",
    ] {
        assert!(msg.contains(part), "{part} not in {msg}");
    }
    assert!(
        !msg.contains("CVE-2099-0001") && !msg.contains("CVE-2099-0002"),
        "{msg}"
    );
    assert_eq!(a["priority"], "Error", "{a}");
    assert_eq!(a["output_fields"]["vuln.ids"], "CVE-2099-1234", "{a}");
    assert_eq!(a["output_fields"]["container.id"], c.id.as_str(), "{a}");

    // The alert joined an incident of the fleet console, like any alert.
    let alert_id = a["metadata"]["uid"].as_str().expect("alert id").to_string();
    let data_s = data.to_str().expect("utf-8");
    wait_until(
        "the alert in an incident",
        Duration::from_secs(30),
        &server_log,
        || {
            rampart_ok(&["incident", "--data-dir", data_s, "list", "--json"])
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|i| {
                    i["hosts"]
                        .as_array()
                        .is_some_and(|h| h.iter().any(|x| x == host.as_str()))
                })
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .any(|id| {
                    let shown: Value = serde_json::from_str(&rampart_ok(&[
                        "incident",
                        "--data-dir",
                        data_s,
                        "show",
                        &id,
                        "--json",
                    ]))
                    .expect("incident JSON");
                    shown["incident"]["alert_ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|x| x == alert_id.as_str()))
                })
                .then_some(())
        },
    );

    // The agent installs the new bundle and reports the finding.
    let inv = wait_until(
        "an inventory under database 2",
        Duration::from_secs(60),
        &agent_log,
        || container_inventory(&shipped, &c.id).filter(|i| i["db_version"] == v2.as_str()),
    );
    assert_eq!(inv["vulnerabilities"]["high"], 1, "{inv}");
    let installed = std::fs::read(&agent_db).expect("agent database");

    // A manifest altered after signing is refused; the installed database stays.
    let manifest = data.join("vulndb/manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, text.replace(&v2, "9999999999-000000000000")).expect("tamper");
    wait_until(
        "the tampered bundle refused",
        Duration::from_secs(30),
        &agent_log,
        || {
            std::fs::read_to_string(&agent_log)
                .unwrap_or_default()
                .contains("signature does not verify")
                .then_some(())
        },
    );
    assert_eq!(std::fs::read(&agent_db).expect("agent database"), installed);
    let recorded = std::fs::read_to_string(state.join("vulndb.json")).expect("installed manifest");
    assert!(recorded.contains(&v2), "{recorded}");
    // The first bundle, validly signed, served again: refused as a rollback.
    std::fs::write(&manifest, &manifest_v1).expect("serve the old manifest");
    wait_until(
        "the older bundle refused",
        Duration::from_secs(30),
        &agent_log,
        || {
            std::fs::read_to_string(&agent_log)
                .unwrap_or_default()
                .contains("refused (a rollback to an older database)")
                .then_some(())
        },
    );
    assert_eq!(std::fs::read(&agent_db).expect("agent database"), installed);

    // Still exactly one alert: re-imports and polls do not repeat it.
    let n = query(&["--alerts"])
        .iter()
        .filter(|a| a["rule"] == "Container image newly vulnerable")
        .count();
    assert_eq!(n, 1);
    // The server asks for the image inventories again: the agent resends the package list.
    std::fs::write(&manifest, &text).expect("restore the manifest");
    let images_sent = |shipped: &Path| {
        lines(shipped)
            .iter()
            .filter(|r| {
                r["type"] == "inventory.image"
                    && r["image_inventory"]["image_id"] == image_id.as_str()
            })
            .count()
    };
    assert_eq!(images_sent(&shipped), 1, "sent once across rounds");
    rampart_ok(&["server", "db", "resend", "--config", config]);
    wait_until(
        "the package list sent again",
        Duration::from_secs(30),
        &agent_log,
        || (images_sent(&shipped) == 2).then_some(()),
    );
    let mut agent = agent;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let status = agent.0.wait().expect("wait agent");
    assert!(status.success(), "{status:?}");
}
