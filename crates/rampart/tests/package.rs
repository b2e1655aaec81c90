//! Packaging (issue 10): the `.deb` from `scripts/package` installed, upgraded and purged in the
//! debootstrap Debian image; its systemd units checked by `systemd-analyze verify`; the static
//! musl binary run in the busybox image (no libc); an on-disk queue of format version 1 (a
//! committed fixture) delivered in full by the current shipper.
//!
//! The package is built from this test's own cargo build of `rampart` (`CARGO_BIN_EXE_rampart`,
//! `scripts/package --binary ... --fast`), so no release build happens inside the tests. The
//! static binary is built once by `scripts/test` (`cargo build --target
//! x86_64-unknown-linux-musl`, before the tests); here it is only run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use testkit::{busybox_image, debian_image, docker_ok, TestContainer};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds the package from this test's binary into `dir`; returns the .deb's path.
fn build_deb(dir: &Path) -> PathBuf {
    let out = Command::new(repo_root().join("scripts/package"))
        .args(["--fast", "--binary", env!("CARGO_BIN_EXE_rampart"), "--out"])
        .arg(dir)
        .output()
        .expect("run scripts/package");
    let stdout = ok(out, "scripts/package");
    let deb = PathBuf::from(stdout.lines().last().expect("deb path").trim());
    assert!(deb.exists(), "{} missing", deb.display());
    deb
}

/// Files the package installs, with their mode and owner.
const INSTALLED: &[(&str, &str)] = &[
    ("/usr/bin/rampart", "755 root:root"),
    ("/lib/systemd/system/rampart-agent.service", "644 root:root"),
    (
        "/lib/systemd/system/rampart-server.service",
        "644 root:root",
    ),
    ("/lib/systemd/system/rampart-authz.service", "644 root:root"),
    ("/etc/rampart/agent.yaml", "644 root:root"),
    ("/etc/rampart/server.yaml", "644 root:root"),
    ("/etc/rampart/rules/default.yaml", "644 root:root"),
    ("/etc/rampart/rules/local.yaml", "644 root:root"),
    ("/etc/rampart/policies/example.yaml", "644 root:root"),
    ("/etc/rampart/playbooks/crypto-miner.yaml", "644 root:root"),
    ("/var/lib/rampart", "700 root:root"),
    ("/var/lib/rampart-server", "700 rampart:rampart"),
    ("/usr/share/man/man1/rampart.1.gz", "644 root:root"),
    ("/usr/share/man/man1/rampart-agent.1.gz", "644 root:root"),
    (
        "/usr/share/man/man1/rampart-config-check.1.gz",
        "644 root:root",
    ),
    (
        "/usr/share/bash-completion/completions/rampart",
        "644 root:root",
    ),
    (
        "/usr/share/zsh/vendor-completions/_rampart",
        "644 root:root",
    ),
    (
        "/usr/share/fish/vendor_completions.d/rampart.fish",
        "644 root:root",
    ),
    ("/usr/share/doc/rampart/copyright", "644 root:root"),
];

/// Every path of the container's root filesystem (not /proc, /sys, /dev, the package mount).
fn snapshot(c: &TestContainer) -> Vec<String> {
    let out = c.exec(&[
        "sh",
        "-c",
        "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /pkg -o -path /run \\) -prune -o -print | sort",
    ]);
    ok(out, "find")
        .lines()
        .filter(|l| {
            // dpkg's own bookkeeping changes with any install and is not the package's; so
            // are the backups useradd/userdel keep of the user databases (the rampart user
            // itself is gone after purge: checked below).
            !l.starts_with("/var/log/")
                && !matches!(
                    *l,
                    "/etc/passwd-" | "/etc/group-" | "/etc/shadow-" | "/etc/gshadow-"
                )
                && !l.starts_with("/var/lib/dpkg/")
                && !l.starts_with("/var/cache/")
        })
        .map(String::from)
        .collect()
}

