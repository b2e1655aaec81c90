//! The sensor against the real kernel: what it reports, what it filters in the kernel, and the
//! proc-connector fallback.

use std::process::Command;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_event::{Device, EventKind, SensorEvent};
use rampart_kernel::{
    Capabilities, ProcConnector, SensitiveNames, Sensor, SensorConfig, SensorPrograms,
};

fn collect(rx: &Receiver<Box<SensorEvent>>, for_ms: u64) -> Vec<SensorEvent> {
    let end = Instant::now() + Duration::from_millis(for_ms);
    let mut out = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Ok(e) = rx.recv_timeout(left) {
            out.push(*e);
        }
    }
    out
}

fn child_events(evs: &[SensorEvent], pid: u32) -> Vec<&SensorEvent> {
    evs.iter().filter(|e| e.origin.pid == pid).collect()
}

/// A sensor (no DNS, no payloads) for which every file in `dir` is sensitive.
fn sensor_watching(dir: &std::path::Path) -> (Sensor, Receiver<Box<SensorEvent>>) {
    let (tx, rx) = sync_channel(65536);
    let cfg = SensorConfig {
        dns: false,
        payload: false,
        sensitive: SensitiveNames::from_patterns(&[format!("{}/*", dir.display())]),
        ..SensorConfig::default()
    };
    let sensor = Sensor::start(&cfg, Arc::new(Device::default()), 7, tx).expect("sensor");
    (sensor, rx)
}

/// Builds `tests/data/NAME.c` with the C compiler (`$CC`, else `cc`) into a new temporary
/// directory; returns the directory (kept while the test runs) and the program.
fn build_test_program(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().expect("tempdir");
    let src = format!("{}/tests/data/{name}.c", env!("CARGO_MANIFEST_DIR"));
    let bin = work.path().join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run the C compiler");
    assert!(
        built.status.success(),
        "{cc} {src}: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    (work, bin)
}

#[test]
fn read_only_opens_are_filtered_in_the_kernel_but_sensitive_ones_are_not() {
    testkit::require!(Root, Bpf);
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("plain.txt");
    let secret_dir = dir.path().join(".ssh");
    std::fs::create_dir(&secret_dir).expect("mkdir");
    let key = secret_dir.join("id_ed25519");
    std::fs::write(&plain, "x").expect("write");
    std::fs::write(&key, "k").expect("write");
    let (tx, rx) = sync_channel(65536);
    let cfg = SensorConfig {
        dns: false,
        sensitive: SensitiveNames::from_patterns(&["/home/*/.ssh/*"]),
        ..SensorConfig::default()
    };
    let sensor = Sensor::start(&cfg, Arc::new(Device::default()), 7, tx).expect("sensor");
    let before = sensor.counters().filtered;
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for i in 1 2 3 4 5 6 7 8 9 10; do cat {p} >/dev/null; done; cat {k} >/dev/null; echo y >> {p}",
            p = plain.display(),
            k = key.display()
        ))
        .spawn()
        .expect("spawn");
    let sh_pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let evs = collect(&rx, 500);
    let opens: Vec<_> = evs
        .iter()
        .filter(|e| e.event.kind == EventKind::FileOpen)
        .filter_map(|e| {
            e.event
                .file
                .as_ref()
                .map(|f| (e.origin.pid, f.path.clone(), f.sensitive, f.is_write_open()))
        })
        .collect();
    let plain_s = plain.display().to_string();
    let key_s = key.display().to_string();
    assert!(
        !opens.iter().any(|(_, p, _, w)| p == &plain_s && !w),
        "read-only opens of an ordinary file never leave the kernel: {opens:?}"
    );
    assert!(
        opens.iter().any(|(_, p, s, _)| p == &key_s && *s),
        "sensitive read reported: {opens:?}"
    );
    assert!(
        opens
            .iter()
            .any(|(pid, p, _, w)| p == &plain_s && *w && *pid == sh_pid),
        "the append by the shell is reported: {opens:?}"
    );
    assert!(sensor.counters().filtered >= before + 10);
    assert_eq!(sensor.counters().drops_total(), 0);
    // exec, fork and exit of the shell's children, with the shell as parent
    let execs: Vec<_> = evs
        .iter()
        .filter(|e| e.event.kind == EventKind::ProcessExec && e.origin.ppid == sh_pid)
        .collect();
    assert_eq!(execs.len(), 11, "ten cats and one for the key");
    assert!(!child_events(&evs, sh_pid).is_empty());
    sensor.stop();
}

