//! End-to-end through the command line: `rampart server`, its admin commands, `rampart enroll`,
//! `rampart agent` shipping to the server through its durable queue (real sensor, real
//! container), `rampart query`; and the agent killed with SIGKILL: what it queued arrives once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{busybox_image, TestContainer};

mod support;
use support::{rampart, rampart_ok, spawn, Proc};

/// `rampart server` on a free loopback port, with the test's own fleet rules; returns it, its
/// URL and its config file.
fn start_server(dir: &Path) -> (Proc, String, PathBuf) {
    // The server's own fleet rules (`fleet.rules` replaces the shipped ones).
    let fleet_rules = dir.join("fleet-rules.yaml");
    std::fs::write(
        &fleet_rules,
        "- rule: Test fleet marker seen\n  desc: the test's own fleet rule\n  condition: evt.type = execve and proc.cmdline contains ship-marker-two\n  output: marker on %evt.hostname\n  priority: WARNING\n",
    )
    .expect("fleet rules");
    support::server::start_in(
        dir,
        &format!(
            "# test server\nregions:\n  eu-de:\n    retention_days: 90\nfleet:\n  rules: [{}]\n  roles: [nis2-entity]\n  incident_window: 30m\n",
            fleet_rules.display()
        ),
    )
}

#[test]
fn server_admin_enroll_and_query_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, url, config) = start_server(dir.path());
    let config = config.to_str().expect("utf-8");
    let data = dir.path().join("data");

    // Enrollment token, enrollment, the key is private.
    let token = rampart_ok(&[
        "server",
        "enroll-token",
        "--config",
        config,
        "--region",
        "eu-de",
    ]);
    let tls = dir.path().join("tls");
    let tls_s = tls.to_str().expect("utf-8");
    let out = rampart_ok(&[
        "enroll",
        "--server",
        &url,
        "--token",
        token.trim(),
        "--dir",
        tls_s,
        "--hostname",
        "cli-host",
    ]);
    assert!(out.contains("region eu-de"), "{out}");
    let mode = std::fs::metadata(tls.join("agent.key"))
        .expect("agent.key")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    for f in ["ca.crt", "agent.crt", "enrollment.json"] {
        assert!(tls.join(f).exists(), "{f}");
    }
    // The token was for one use.
    let again = rampart(&[
        "enroll",
        "--server",
        &url,
        "--token",
        token.trim(),
        "--dir",
        dir.path().join("tls2").to_str().expect("utf-8"),
    ]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");

    // The agent is listed; an analyst token queries; a read-only token may not read events.
    let agents: Value = serde_json::from_str(&rampart_ok(&[
        "server", "agents", "--config", config, "list", "--json",
    ]))
    .expect("agents JSON");
    assert_eq!(agents[0]["hostname"], "cli-host");
    assert_eq!(agents[0]["region"], "eu-de");
    let agent_id = agents[0]["agent_id"].as_str().expect("id").to_string();
    let analyst = rampart_ok(&[
        "server", "token", "create", "--config", config, "--name", "ann", "--role", "analyst",
    ]);
    let reader = rampart_ok(&[
        "server",
        "token",
        "create",
        "--config",
        config,
        "--name",
        "rob",
        "--role",
        "read-only",
    ]);
    let ca = data.join("ca/ca.crt");
    let ca = ca.to_str().expect("utf-8");
    let q = |token: &str, extra: &[&str]| {
        let mut args = vec![
            "query",
            "--server",
            &url,
            "--ca",
            ca,
            "--token",
            token.trim(),
        ];
        args.extend_from_slice(extra);
        rampart(&args)
    };
    let count = q(&analyst, &["--count"]);
    assert!(count.status.success(), "{count:?}");
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "0");
    let denied = q(&reader, &["--json"]);
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("403"),
        "{denied:?}"
    );
    assert!(q(&reader, &["--alerts", "--json"]).status.success());
    // A bad filter is the user's mistake (exit 2), with the reason.
    let bad = q(&analyst, &["--since", "yesterday-ish"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("since"));

    // Tokens are listed by name, revoked by name.
    let list = rampart_ok(&["server", "token", "list", "--config", config]);
    assert!(list.contains("ann") && list.contains("analyst"), "{list}");
    rampart_ok(&["server", "token", "revoke", "--config", config, "ann"]);
    let revoked = q(&analyst, &["--count"]);
    assert!(
        String::from_utf8_lossy(&revoked.stderr).contains("401"),
        "{revoked:?}"
    );

    // Revoking the agent rewrites the CRL.
    let crl = data.join("ca/crl.pem");
    let before = std::fs::read(&crl).ok();
    rampart_ok(&["server", "agents", "--config", config, "revoke", &agent_id]);
    assert_ne!(std::fs::read(&crl).ok(), before, "CRL rewritten");
    let agents: Value = serde_json::from_str(&rampart_ok(&[
        "server", "agents", "--config", config, "list", "--json",
    ]))
    .expect("agents JSON");
    assert!(agents[0]["revoked_ns"].as_u64().is_some(), "{agents}");
}