#[test]
fn deb_installs_upgrades_keeps_state_and_purges_without_residue() {
    testkit::require!(Root, Docker);
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(dir.path());
    let name = deb
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mount = format!("{}:/pkg:ro", dir.path().display());
    let c = TestContainer::run(
        "pkg-deb",
        &["-v", &mount, &debian_image(), "sleep", "infinity"],
    );
    let before = snapshot(&c);
    let pkg = format!("/pkg/{name}");

    ok(c.exec(&["dpkg", "-i", &pkg]), "dpkg -i");
    for (path, want) in INSTALLED {
        let got = ok(c.exec(&["stat", "-c", "%a %U:%G", path]), path);
        assert_eq!(got.trim(), *want, "{path}");
    }
    let version = ok(c.exec(&["rampart", "--version"]), "rampart --version");
    assert_eq!(
        version.trim(),
        format!("rampart {}", env!("CARGO_PKG_VERSION"))
    );
    // The shipped configuration is valid as shipped, and the unit's ExecStartPre passes.
    let checked = ok(
        c.exec(&[
            "rampart",
            "config",
            "check",
            "/etc/rampart/agent.yaml",
            "/etc/rampart/server.yaml",
            "/etc/rampart/rules/default.yaml",
            "/etc/rampart/rules/local.yaml",
            "/etc/rampart/policies/example.yaml",
            "/etc/rampart/playbooks/crypto-miner.yaml",
        ]),
        "config check",
    );
    assert_eq!(checked.matches(": ok, ").count(), 6, "{checked}");
    let conffiles = ok(
        c.exec(&["dpkg-query", "--control-show", "rampart", "conffiles"]),
        "conffiles",
    );
    assert!(conffiles.contains("/etc/rampart/agent.yaml"), "{conffiles}");
    // Man pages and completions are real and name the subcommands.
    let fish = ok(
        c.exec(&["cat", "/usr/share/fish/vendor_completions.d/rampart.fish"]),
        "fish",
    );
    assert!(fish.contains("doctor") && fish.contains("agent"), "{fish}");
    let man = ok(
        c.exec(&["sh", "-c", "zcat /usr/share/man/man1/rampart-agent.1.gz"]),
        "man",
    );
    assert!(man.contains(".TH rampart-agent"), "{man}");

    // Upgrade (same package again: postinst configure with the old version): the queue and
    // keys stay, a key left readable by others is made 0600, an edited conffile is kept.
    ok(
        c.exec(&[
            "sh",
            "-c",
            "mkdir -p /var/lib/rampart/queue /var/lib/rampart/tls && echo seg > /var/lib/rampart/queue/seg-00000000000000000001.rq \
             && echo k > /var/lib/rampart/tls/agent.key && chmod 0644 /var/lib/rampart/tls/agent.key \
             && echo 'containers_only: true' >> /etc/rampart/agent.yaml \
             && rmdir /var/lib/rampart-server && mkdir -p /var/lib/rampart/server \
             && echo db > /var/lib/rampart/server/control.db",
        ]),
        "prepare upgrade",
    );
    ok(
        c.exec(&["dpkg", "-i", "--force-confold", &pkg]),
        "dpkg -i (upgrade)",
    );
    assert_eq!(
        ok(
            c.exec(&["cat", "/var/lib/rampart/queue/seg-00000000000000000001.rq"]),
            "queue"
        )
        .trim(),
        "seg"
    );
    assert_eq!(
        ok(
            c.exec(&["stat", "-c", "%a", "/var/lib/rampart/tls/agent.key"]),
            "key"
        )
        .trim(),
        "600"
    );
    let cfg = ok(c.exec(&["cat", "/etc/rampart/agent.yaml"]), "agent.yaml");
    assert!(cfg.contains("containers_only: true"), "{cfg}");
    // The server's state of an older version (root's, under the agent's directory) now
    // belongs to the server's own user, out of the agent's directory.
    assert_eq!(
        ok(
            c.exec(&[
                "stat",
                "-c",
                "%a %U:%G",
                "/var/lib/rampart-server",
                "/var/lib/rampart-server/control.db"
            ]),
            "server state"
        )
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap_or("").to_string())
        .collect::<Vec<_>>(),
        ["rampart:rampart", "rampart:rampart"]
    );
    assert!(!c
        .exec(&["test", "-e", "/var/lib/rampart/server"])
        .status
        .success());
    let user = ok(c.exec(&["getent", "passwd", "rampart"]), "rampart user");
    assert!(user.contains("/usr/sbin/nologin"), "{user}");

    // Remove keeps state and configuration; purge leaves the filesystem as it was.
    ok(c.exec(&["dpkg", "--remove", "rampart"]), "dpkg --remove");
    ok(
        c.exec(&["test", "-d", "/var/lib/rampart/queue"]),
        "state kept",
    );
    ok(
        c.exec(&["test", "-f", "/etc/rampart/agent.yaml"]),
        "config kept",
    );
    assert!(!c.exec(&["test", "-e", "/usr/bin/rampart"]).status.success());
    ok(c.exec(&["dpkg", "--purge", "rampart"]), "dpkg --purge");
    assert!(
        !c.exec(&["getent", "passwd", "rampart"]).status.success(),
        "purge removes the rampart user"
    );
    let after = snapshot(&c);
    let added: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(added.is_empty(), "purge left behind: {added:?}");
    let status = c.exec(&["dpkg-query", "-W", "rampart"]);
    assert!(
        !status.status.success(),
        "still known to dpkg: {}",
        text(&status)
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    // systemd is installed on the host (not PID 1 there); the units are verified against the
    // package's own files (`--root` = the extracted .deb, so ExecStart's /usr/bin/rampart is
    // the packaged binary) plus the host's standard targets they order against.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !testkit::in_ci(),
            "systemd-analyze missing (scripts/packages.txt: systemd)"
        );
        eprintln!("=== SKIPPED: systemd-analyze is not installed ===");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(dir.path());
    let root = dir.path().join("root");
    ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .output()
            .expect("dpkg-deb"),
        "dpkg-deb -x",
    );
    let targets = root.join("etc/systemd/system");
    std::fs::create_dir_all(&targets).expect("mkdir");
    for entry in std::fs::read_dir("/lib/systemd/system").expect("host units") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "target") {
            std::fs::copy(&p, targets.join(p.file_name().expect("name"))).expect("copy target");
        }
    }
    // ExecReload's /bin/kill comes from procps (Priority: important, on every Debian host), not
    // from the package: put the host's copy in the root so that verify finds it.
    std::fs::create_dir_all(root.join("bin")).expect("mkdir bin");
    std::fs::copy("/bin/kill", root.join("bin/kill")).expect("copy /bin/kill (procps)");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .args([
            "/lib/systemd/system/rampart-agent.service",
            "/lib/systemd/system/rampart-server.service",
            "/lib/systemd/system/rampart-authz.service",
        ])
        .output()
        .expect("systemd-analyze");
    // Unknown keys and bad values are only warnings for systemd-analyze: any output fails.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify: {}",
        text(&out)
    );
}

