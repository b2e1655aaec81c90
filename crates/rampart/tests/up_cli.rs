//! `rampart up`: the agent and the server in one process. A real container's exec goes through
//! the sensor, the durable queue and the embedded server's SQLite store, and `rampart query`
//! over the server's HTTPS API finds it; after SIGTERM every event the agent wrote is stored,
//! once.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{busybox_image, TestContainer};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn up_runs_agent_and_server_in_one_process_and_query_finds_the_events() {
    testkit::require!(Root, Docker, Bpf);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let server_cfg = dir.path().join("server.yaml");
    std::fs::write(
        &server_cfg,
        format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\n",
            state.join("server").display()
        ),
    )
    .expect("server.yaml");
    let stats = dir.path().join("stats.json");
    let agent_cfg = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!("stats_file: {}\nregion: eu-de\n", stats.display()),
    )
    .expect("agent.yaml");
    let events = dir.path().join("events.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(["up", "--config"])
        .arg(&agent_cfg)
        .arg("--server-config")
        .arg(&server_cfg)
        .arg("--state-dir")
        .arg(&state)
        .arg("--output")
        .arg(format!("jsonl:{}", events.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("up.log")).expect("log"));
    // SAFETY: prctl in the child before exec; it stops when the test process dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut up = cmd.spawn().expect("spawn rampart up");
    let mut out = BufReader::new(up.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read");
    let url = first
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
            panic!("no listening line: {first:?}\n{log}")
        })
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stats.exists() {
        assert!(up.try_wait().expect("wait").is_none(), "rampart up exited");
        assert!(Instant::now() < deadline, "agent not ready after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let c = TestContainer::run("rp-up", &[&busybox_image(), "sleep", "300"]);
    let marker = testkit::unique("up-marker");
    let ran = c.exec(&["sh", "-c", &format!("echo {marker}")]);
    assert!(ran.status.success(), "{ran:?}");

    let ca = state.join("server/ca/ca.crt");
    let token = state.join("server/admin.token");
    let query = |extra: &[&str]| -> Vec<Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["query", "--server", &url, "--ca"])
            .arg(&ca)
            .arg("--token-file")
            .arg(&token)
            .args(["--json", "--limit", "100000"])
            .args(extra)
            .output()
            .expect("rampart query");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let has_marker = |r: &Value| {
        r["type"] == "process.exec"
            && r["process"]["args"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|x| x.as_str() == Some(&format!("echo {marker}")))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let exec = loop {
        if let Some(r) = query(&["--container", &c.name])
            .into_iter()
            .find(has_marker)
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the container's exec never reached the embedded server"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(exec["container"]["uid"], c.id.as_str());
    assert_eq!(exec["device"]["region"], "eu-de", "{exec}");
    assert!(
        state.join("queue").is_dir(),
        "the queue is under --state-dir"
    );

    // SIGTERM: the agent drains its queue into the store, then the server stops.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    let status = up.wait().expect("wait");
    assert!(status.success(), "{status:?}");

    // Every event and alert the agent wrote is stored once: read the same state directory back
    // through a plain `rampart server`.
    let mut srv = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["server", "--config"])
        .arg(&server_cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rampart server");
    let mut out = BufReader::new(srv.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    let url2 = line
        .trim()
        .strip_prefix("listening ")
        .expect("listening")
        .to_string();
    let stored: Vec<Value> = {
        let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["query", "--server", &url2, "--ca"])
            .arg(&ca)
            .arg("--token-file")
            .arg(&token)
            .args(["--json", "--limit", "1000000"])
            .output()
            .expect("rampart query");
        let _ = srv.kill();
        let _ = srv.wait();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let ids: Vec<&str> = stored
        .iter()
        .filter_map(|r| r["metadata"]["uid"].as_str())
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a record is stored twice");
    let written = lines(&events);
    let missing = written
        .iter()
        .filter_map(|r| r["metadata"]["uid"].as_str())
        .filter(|id| !unique.contains(id))
        .count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} events the agent wrote are not in the store",
        written.len()
    );
}

/// `rampart up` started with stdout piped (no `--output`): its stdout lines arrive on the
/// returned channel. `extra` adds arguments (`--json`).
fn start_up_stdout(
    dir: &std::path::Path,
    extra: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let state = dir.join("state");
    let server_cfg = dir.join("server.yaml");
    std::fs::write(
        &server_cfg,
        format!(
            "listen: 127.0.0.1:0\ndata_dir: {}\n",
            state.join("server").display()
        ),
    )
    .expect("server.yaml");
    let stats = dir.join("stats.json");
    let agent_cfg = dir.join("agent.yaml");
    std::fs::write(
        &agent_cfg,
        format!("stats_file: {}\nstats_interval_secs: 1\n", stats.display()),
    )
    .expect("agent.yaml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.args(["up", "--config"])
        .arg(&agent_cfg)
        .arg("--server-config")
        .arg(&server_cfg)
        .arg("--state-dir")
        .arg(&state)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("up.log")).expect("log"));
    // SAFETY: prctl in the child before exec; it stops when the test process dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut up = cmd.spawn().expect("spawn rampart up");
    let out = BufReader::new(up.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stats.exists() {
        assert!(up.try_wait().expect("wait").is_none(), "rampart up exited");
        assert!(Instant::now() < deadline, "agent not ready after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (up, rx)
}

/// Lines from `rx` until `want` matches one (or 30 s pass); every line read is returned.
fn read_until(rx: &std::sync::mpsc::Receiver<String>, want: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let hit = want(&line);
        seen.push(line);
        if hit {
            break;
        }
    }
    seen
}

#[test]
fn up_stdout_shows_alerts_and_a_summary_not_every_event_as_json() {
    testkit::require!(Root, Docker, Bpf);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut up, rx) = start_up_stdout(dir.path(), &[]);
    let c = TestContainer::run("rp-upcon", &[&busybox_image(), "sleep", "300"]);
    // The default rule "Password hashes read" fires on a read of /etc/shadow.
    let ran = c.exec(&["cat", "/etc/shadow"]);
    assert!(ran.status.success(), "{ran:?}");
    let mut seen = read_until(&rx, |l| {
        l.contains("Password hashes read") && l.contains(&format!("container {} (", c.name))
    });
    let alert = seen.last().cloned().unwrap_or_default();
    assert!(
        alert.contains("Password hashes read"),
        "no alert line for the container's read of /etc/shadow; stdout:\n{}\nlog:\n{}",
        seen.join("\n"),
        std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default()
    );
    // time, priority, rule, container, the rule's output (which names the file)
    let time = alert.split(' ').next().unwrap_or_default();
    assert!(
        humantime::parse_rfc3339(time).is_ok(),
        "line starts with the time: {alert}"
    );
    assert!(alert.contains(" WARNING "), "the rule's priority: {alert}");
    assert!(alert.contains("/etc/shadow"), "{alert}");
    seen.extend(read_until(&rx, |l| l.contains(" summary ")));
    let summary = seen.iter().rev().find(|l| l.contains(" summary "));
    let summary = summary.unwrap_or_else(|| panic!("no summary line in:\n{}", seen.join("\n")));
    for part in ["events (", "/s), ", " dropped", " active in "] {
        assert!(summary.contains(part), "{part:?} missing: {summary}");
    }
    assert!(seen[0].starts_with("listening "), "{seen:?}");
    assert!(seen[1].starts_with("dashboard "), "{seen:?}");
    // Without --json no event reaches stdout as JSON (a container's exec and file events were
    // made above, and the agent's own sensor.drops every second).
    let json: Vec<&String> = seen.iter().filter(|l| l.starts_with('{')).collect();
    assert!(json.is_empty(), "JSON on stdout without --json: {json:?}");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    assert!(up.wait().expect("wait").success());
}

#[test]
fn up_json_keeps_every_event_as_json_lines_on_stdout() {
    testkit::require!(Root, Docker, Bpf);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut up, rx) = start_up_stdout(dir.path(), &["--json"]);
    let seen = read_until(&rx, |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v["type"] == "sensor.drops")
    });
    assert!(
        seen.iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["type"] == "sensor.drops"),
        "no JSON event on stdout with --json:\n{}",
        seen.join("\n")
    );
    assert!(!seen.iter().any(|l| l.contains(" summary ")), "{seen:?}");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(up.id() as i32, libc::SIGTERM) };
    assert!(up.wait().expect("wait").success());
}