#[test]
fn server_config_errors_name_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("server.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nretention_days: 90\n").expect("write");
    let out = rampart(&["server", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.yaml:2:"), "{err}");
    assert!(err.contains("retention_days"), "{err}");
    std::fs::write(&config, "regions:\n  EU: {retention_days: 1}\n").expect("write");
    let out = rampart(&["server", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("EU"));
    // fleet: options are checked at load, and a broken fleet rule file is named.
    std::fs::write(&config, "fleet:\n  incident_window: soonish\n").expect("write");
    let out = rampart(&["server", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("fleet.incident_window"));
    let rules = dir.path().join("my-fleet.yaml");
    std::fs::write(&rules, "- rule: broken\n  condition: evt.type = (\n").expect("write");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\nfleet:\n  rules: [{}]\n",
            dir.path().join("data").display(),
            rules.display()
        ),
    )
    .expect("write");
    let out = rampart(&["server", "--config", config.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("my-fleet.yaml"), "{err}");
}

/// The agent with a `ship:` section: the server (mTLS) and a file, both fed from the queue.
fn start_agent(dir: &Path, url: &str, host: &str) -> Proc {
    let stats = dir.join("stats.json");
    let _ = std::fs::remove_file(&stats);
    let cfg = dir.join("agent.yaml");
    std::fs::write(
        &cfg,
        format!(
            "hostname: {host}\nstats_file: {stats}\ncontainers_only: true\noutputs: []\n\
             ship:\n  queue: {{dir: {queue}, fsync: batch}}\n  outputs:\n    \
             - {{type: server, url: \"{url}\", tls_dir: {tls}}}\n    \
             - {{type: file, path: {file}}}\n  batch: {{linger_ms: 20}}\n  \
             backoff: {{initial_ms: 50, max_ms: 500}}\n",
            stats = stats.display(),
            queue = dir.join("queue").display(),
            tls = dir.join("tls").display(),
            file = dir.join("shipped.jsonl").display(),
        ),
    )
    .expect("agent.yaml");
    let log = dir.join(format!("agent-{}.log", unique_suffix()));
    let mut p = spawn(
        &["agent", "--config", cfg.to_str().expect("utf-8")],
        Stdio::null(),
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stats.exists() {
        if let Ok(Some(status)) = p.0.try_wait() {
            panic!(
                "agent exited during start: {status:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "agent not ready after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The exec of `sh -c '<marker>...'` in `records`.
fn has_marker(records: &[Value], marker: &str) -> bool {
    records.iter().any(|r| {
        r["type"] == "process.exec"
            && r["process"]["args"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x.as_str().is_some_and(|s| s.contains(marker)))
            })
    })
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn agent_ships_through_the_queue_and_survives_sigkill() {
    testkit::require!(Root, Docker, Bpf);
    let image = busybox_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, url, config) = start_server(dir.path());
    let config = config.to_str().expect("utf-8");
    let data = dir.path().join("data");
    let host = testkit::unique("ship-host");
    support::server::enroll_cli(config, &url, &dir.path().join("tls"), &host);
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
            "10000",
        ];
        args.extend_from_slice(extra);
        rampart_ok(&args)
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    };
    let shipped = dir.path().join("shipped.jsonl");

    let agent = start_agent(dir.path(), &url, &host);
    let c = TestContainer::run("rp-ship", &[&image, "sleep", "300"]);
    let out = c.exec(&["sh", "-c", "echo ship-marker-one >/dev/null; id"]);
    assert!(out.status.success(), "{out:?}");
    // Once the file output has it, it is in the queue; kill the agent right then, before the
    // server output may have delivered it.
    wait_until(
        "the first exec in the queue",
        Duration::from_secs(20),
        || has_marker(&lines(&shipped), "ship-marker-one"),
    );
    let mut agent = agent;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(agent.0.id() as i32, libc::SIGKILL) }, 0);
    let _ = agent.0.wait();

    // Restarted on the same queue: the rest of the first run arrives, and new events.
    let agent = start_agent(dir.path(), &url, &host);
    let out = c.exec(&["sh", "-c", "echo ship-marker-two >/dev/null; id"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(
        "both execs in rampart query",
        Duration::from_secs(30),
        || {
            let r = query(&["--container", &c.name, "--type", "process.exec"]);
            has_marker(&r, "ship-marker-one") && has_marker(&r, "ship-marker-two")
        },
    );
    // SIGTERM: the agent drains its queue before it exits.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    let mut agent = agent;
    let status = agent.0.wait().expect("wait agent");
    assert!(status.success(), "{status:?}");

    // Everything that went through the queue is stored, once.
    let stored = query(&[]);
    let ids: Vec<&str> = stored
        .iter()
        .map(|r| r["metadata"]["uid"].as_str().expect("uid"))
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a record is stored twice");
    let queued: HashSet<String> = lines(&shipped)
        .iter()
        .filter_map(|r| r["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = queued
        .iter()
        .filter(|id| !unique.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} queued records never reached the server: {missing:?}",
        missing.len(),
        queued.len()
    );
    // The server stamped the enrollment's region, whatever the agent claimed.
    let exec = stored
        .iter()
        .find(|r| has_marker(std::slice::from_ref(r), "ship-marker-two"))
        .expect("exec stored");
    assert_eq!(exec["device"]["region"], "eu-de", "{exec}");
    assert_eq!(exec["container"]["name"], c.name.as_str());
    // The server ran the fleet rules of its configuration.
    wait_until("the fleet rule's alert", Duration::from_secs(20), || {
        query(&["--alerts"])
            .iter()
            .any(|a| a["rule"] == "Test fleet marker seen")
    });
    // The table view shows it too.
    let table = rampart_ok(&[
        "query",
        "--server",
        &url,
        "--ca",
        ca.to_str().expect("utf-8"),
        "--token-file",
        token_file.to_str().expect("utf-8"),
        "--container",
        &c.name,
        "--grep",
        "ship-marker-two",
    ]);
    assert!(
        table
            .lines()
            .any(|l| l.contains(&host) && l.contains("process.exec")),
        "{table}"
    );
}