/// The three builds of the tracing programs (direct loads through `bpf_rdonly_cast`, probe
/// reads, raw tracepoints) make the same in-kernel decision on each open, including the cases
/// the fast filter could get wrong: a name that passes the length and first/last-byte filter
/// but is not listed, a name a rename gave to a dentry, a file reached through a symlink, a file
/// in a listed directory; and they read a connect's socket alike (protocol, family, the local
/// address and ephemeral port, v4 and v6). `Auto` picks the first build that loads on its own.
#[test]
fn every_build_of_the_programs_decides_and_reads_alike() {
    testkit::require!(Root, Bpf);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let aws = d.join(".aws");
    std::fs::create_dir(&aws).expect("mkdir");
    let long = "a-name-long-enough-to-live-outside-the-dentry-itself-0123456789";
    for f in ["plain.txt", "id_ed25519", "i00000000_9", "i000000009", long] {
        std::fs::write(d.join(f), "x").expect("write");
    }
    std::fs::write(aws.join("config"), "x").expect("write");
    std::os::unix::fs::symlink(d.join("id_ed25519"), d.join("innocent-link")).expect("symlink");
    let sensitive = SensitiveNames::from_patterns(&[
        "/root/.ssh/id_ed25519".to_string(),
        "/root/.ssh/id_ecdsa".to_string(),
        format!("{}/.aws/*", d.display()),
    ]);
    // Reported: the listed name, the listed name reached through a symlink, the listed name a
    // rename gave to a file created under a long name, a file in the listed directory.
    // Filtered: an ordinary name, and "i000000009" (length and first and last byte of
    // "id_ed25519", so only the map lookup refuses it).
    let script = format!(
        "cd {d} && for i in 1 2 3 4 5; do cat plain.txt i000000009 i00000000_9 >/dev/null; done; \
         cat id_ed25519 innocent-link .aws/config >/dev/null; \
         mv {long} id_ecdsa && cat id_ecdsa >/dev/null && mv id_ecdsa {long}",
        d = d.display()
    );
    // Connects (the socket reads of do_net): to listeners of this process, which the sensor
    // leaves out as its own; bash's /dev/tcp makes the connect from a child.
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").expect("listen v4");
    let v6 = std::net::TcpListener::bind("[::1]:0").ok();
    let mut targets = vec![v4.local_addr().expect("addr")];
    targets.extend(v6.as_ref().and_then(|l| l.local_addr().ok()));
    let connects = targets
        .iter()
        .map(|a| format!("exec 3<>/dev/tcp/{}/{}; exec 3>&-;", a.ip(), a.port()))
        .collect::<String>();
    let want: std::collections::BTreeSet<String> = ["id_ed25519", ".aws/config", "id_ecdsa"]
        .iter()
        .map(|f| d.join(f).display().to_string())
        .collect();
    let mut loaded = Vec::new();
    for build in [
        SensorPrograms::TpBtfKfunc,
        SensorPrograms::TpBtf,
        SensorPrograms::Raw,
    ] {
        let (tx, rx) = sync_channel(65536);
        let cfg = SensorConfig {
            dns: false,
            payload: false,
            sensitive: sensitive.clone(),
            programs: build,
            ..SensorConfig::default()
        };
        let sensor = match Sensor::start(&cfg, Arc::new(Device::default()), 7, tx) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("NOTE: the {} build does not load here: {e}", build.name());
                continue;
            }
        };
        assert_eq!(sensor.programs(), build);
        loaded.push(build);
        let before = sensor.counters().filtered;
        for (shell, text) in [("sh", &script), ("bash", &connects)] {
            let out = Command::new(shell)
                .arg("-c")
                .arg(text)
                .output()
                .expect(shell);
            assert!(
                out.status.success(),
                "{shell} -c {text}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let evs = collect(&rx, 500);
        for target in &targets {
            let seen = evs
                .iter()
                .filter(|e| e.event.kind == EventKind::NetConnect)
                .filter_map(|e| e.event.network.as_ref())
                .find(|n| {
                    n.dst
                        .as_ref()
                        .is_some_and(|d| d.ip == target.ip() && d.port == target.port())
                });
            let n = seen.unwrap_or_else(|| panic!("{}: no connect to {target}", build.name()));
            assert_eq!(n.protocol, "tcp", "{}: {n:?}", build.name());
            assert_eq!(
                n.family,
                if target.is_ipv4() { "inet" } else { "inet6" },
                "{}: {n:?}",
                build.name()
            );
            let src = n.src.as_ref().expect("the local end, read from the socket");
            assert_eq!(src.ip, target.ip(), "{}: {n:?}", build.name());
            assert!(
                src.port != 0 && src.port != target.port(),
                "{}: the local end's own (ephemeral) port: {n:?}",
                build.name()
            );
        }
        let read_only: std::collections::BTreeSet<String> = evs
            .iter()
            .filter(|e| e.event.kind == EventKind::FileOpen)
            .filter_map(|e| e.event.file.as_ref())
            .filter(|f| !f.is_write_open() && f.path.starts_with(&*d.to_string_lossy()))
            .map(|f| f.path.clone())
            .collect();
        assert_eq!(
            read_only,
            want,
            "{}: the read-only opens that left the kernel",
            build.name()
        );
        let filtered = sensor.counters().filtered - before;
        assert!(
            filtered >= 15,
            "{}: 15 ordinary read-only opens counted as filtered, got {filtered}",
            build.name()
        );
        assert_eq!(sensor.counters().drops_total(), 0);
        sensor.stop();
    }
    assert!(
        loaded.contains(&SensorPrograms::TpBtf) || loaded.contains(&SensorPrograms::Raw),
        "a BPF-capable host loads at least the probe-read builds: {loaded:?}"
    );
    let (tx, _rx) = sync_channel(16);
    let cfg = SensorConfig {
        dns: false,
        payload: false,
        ..SensorConfig::default()
    };
    let auto = Sensor::start(&cfg, Arc::new(Device::default()), 7, tx).expect("sensor");
    assert_eq!(
        Some(&auto.programs()),
        loaded.first(),
        "Auto loads the fastest build that loads by itself"
    );
    auto.stop();
}