/// The static musl binary: `RAMPART_STATIC_BIN`, else the newest of the musl target's debug
/// build (what `scripts/test` builds: cheaper, and linked the same way) and release build (what
/// `scripts/package --static` ships).
fn static_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RAMPART_STATIC_BIN") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/rampart/target"))
        .join("x86_64-unknown-linux-musl");
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("rampart"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

#[test]
fn static_binary_runs_in_busybox_without_libc() {
    testkit::require!(Docker);
    let Some(bin) = static_binary() else {
        assert!(
            !testkit::in_ci(),
            "no static binary: scripts/test builds it (cargo build --target x86_64-unknown-linux-musl -p rampart)"
        );
        eprintln!("=== SKIPPED: no static binary (run scripts/package --static) ===");
        return;
    };
    let rules = repo_root().join("rules/default.yaml");
    let image = busybox_image();
    // No libc in the image: the binary must not need one.
    assert!(
        docker_ok([
            "run",
            "--rm",
            &image,
            "sh",
            "-c",
            "ls /lib /lib64 /usr/lib 2>/dev/null | grep -c 'libc\\|ld-' || true"
        ])
        .trim()
            == "0",
        "the busybox image has a libc"
    );
    let vol = format!("{}:/rampart:ro", bin.display());
    let rvol = format!("{}:/default.yaml:ro", rules.display());
    let version = docker_ok(["run", "--rm", "-v", &vol, &image, "/rampart", "--version"]);
    assert_eq!(version, format!("rampart {}", env!("CARGO_PKG_VERSION")));
    let check = docker_ok([
        "run",
        "--rm",
        "-v",
        &vol,
        "-v",
        &rvol,
        &image,
        "/rampart",
        "rules",
        "check",
        "/default.yaml",
    ]);
    assert!(
        check.contains("rules (") && check.contains("0 cannot fire"),
        "{check}"
    );
}

#[test]
fn static_binary_loads_its_embedded_bpf_programs() {
    testkit::require!(Root, Docker, Bpf);
    let Some(bin) = static_binary() else {
        assert!(
            !testkit::in_ci(),
            "no static binary: scripts/test builds it (cargo build --target x86_64-unknown-linux-musl -p rampart)"
        );
        eprintln!("=== SKIPPED: no static binary (run scripts/package --static) ===");
        return;
    };
    // Only the binary in a libc-less image: the probe programs come from the binary itself.
    // CAP_SYS_ADMIN covers BPF on every kernel (docker's --privileged is refused by some
    // sandboxed daemons); the kernel's BTF is mounted for CO-RE.
    let vol = format!("{}:/rampart:ro", bin.display());
    let probe = docker_ok([
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "-v",
        "/sys/kernel/btf:/sys/kernel/btf:ro",
        "-v",
        &vol,
        &busybox_image(),
        "/rampart",
        "agent",
        "--probe",
    ]);
    assert!(probe.contains("ring buffer       yes"), "{probe}");
    assert!(probe.contains("tp_btf            yes"), "{probe}");
    assert!(probe.contains("detection         yes, ebpf"), "{probe}");
}

/// Queue fixture written by the on-disk format version 1 (the only version so far): two
/// segments, an output `file` that had acknowledged the first 5 of 20 records.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/queue-v1")
}

