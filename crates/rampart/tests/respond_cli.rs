//! `rampart policy`, `rampart respond` and `rampart forensics` end to end: the binary against
//! real containers on a network the test creates, with private pin and state directories.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use testkit::{busybox_image, docker, docker_ok, unique, TestContainer};

struct Env {
    pin: PathBuf,
    state: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            pin: PathBuf::from("/sys/fs/bpf/rampart-test").join(unique("cli")),
            state: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn rampart(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(args)
            .env("RAMPART_PIN_DIR", &self.pin)
            .env("RAMPART_STATE_DIR", self.state.path())
            .output()
            .unwrap()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["policy", "reset", "--all"])
            .env("RAMPART_PIN_DIR", &self.pin)
            .env("RAMPART_STATE_DIR", self.state.path())
            .output();
        let _ = std::fs::remove_dir(&self.pin);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = docker(["network", "rm", &self.0]);
    }
}

const SERVER: &str = "nc -ll -p 8080 -e echo hello & nc -ll -p 22 -e echo hello & wait";

fn ip_of(c: &TestContainer) -> String {
    c.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
}

fn reaches(from: &TestContainer, to: &TestContainer, port: u16) -> bool {
    let out = from.exec(&["sh", "-c", &format!("echo | nc -w 2 {} {port}", ip_of(to))]);
    String::from_utf8_lossy(&out.stdout).contains("hello")
}