#[test]
fn containers_only_mode_reports_no_host_process() {
    testkit::require!(Root, Bpf);
    let (tx, rx) = sync_channel(65536);
    let cfg = SensorConfig {
        containers_only: true,
        dns: false,
        ..SensorConfig::default()
    };
    let sensor = Sensor::start(&cfg, Arc::new(Device::default()), 8, tx).expect("sensor");
    let st = Command::new("sh")
        .args([
            "-c",
            "echo x > /tmp/rampart-host-only; rm /tmp/rampart-host-only",
        ])
        .status()
        .expect("sh");
    assert!(st.success());
    let evs = collect(&rx, 400);
    let own_mntns = std::fs::metadata("/proc/self/ns/mnt")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m) as u32)
        .expect("ns");
    assert!(
        evs.iter().all(|e| e.origin.mntns != own_mntns),
        "every reported task is outside the host mount namespace"
    );
    sensor.stop();
}

#[test]
fn probe_reports_what_loads() {
    testkit::require!(Root, Bpf);
    let caps = Capabilities::probe();
    assert!(caps.root && caps.btf);
    assert!(caps.ring_buffer.works());
    assert!(
        caps.raw_tracepoint.works(),
        "raw tracepoints load on every kernel Rampart supports"
    );
    let report = caps.report();
    for line in [
        "tp_btf",
        "fentry",
        "BPF-LSM",
        "cgroup_skb",
        "in-kernel kill",
        "net segmentation",
    ] {
        assert!(report.contains(line), "{line} missing from:\n{report}");
    }
}

#[test]
fn proc_connector_fallback_sees_exec_fork_and_exit() {
    testkit::require!(Root);
    let (tx, rx) = sync_channel(65536);
    let pc = ProcConnector::start(Arc::new(Device::default()), 9, tx).expect("proc connector");
    std::thread::sleep(Duration::from_millis(200));
    let child = Command::new("sh")
        .args(["-c", "sleep 0.2; exit 4"])
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(4));
    let evs = collect(&rx, 500);
    let mine = child_events(&evs, pid);
    assert!(
        mine.iter().any(|e| e.event.kind == EventKind::ProcessExec),
        "exec of sh"
    );
    let exit = mine
        .iter()
        .find(|e| e.event.kind == EventKind::ProcessExit)
        .expect("exit of sh");
    assert_eq!(exit.event.exit.map(|x| x.code), Some(4));
    assert!(
        evs.iter()
            .any(|e| e.event.kind == EventKind::ProcessFork && e.origin.pid == pid),
        "the shell forked sleep"
    );
    assert_eq!(pc.userspace_drops(), 0);
}