fn fixture_record(i: u64) -> String {
    serde_json::json!({
        "type": "process.exec",
        "time_ns": 1_764_000_000_000_000_000u64 + i,
        "severity_id": 1,
        "metadata": {"uid": format!("fixture-{i:04}"), "version": "1.4.0"},
        "device": {"hostname": "vps-old"},
        "process": {"pid": 1000 + i, "name": "sh", "cmd_line": format!("sh -c 'echo {i}'")}
    })
    .to_string()
}

/// Rewrites the fixture (run with the version that defines the format, then commit the files):
/// `RAMPART_WRITE_QUEUE_FIXTURE=1 cargo test -p rampart --test package write_queue_fixture -- --ignored`
#[test]
#[ignore = "writes the committed fixture"]
fn write_queue_fixture() {
    use rampart_ship::queue::{BatchLimits, Queue, QueueConfig};
    assert!(std::env::var_os("RAMPART_WRITE_QUEUE_FIXTURE").is_some());
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = QueueConfig::new(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    {
        let q = Queue::open(&cfg, &["file"]).expect("open");
        let first: Vec<String> = (0..10).map(fixture_record).collect();
        q.append(&first).expect("append");
        q.sync().expect("sync");
        let mut r = q.reader("file").expect("reader");
        let batch = rt
            .block_on(r.next_batch(BatchLimits {
                max_records: 5,
                max_bytes: 1 << 20,
                linger: Duration::ZERO,
            }))
            .expect("batch");
        assert_eq!(batch.len(), 5);
        r.ack(batch[4].seq).expect("ack");
        q.close();
    }
    let q = Queue::open(&cfg, &["file"]).expect("reopen");
    let second: Vec<String> = (10..20).map(fixture_record).collect();
    q.append(&second).expect("append");
    q.sync().expect("sync");
    q.close();
}

#[test]
fn queue_of_format_v1_is_delivered_in_full_by_this_version() {
    let work = tempfile::tempdir().expect("tempdir");
    let qdir = work.path().join("queue");
    std::fs::create_dir(&qdir).expect("mkdir");
    let mut segments = 0;
    for e in std::fs::read_dir(fixture_dir()).expect("fixture (see write_queue_fixture)") {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        segments += usize::from(name.ends_with(".rq"));
        std::fs::copy(&p, qdir.join(&name)).expect("copy fixture");
    }
    assert_eq!(segments, 2, "the fixture has two segments");
    assert_eq!(
        std::fs::read_to_string(qdir.join("FORMAT")).expect("FORMAT"),
        "rampart-queue 1\n"
    );
    std::fs::set_permissions(&qdir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let out = work.path().join("delivered.jsonl");
    let cfg: rampart_ship::ShipConfig = serde_yaml::from_str(&format!(
        "queue: {{dir: {}}}\noutputs: [{{type: file, path: {}}}]",
        qdir.display(),
        out.display()
    ))
    .expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let device = std::sync::Arc::new(rampart_event::Device {
        hostname: "vps-new".into(),
        region: None,
    });
    let shipper = rampart_ship::start(&cfg, device, Vec::new(), rt.handle()).expect("start");
    rt.block_on(shipper.shutdown(Duration::from_secs(20)));
    let delivered: Vec<String> = std::fs::read_to_string(&out)
        .expect("delivered file")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["metadata"]["uid"].as_str().expect("uid").to_string()
        })
        .filter(|u| u.starts_with("fixture-"))
        .collect();
    // Records 0..5 were acknowledged by the old version; every other one arrives, in order.
    let expected: Vec<String> = (5..20).map(|i| format!("fixture-{i:04}")).collect();
    assert_eq!(delivered, expected);
}
