//! `rampart profile apparmor`: profiles learned from real containers under the real sensor
//! compile with the real `apparmor_parser` (Debian's `apparmor` package, `-Q`: this kernel has no
//! AppArmor, so nothing is loaded and no container runs under a profile here; on a kernel with
//! AppArmor, `apparmor_parser -r` and `--security-opt apparmor=NAME` do), and `--check` finds an
//! access planted after learning that the profile refuses, while the workload's own behaviour
//! passes.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{rampart, text};
use testkit::TestContainer;

/// Compiles `profile` with the real parser, loading nothing (`-Q`) and using no cache (`-K`).
fn compiles(profile: &Path) {
    let out = Command::new("apparmor_parser")
        .args(["-Q", "-K"])
        .arg(profile)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            testkit::skip(
                "apparmor_cli",
                &format!(
                    "apparmor_parser cannot run ({e}); scripts/setup installs the apparmor package"
                ),
            );
            return;
        }
    };
    assert!(
        out.status.success(),
        "apparmor_parser refused {}:\n{}\n{}",
        profile.display(),
        text(&out),
        std::fs::read_to_string(profile).unwrap_or_default()
    );
}

/// Learns a profile of `c` over `secs` seconds.
fn learn(c: &TestContainer, secs: u32, out: &Path) -> String {
    let o = rampart(&[
        "profile",
        "apparmor",
        &c.name,
        "--duration",
        &format!("{secs}s"),
        "-o",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::read_to_string(out).expect("profile written")
}

/// Runs `cmd` in `c` every 300 ms while the returned guard lives (so that some runs fall inside
/// a recording whatever the sensor's start-up time).
struct Repeat(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);
impl Repeat {
    fn start(container: &str, cmd: &str) -> Repeat {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name, cmd) = (stop.clone(), container.to_string(), cmd.to_string());
        let h = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = testkit::docker(["exec", &name, "sh", "-c", &cmd]);
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Repeat(stop, Some(h))
    }
}
impl Drop for Repeat {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn learned_profiles_of_real_workloads_compile_and_the_check_finds_a_planted_access() {
    testkit::require!(Root, Docker, Bpf);
    let busybox = testkit::busybox_image();
    let debian = testkit::debian_image();
    let dir = tempfile::tempdir().expect("tmp");

    // A web server with an access log it writes, and clients, all busy while recorded.
    let web = TestContainer::run(
        "aa-web",
        &[
            &busybox,
            "sh",
            "-c",
            "mkdir -p /www /var/log/web && echo hello > /www/index.html; \
             (while true; do wget -q -O /dev/null http://127.0.0.1:8080/ && date >> /var/log/web/access.log; sleep 0.2; done) & \
             exec httpd -f -p 8080 -h /www",
        ],
    );
    // A shell job: scratch files with made-up names, reports named by the time.
    let job = TestContainer::run(
        "aa-job",
        &[
            &busybox,
            "sh",
            "-c",
            "mkdir -p /data/out && while true; do t=$(mktemp); date > $t; \
             awk '{print toupper($0)}' $t > /data/out/report-$(date +%s%N).txt; rm -f $t; \
             ls /data/out | head -n 1 >/dev/null; sleep 0.2; done",
        ],
    );
    // A database-like writer in the Debian image (dash, coreutils): a data file, a pid file.
    let db = TestContainer::run(
        "aa-db",
        &[
            &debian,
            "sh",
            "-c",
            "mkdir -p /var/lib/db && while true; do echo row >> /var/lib/db/table.dat; \
             echo $$ > /run/db.pid; /bin/sleep 0.2; done",
        ],
    );
    std::thread::sleep(Duration::from_secs(1));
    // A workload that did not stay up is a broken test set-up, not a recording error: say how it
    // ended (a CI run once found aa-web already stopped here).
    for c in [&web, &job, &db] {
        if c.inspect("{{.State.Running}}").trim() != "true" {
            let logs = testkit::docker(["logs", &c.name]);
            panic!(
                "{} is not running 1 s after start: {}\nlogs: {}{}",
                c.name,
                c.inspect("{{json .State}}"),
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
    }

    let web_p = dir.path().join("web.profile");
    let job_p = dir.path().join("job.profile");
    let db_p = dir.path().join("db.profile");
    let web_text = learn(&web, 6, &web_p);
    let job_text = learn(&job, 6, &job_p);
    let db_text = learn(&db, 6, &db_p);
    for p in [&web_p, &job_p, &db_p] {
        compiles(p);
    }

    // What each did is in its profile, generalised where names are made up.
    assert!(web_text.contains("/bin/busybox ix,"), "{web_text}");
    assert!(
        web_text.contains("/var/log/web/access*.log* rwk,")
            || web_text.contains("/var/log/web/access.log rwk,"),
        "{web_text}"
    );
    assert!(web_text.contains("network inet stream,"), "{web_text}");
    assert!(web_text.contains("deny /etc/shadow rwklx,"), "{web_text}");
    assert!(job_text.contains("/tmp/** rwk,"), "{job_text}");
    assert!(
        job_text.contains("/data/out/*.txt rwk,") || job_text.contains("/data/out/* rwk,"),
        "{job_text}"
    );
    assert!(db_text.contains("/var/lib/db/table.dat rwk,"), "{db_text}");
    assert!(db_text.contains("/run/db.pid rwk,"), "{db_text}");
    assert!(
        db_text.contains("/usr/bin/sleep ix,") || db_text.contains("/bin/sleep ix,"),
        "{db_text}"
    );
    assert!(
        !db_text.contains("network "),
        "the writer uses no socket: {db_text}"
    );

    // The job's own behaviour, recorded again, is all allowed (made-up names included).
    let again = rampart(&[
        "profile",
        "apparmor",
        &job.name,
        "--duration",
        "5s",
        "--check",
        &job_p.display().to_string(),
    ]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("nothing of what"), "{}", text(&again));

    // Planted after learning: a write to /etc and a read of /etc/shadow in the web container.
    let plant = Repeat::start(
        &web.name,
        "echo x > /etc/planted; cat /etc/shadow > /dev/null; rm -f /etc/planted",
    );
    let check = rampart(&[
        "profile",
        "apparmor",
        &web.name,
        "--duration",
        "6s",
        "--check",
        &web_p.display().to_string(),
    ]);
    drop(plant);
    let out = text(&check);
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(out.contains("write /etc/planted"), "{out}");
    assert!(
        out.contains("read /etc/shadow") && out.contains("refused by `deny /etc/shadow rwklx`"),
        "{out}"
    );
    assert!(
        !out.contains("/var/log/web/access"),
        "the learned behaviour is not reported: {out}"
    );
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = dir.path().join("events.jsonl");
    let from_events = |flag: &str, file: &Path| {
        let (e, f) = (events.display().to_string(), file.display().to_string());
        let o = rampart(&["profile", "apparmor", "c", "--events", &e, flag, &f]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        text(&o)
    };
    // A line that is not an event: the file and line are named.
    std::fs::write(&events, "{\"type\": \"file.open\"}\nnot json\n").expect("write");
    let out = from_events("-o", &dir.path().join("p"));
    assert!(out.contains("events.jsonl:"), "{out}");
    // A rule without its comma: the profile and line are named.
    let profile = dir.path().join("bad.profile");
    std::fs::write(&profile, "profile x {\n  /etc/passwd r\n}\n").expect("write");
    std::fs::write(&events, "").expect("write");
    let out = from_events("--check", &profile);
    assert!(out.contains("bad.profile: line 2"), "{out}");
}

/// `--events`: a large file of agent output (other containers' events interleaved) is read line
/// by line; the container is picked by name, id or id prefix; every one of its events counts,
/// and each distinct access reaches the profile once.
#[test]
fn events_files_are_filtered_by_container_and_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let events = dir.path().join("events.jsonl");
    let line = |id: &str, name: &str, path: &str, flags: u32| {
        serde_json::json!({
            "class_uid": 1001, "type": "file.open", "time_ns": 1, "time": 0,
            "metadata": {"uid": "a-1", "version": "1.3.0"}, "device": {"hostname": "vm"},
            "container": {"uid": id, "name": name, "runtime": "docker"},
            "process": {"pid": 7, "uid": 0, "name": "app", "exe": "/usr/bin/app"},
            "file": {"path": path, "flags": flags}
        })
        .to_string()
    };
    let web = format!("{}abcd", "c0ffee".repeat(10));
    let other = format!("{}abcd", "beef00".repeat(10));
    let mut lines = String::new();
    for i in 0..10_000 {
        lines.push_str(&line(&web, "web", "/var/log/app.log", 0o2101));
        lines.push('\n');
        lines.push_str(&line(&other, "db", &format!("/data/other-{i}"), 0o101));
        lines.push('\n');
    }
    lines.push_str(&line(&web, "web", "/etc/shadow", 0));
    lines.push('\n');
    std::fs::write(&events, lines).expect("write");
    for who in ["web", web.as_str(), &web[..12]] {
        let profile = dir.path().join("web.profile");
        let o = rampart(&[
            "profile",
            "apparmor",
            who,
            "--events",
            &events.display().to_string(),
            "-o",
            &profile.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let p = std::fs::read_to_string(&profile).expect("profile");
        assert!(p.contains("over 10001 events"), "{p}");
        assert!(p.contains("/var/log/app*.log* rwk,"), "{p}");
        assert!(!p.contains("/data/"), "another container's writes: {p}");
        assert!(p.contains("# not denied, it used it: /etc/shadow"), "{p}");
    }
}