#[test]
fn policy_check_apply_test_show_and_an_invalid_file_changes_nothing() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let img = busybox_image();
    let net = Network(unique("rp-cli-net"));
    docker_ok(["network", "create", "--internal", &net.0]);
    let run = |p: &str| TestContainer::run(p, &["--network", &net.0, &img, "sh", "-c", SERVER]);
    let (front, back, other) = (run("cli-front"), run("cli-back"), run("cli-other"));
    std::thread::sleep(Duration::from_millis(300));
    let policy = env.file(
        "shop.yaml",
        &format!(
            "name: shop\nselectors:\n  frontend:\n    name: {}\n    default: {{egress: deny}}\n  backend:\n    name: {}\n    default: {{ingress: deny}}\nnetwork:\n  - frontend -> backend tcp/8080 allow\nexec:\n  - \"* deny name xmrig\"\n",
            front.name, back.name
        ),
    );
    let out = env.rampart(&["policy", "check", &policy]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 selectors, 1 network rules, 1 exec rules"),
        "{}",
        text(&out)
    );

    let out = env.rampart(&["policy", "apply", &policy]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("{} (", front.name)) && t.contains("frontend"),
        "{t}"
    );
    assert!(
        t.contains("not selected (untouched)") && t.contains(&other.name),
        "{t}"
    );
    assert!(t.contains("before the first instruction"), "{t}");
    assert!(
        reaches(&front, &back, 8080)
            && !reaches(&front, &back, 22)
            && !reaches(&other, &back, 8080)
    );

    let to = format!("{}:8080", back.name);
    let out = env.rampart(&[
        "policy",
        "test",
        &policy,
        "--from",
        &front.name,
        "--to",
        &to,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("allowed")
            && text(&out).contains("rule 1 `frontend -> backend tcp/8080 allow`"),
        "{}",
        text(&out)
    );
    let to22 = format!("{}:22/tcp", back.name);
    let out = env.rampart(&[
        "policy",
        "test",
        &policy,
        "--from",
        &front.name,
        "--to",
        &to22,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("DENIED"), "{}", text(&out));

    let show = env.rampart(&["policy", "show"]);
    assert!(show.status.success(), "{}", text(&show));
    assert!(
        text(&show).contains("policy \"shop\"") && text(&show).contains("selectors backend"),
        "{}",
        text(&show)
    );

    // Invalid files: exit 2 naming file:line, and nothing changes.
    let bad = env.file(
        "bad.yaml",
        &std::fs::read_to_string(&policy)
            .unwrap()
            .replace("tcp/8080 allow", "tcp/8080 permit"),
    );
    let out = env.rampart(&["policy", "apply", &bad]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("bad.yaml:10: network rule 1"),
        "{}",
        text(&out)
    );
    let bad2 = env.file(
        "bad2.yaml",
        "selectors:\n  a: {name: x}\nnetwork:\n  - a -> nowhere tcp allow\n",
    );
    let out = env.rampart(&["policy", "apply", &bad2]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("bad2.yaml:4") && text(&out).contains("`nowhere`"),
        "{}",
        text(&out)
    );
    assert_eq!(
        text(&env.rampart(&["policy", "show"])),
        text(&show),
        "an invalid policy changed nothing"
    );
    assert!(reaches(&front, &back, 8080) && !reaches(&front, &back, 22));

    let out = env.rampart(&["policy", "reset"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(reaches(&front, &back, 22) && reaches(&other, &back, 8080));
    assert!(text(&env.rampart(&["policy", "show"])).contains("no policy applied"));
}

#[test]
fn respond_isolate_release_kill_and_forensics_verify() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let img = busybox_image();
    let net = Network(unique("rp-cli-net"));
    docker_ok(["network", "create", "--internal", &net.0]);
    let a = TestContainer::run(
        "cli-iso-a",
        &["--network", &net.0, &img, "sh", "-c", SERVER],
    );
    let b = TestContainer::run(
        "cli-iso-b",
        &["--network", &net.0, &img, "sh", "-c", SERVER],
    );
    std::thread::sleep(Duration::from_millis(300));

    let out = env.rampart(&["respond", "isolate", &a.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!reaches(&b, &a, 8080) && !reaches(&a, &b, 8080));
    assert!(text(&env.rampart(&["policy", "show"])).contains("ISOLATED"));
    let out = env.rampart(&["respond", "release", &a.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        reaches(&b, &a, 8080) && reaches(&a, &b, 8080),
        "release restores connectivity"
    );

    // Forensics, then verify, then tamper.
    a.exec(&["sh", "-c", "echo evil > /tmp/dropped"]);
    let bundle = env.dir.path().join("a.tar.zst");
    let key = env.dir.path().join("agent.key");
    let out = env.rampart(&[
        "respond",
        "forensics",
        &a.name,
        "-o",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--min-free-mib",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let pubkey = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    let out = env.rampart(&[
        "forensics",
        "verify",
        bundle.to_str().unwrap(),
        "--key",
        pubkey.trim(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("OK: every entry matches"),
        "{}",
        text(&out)
    );
    let altered = env.dir.path().join("altered.tar.zst");
    tamper(&bundle, &altered, "fs/upper/tmp/dropped");
    let out = env.rampart(&["forensics", "verify", altered.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("ALTERED: fs/upper/tmp/dropped: altered"),
        "{}",
        text(&out)
    );
    let junk = env.file("junk.tar.zst", "not a bundle");
    assert_eq!(
        env.rampart(&["forensics", "verify", &junk]).status.code(),
        Some(2)
    );

    // Kill: every process of the container.
    let out = env.rampart(&["respond", "kill", &b.name]);
    assert!(out.status.success(), "{}", text(&out));
    let mut stopped = false;
    for _ in 0..50 {
        if b.inspect("{{.State.Running}}") == "false" {
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(stopped, "the container's processes are gone");
    let out = env.rampart(&["respond", "isolate", "no-such-container-xyz"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

fn tamper(src: &Path, dst: &Path, name: &str) {
    let dec = zstd::Decoder::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut ar = tar::Archive::new(dec);
    let enc = zstd::Encoder::new(std::fs::File::create(dst).unwrap(), 3).unwrap();
    let mut out = tar::Builder::new(enc);
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut h = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if path == name {
            data = b"harmless\n".to_vec();
            h.set_size(data.len() as u64);
        }
        out.append_data(&mut h, &path, data.as_slice()).unwrap();
    }
    out.into_inner().unwrap().finish().unwrap();
}

/// A mount namespace of its own where `/sys/fs/bpf` is not mounted, as on a fresh boot without
/// systemd; it lives as long as this value (the holder process keeps it).
struct FreshBootNamespace(std::process::Child);

impl FreshBootNamespace {
    fn new() -> FreshBootNamespace {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .spawn()
            .unwrap();
        let ns = FreshBootNamespace(holder);
        // Wait until the holder runs in its own namespace, then unmount every bpffs stacked on
        // /sys/fs/bpf there (the host's stays as it is).
        let own = std::fs::read_link("/proc/self/ns/mnt").unwrap();
        for _ in 0..100 {
            if std::fs::read_link(format!("/proc/{}/ns/mnt", ns.0.id())).is_ok_and(|l| l != own) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..8 {
            if ns.fs_type("/sys/fs/bpf") != "bpf_fs" {
                break;
            }
            ns.run("umount", &["/sys/fs/bpf"]);
        }
        assert_ne!(ns.fs_type("/sys/fs/bpf"), "bpf_fs", "bpffs still mounted");
        ns
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let pid = self.0.id().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", program])
            .args(args)
            .output()
            .unwrap()
    }

    fn fs_type(&self, path: &str) -> String {
        let out = self.run("stat", &["-f", "-c", "%T", path]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn rampart(&self, env: &Env, args: &[&str]) -> Output {
        let pid = self.0.id().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-m", "--", env!("CARGO_BIN_EXE_rampart")])
            .args(args)
            .env("RAMPART_PIN_DIR", &env.pin)
            .env("RAMPART_STATE_DIR", env.state.path())
            .output()
            .unwrap()
    }
}

impl Drop for FreshBootNamespace {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue: on a machine without systemd `/sys/fs/bpf` is not mounted and `respond isolate`
/// failed with "No such file or directory" (three times over), although isolation needs no
/// Rampart process. The command mounts bpffs itself, loads and pins what it needs, and a
/// directory it must not mount over gets one line saying what to do.
#[test]
fn respond_isolate_and_release_work_on_a_fresh_boot_without_bpffs_mounted() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let img = busybox_image();
    let net = Network(unique("rp-fresh-net"));
    docker_ok(["network", "create", "--internal", &net.0]);
    let a = TestContainer::run(
        "cli-fresh-a",
        &["--network", &net.0, &img, "sh", "-c", SERVER],
    );
    let b = TestContainer::run(
        "cli-fresh-b",
        &["--network", &net.0, &img, "sh", "-c", SERVER],
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        reaches(&b, &a, 8080),
        "the containers talk before isolation"
    );

    let ns = FreshBootNamespace::new();
    let out = ns.rampart(&env, &["respond", "isolate", &a.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        ns.fs_type("/sys/fs/bpf"),
        "bpf_fs",
        "the command mounted bpffs"
    );
    assert!(
        !reaches(&b, &a, 8080) && !reaches(&a, &b, 8080),
        "isolation cuts the container's connections"
    );
    let out = ns.rampart(&env, &["respond", "release", &a.name]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        reaches(&b, &a, 8080) && reaches(&a, &b, 8080),
        "release restores connectivity"
    );
    let out = ns.rampart(&env, &["policy", "reset", "--all"]);
    assert!(out.status.success(), "{}", text(&out));

    // A pin directory on a filesystem that is not bpffs, and not under /sys/fs/bpf: refused
    // with the command that fixes it, said once.
    let elsewhere = env.dir.path().join("pins");
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["respond", "isolate", &a.name])
        .env("RAMPART_PIN_DIR", &elsewhere)
        .env("RAMPART_STATE_DIR", env.state.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("not on a BPF filesystem") && t.contains("mount -t bpf bpf"),
        "{t}"
    );
    assert_eq!(t.matches("not on a BPF filesystem").count(), 1, "{t}");
    assert!(reaches(&b, &a, 8080), "a refused isolate changes nothing");
}