/// io_uring: a ring's IORING_OP_OPENAT opens a file with no open syscall, so the sensor cannot
/// report the open (the sys_exit hook never sees it; a plain `cat` of the same file is the
/// control that the name filter works). What it must report is the ring's creation, with the
/// entries and flags asked for, so that rules can flag a container working out of sight.
#[test]
fn an_io_uring_ring_is_reported_though_its_opens_are_not() {
    testkit::require!(Root, Bpf);
    let (work, bin) = build_test_program("io_uring_open");
    let secret_dir = work.path().join(".ssh");
    std::fs::create_dir(&secret_dir).expect("mkdir");
    let through_ring = secret_dir.join("via-ring");
    let through_cat = secret_dir.join("via-cat");
    std::fs::write(&through_ring, "k").expect("write");
    std::fs::write(&through_cat, "k").expect("write");
    let (sensor, rx) = sensor_watching(&secret_dir);
    let child = Command::new(&bin)
        .arg(&through_ring)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run io_uring_open");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "io_uring_open: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let cat = Command::new("cat").arg(&through_cat).output().expect("cat");
    assert!(cat.status.success());
    let evs = collect(&rx, 700);
    // One ring through the 64-bit entry (8 entries), one through int 0x80 (4 entries): both are
    // io_uring_setup with their arguments read from the entry's own registers.
    let ring = |entries: i64| {
        let ring = evs
            .iter()
            .find(|e| {
                e.event.kind == EventKind::PrivIoUring
                    && e.origin.pid == pid
                    && e.event.privilege.as_ref().and_then(|p| p.request) == Some(entries)
            })
            .unwrap_or_else(|| {
                panic!("no io_uring_setup event for {entries} entries from pid {pid}")
            });
        assert_eq!(ring.event.syscall.as_deref(), Some("io_uring_setup"));
        assert!(
            ring.event.result.is_some_and(|r| r >= 0),
            "{:?}",
            ring.event
        );
        let p = ring.event.privilege.as_ref().expect("privilege info");
        assert_eq!(p.flags, Some(16), "IORING_SETUP_CLAMP: {:?}", ring.event);
    };
    ring(8);
    if String::from_utf8_lossy(&out.stdout).contains("no-ia32") {
        eprintln!("ia32 emulation is off on this kernel: the int 0x80 ring is not tried");
    } else {
        ring(4);
    }
    let opened = |path: &std::path::Path| {
        let path = path.display().to_string();
        evs.iter().any(|e| {
            e.event.kind == EventKind::FileOpen
                && e.event.file.as_ref().is_some_and(|f| f.path == path)
        })
    };
    assert!(opened(&through_cat), "the control open was not reported");
    assert!(
        !opened(&through_ring),
        "an open through the ring was reported: update ARCHITECTURE.md and docs/events.md"
    );
    assert_eq!(sensor.counters().drops_total(), 0);
    sensor.stop();
}

/// An attacker chooses how to open a file: every spelling the kernel accepts (openat, open and
/// creat through syscall(2), openat2, a path relative to a directory descriptor, a file handle
/// with no path at all, and the ia32 entry through int 0x80 from a 64-bit process, whose
/// syscall numbers mean other calls on x86_64) must reach the sensor as an open of that file.
/// io_uring's IORING_OP_OPENAT does not pass through a syscall exit and is not reported (see
/// ARCHITECTURE.md, "Sensor hooks").
#[test]
fn every_spelling_of_open_is_reported() {
    testkit::require!(Root, Bpf);
    let (work, bin) = build_test_program("open_spellings");
    let secret_dir = work.path().join(".ssh");
    std::fs::create_dir(&secret_dir).expect("mkdir");
    let readonly = [
        "via-openat",
        "via-open",
        "via-openat2",
        "via-dirfd",
        "via-handle",
        "via-int80-open",
        "via-int80-openat",
        "via-int80-openat2",
    ];
    for name in readonly {
        std::fs::write(secret_dir.join(name), "k").expect("write");
    }
    let (sensor, rx) = sensor_watching(&secret_dir);
    let out = Command::new(&bin)
        .arg(work.path())
        .output()
        .expect("run open_spellings");
    assert!(
        out.status.success(),
        "open_spellings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let no_ia32 = String::from_utf8_lossy(&out.stdout).contains("no-ia32");
    let evs = collect(&rx, 700);
    let opens: Vec<(String, Option<String>, bool)> = evs
        .iter()
        .filter(|e| e.event.kind == EventKind::FileOpen)
        .filter_map(|e| {
            e.event.file.as_ref().map(|f| {
                (
                    f.path.clone(),
                    e.event.syscall.as_ref().map(|s| s.to_string()),
                    f.sensitive,
                )
            })
        })
        .collect();
    let mut expected: Vec<(&str, &str)> = vec![
        ("via-openat", "openat"),
        ("via-open", "open"),
        ("via-creat", "creat"),
        ("via-openat2", "openat2"),
        ("via-dirfd", "openat"),
        ("via-handle", "open_by_handle_at"),
    ];
    if no_ia32 {
        eprintln!("ia32 emulation is off on this kernel: the int 0x80 spellings are not tried");
    } else {
        expected.extend([
            ("via-int80-open", "open"),
            ("via-int80-openat", "openat"),
            ("via-int80-openat2", "openat2"),
        ]);
    }
    let mut missing = Vec::new();
    for (name, syscall) in &expected {
        let path = secret_dir.join(name).display().to_string();
        let seen = opens
            .iter()
            .any(|(p, s, sens)| p == &path && s.as_deref() == Some(*syscall) && *sens);
        if !seen {
            missing.push(format!("{name} ({syscall})"));
        }
    }
    assert!(
        missing.is_empty(),
        "opens not reported: {missing:?}; reported: {opens:?}"
    );
    assert_eq!(sensor.counters().drops_total(), 0);
    sensor.stop();
}
