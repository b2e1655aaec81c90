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
