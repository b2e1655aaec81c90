//! `rampart audit`, `rampart profile` and `rampart harden` from the command line: formats,
//! `--fail-on` exit codes, bad input (exit 2 with file:line), and a learned profile that the
//! same container then runs under.

use std::process::{Command, Output};

use testkit::TestContainer;

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("run rampart")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn audit_containers_formats_and_fail_on() {
    testkit::require!(Root, Docker);
    let img = testkit::busybox_image();
    let bad = TestContainer::run(
        "cli-audit-bad",
        &[
            "--security-opt",
            "seccomp=unconfined",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            &img,
            "sleep",
            "600",
        ],
    );
    // Table: the critical docker.sock finding with its fix.
    let out = rampart(&["audit", "containers", &bad.name]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains(&format!("Container {}  score", bad.name)), "{t}");
    assert!(t.contains("FAIL critical 5.32"), "{t}");
    assert!(
        t.contains("fix:      Remove -v /var/run/docker.sock"),
        "{t}"
    );
    // --fail-on: a critical failure fails the build at any threshold up to critical.
    let out = rampart(&[
        "audit",
        "containers",
        &bad.name,
        "--fail-on",
        "critical",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["subjects"][0]["name"], bad.name.as_str());
    assert!(v["subjects"][0]["score"].as_u64().expect("score") < 100);
    // SARIF and OCSF lines.
    let out = rampart(&["audit", "containers", &bad.name, "--format", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("sarif json");
    assert_eq!(v["version"], "2.1.0");
    let out = rampart(&["audit", "containers", &bad.name, "--format", "ocsf"]);
    let lines = String::from_utf8_lossy(&out.stdout);
    for l in lines.lines() {
        let e: serde_json::Value = serde_json::from_str(l).expect("ocsf line");
        assert_eq!(e["class_uid"], 2003);
    }
    // A bad --fail-on value is a usage error.
    let out = rampart(&["audit", "containers", &bad.name, "--fail-on", "urgent"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn profile_commands_and_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let learning = dir.path().join("learn.json");
    let out = rampart(&[
        "profile",
        "learning-profile",
        "-o",
        learning.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&learning).expect("read")).expect("json");
    assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
    // Merging an allow-all profile is refused: it is not an allow-list.
    let out_path = dir.path().join("out.json");
    let out = rampart(&[
        "profile",
        "merge",
        learning.to_str().expect("utf8"),
        "-o",
        out_path.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("allows everything"), "{}", text(&out));
    // A malformed profile names the file, line and column.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n \"defaultAction\": \"SCMP_ACT_ERRNO\",\n \"syscalls\": [\n",
    )
    .expect("w");
    let out = rampart(&[
        "profile",
        "merge",
        bad.to_str().expect("utf8"),
        "-o",
        out_path.to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}:4:", bad.display())),
        "{}",
        text(&out)
    );
}

#[test]
fn profile_seccomp_learns_a_profile_the_container_runs_under() {
    testkit::require!(Root, Docker, Bpf);
    let img = testkit::busybox_image();
    let dir = tempfile::tempdir().expect("tmp");
    let work = "while :; do echo x > /tmp/f; cat /tmp/f >/dev/null; sleep 0.1; done";
    let c = TestContainer::run(
        "cli-learn",
        &[
            "--security-opt",
            "seccomp=unconfined",
            &img,
            "sh",
            "-c",
            work,
        ],
    );
    let profile = dir.path().join("p.json");
    let recording = dir.path().join("r.json");
    let out = rampart(&[
        "profile",
        "seccomp",
        &c.name,
        "--duration",
        "3s",
        "--restart",
        "-o",
        profile.to_str().expect("utf8"),
        "--recording",
        recording.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("learned"), "{}", text(&out));
    // The same workload under the profile keeps running.
    let opt = format!("seccomp={}", profile.display());
    let p = TestContainer::run(
        "cli-profiled",
        &["--security-opt", &opt, &img, "sh", "-c", work],
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        p.inspect("{{.State.Running}}"),
        "true",
        "{}",
        p.inspect("{{.State.Error}}")
    );
    // harden from the saved recording proposes the profile and a read-only root with /tmp.
    let out = rampart(&[
        "harden",
        &c.name,
        "--recording",
        recording.to_str().expect("utf8"),
        "--profile-out",
        dir.path().join("h.json").to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("--read-only --tmpfs /tmp:rw,nosuid,nodev,size=64m"),
        "{t}"
    );
    assert!(t.contains("security_opt:"), "{t}");
    // IO limits for the disk of Docker's data, from the recording saved and read back.
    assert!(t.contains("--device-write-bps /dev/"), "{t}");
    assert!(t.contains("blkio_config:"), "{t}");
}
