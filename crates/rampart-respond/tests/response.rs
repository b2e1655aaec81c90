//! Response actions against real containers: isolation and release, freeze and thaw, forensic
//! bundles of a live container (verification, tampering named, symlinks not followed), and
//! playbooks run by the Responder.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use sha2::Digest;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, ip_of, reaches, server, Env, Network};
use rampart_event::{Alert, Container, ContainerRuntime, EventId, EventKind, Priority, Process};
use rampart_kernel::enforce::NetPrefix;
use rampart_respond::forensics::{self, key::AgentKey, BundleLimits};
use rampart_respond::{actions, playbook, Responder, ResponderConfig, RuleActions};
use testkit::{busybox_image, TestContainer};

#[test]
fn isolate_then_release_restores_connectivity() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let net = Network::new();
    let a = server("rp-iso-a", &net);
    let b = server("rp-iso-b", &net);
    let c = server("rp-iso-c", &net);
    std::thread::sleep(Duration::from_millis(300));
    // An established connection from b to a that isolation must cut too.
    let long = b.exec(&[
        "sh",
        "-c",
        &format!(
            "(while true; do echo ping; sleep 0.2; done) | nc {} 8080 > /tmp/long.out 2>&1 &",
            ip_of(&a)
        ),
    ]);
    assert!(long.status.success());
    assert!(reaches(&b, &a, 8080) && reaches(&a, &c, 22));
    let mut e = env.enforcer();
    let facts = env.facts(&[&a]).remove(0);
    // Isolated, except for b.
    e.isolate(
        &facts,
        &[NetPrefix {
            addr: ip_of(&b),
            len: 32,
        }],
    )
    .unwrap();
    assert!(!reaches(&c, &a, 8080), "inbound from c dropped");
    assert!(!reaches(&a, &c, 22), "outbound to c refused");
    assert!(reaches(&b, &a, 8080), "the allow-list still passes");
    let st = e.status().unwrap();
    let s = st.containers.iter().find(|s| s.id == a.id).unwrap();
    assert!(s.isolated && s.attached);
    assert_eq!(s.isolate_allow, vec![format!("{}/32", ip_of(&b))]);
    let mut evs = Vec::new();
    assert!(eventually(|| {
        e.poll(&mut evs).unwrap();
        evs.iter()
            .any(|ev| ev.policy.as_ref().is_some_and(|p| p.reason == "isolated"))
    }));
    let ev = evs
        .iter()
        .find(|ev| ev.policy.as_ref().is_some_and(|p| p.reason == "isolated"))
        .unwrap();
    assert_eq!(ev.container.as_ref().unwrap().id, a.id);
    assert_eq!(ev.policy.as_ref().unwrap().policy, "isolation");

    // Full isolation (no allow-list) also cuts an established connection.
    e.isolate(&facts, &[]).unwrap();
    let size = |c: &TestContainer| {
        String::from_utf8_lossy(&c.exec(&["sh", "-c", "wc -c < /tmp/long.out"]).stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_millis(500));
    let s1 = size(&b);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        size(&b),
        s1,
        "nothing flows over the established connection"
    );
    assert!(!reaches(&b, &a, 8080));

    assert!(e.release(&a.id, false).unwrap());
    assert!(reaches(&c, &a, 8080) && reaches(&a, &c, 22) && reaches(&b, &a, 8080));
    assert!(e.status().unwrap().containers.is_empty());
    assert!(
        e.kernel().attached_cgroups().is_empty(),
        "nothing stays attached"
    );
    assert!(
        !e.release(&a.id, false).unwrap(),
        "a second release finds nothing"
    );
}

#[test]
fn freeze_and_thaw_a_container() {
    testkit::require!(Root, Docker);
    let env = Env::new();
    let img = busybox_image();
    let c = TestContainer::run(
        "rp-freeze",
        &[
            &img,
            "sh",
            "-c",
            "while true; do date +%s%N > /tmp/tick; sleep 0.05; done",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let f = env.facts(&[&c]).remove(0);
    let tick =
        || std::fs::read_to_string(format!("/proc/{}/root/tmp/tick", f.pid)).unwrap_or_default();
    actions::freeze(&f).unwrap();
    let t1 = tick();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(tick(), t1, "frozen: the loop does not advance");
    actions::thaw(&f).unwrap();
    assert!(eventually(|| tick() != t1), "thawed: it runs again");
}

fn rewrite_bundle(src: &Path, dst: &Path, change: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let dec = zstd::Decoder::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut ar = tar::Archive::new(dec);
    let enc = zstd::Encoder::new(std::fs::File::create(dst).unwrap(), 3).unwrap();
    let mut out = tar::Builder::new(enc);
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut h = entry.header().clone();
        if h.entry_type() == tar::EntryType::Symlink {
            let target = entry.link_name().unwrap().unwrap().into_owned();
            out.append_link(&mut h, &path, target).unwrap();
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if let Some(d) = change(&path, data) {
            h.set_size(d.len() as u64);
            out.append_data(&mut h, &path, d.as_slice()).unwrap();
        }
    }
    out.into_inner().unwrap().finish().unwrap();
}

fn entries(bundle: &Path) -> Vec<(String, Vec<u8>, Option<String>)> {
    let dec = zstd::Decoder::new(std::fs::File::open(bundle).unwrap()).unwrap();
    let mut ar = tar::Archive::new(dec);
    let mut out = Vec::new();
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((path, data, link));
    }
    out
}

#[test]
fn a_bundle_of_a_live_container_verifies_and_tampering_is_named() {
    testkit::require!(Root, Docker);
    let env = Env::new();
    let img = busybox_image();
    let dir = tempfile::tempdir().unwrap();
    // A canary on the host that a symlink in the container points at.
    let canary_dir = tempfile::tempdir().unwrap();
    let canary = canary_dir.path().join("host-secret");
    std::fs::write(&canary, "HOST-CANARY-4f1c9e").unwrap();
    let c = TestContainer::run(
        "rp-bundle",
        &[&img, "sh", "-c", "nc -ll -p 8080 -e echo hi & sleep 600"],
    );
    let script = format!(
        "echo dropped > /tmp/payload.sh && chmod +x /tmp/payload.sh && ln -s {} /tmp/evil-link \
         && ln -s / /tmp/root-link && rm /etc/group && head -c 300000 /dev/zero > /tmp/big.bin",
        canary.display()
    );
    assert!(c.exec(&["sh", "-c", &script]).status.success());
    std::thread::sleep(Duration::from_millis(200));
    let f = env.facts(&[&c]).remove(0);
    let key = AgentKey::load_or_create(&dir.path().join("agent.key")).unwrap();
    let out = dir.path().join("forensics/b.tar.zst");
    let limits = BundleLimits {
        max_file_bytes: 100_000,
        min_free_bytes: 1 << 20,
        ..BundleLimits::default()
    };
    let recent = vec![serde_json::json!({"type": "process.exec", "container": {"uid": c.id}})];
    // Issue 16: bundles hold process environments: 0600 in a 0700 directory, even when the
    // process runs with an open umask.
    // SAFETY: umask(2) has no memory effects; restored right after.
    let old_umask = unsafe { libc::umask(0) };
    let r = forensics::capture(&f, &recent, &key, &out, &limits);
    unsafe { libc::umask(old_umask) };
    let r = r.unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), 0o600, "bundle");
        assert_eq!(mode(out.parent().unwrap()), 0o700, "bundle directory");
    }
    assert!(r.processes >= 2, "{r:?}");
    assert!(
        r.truncated.iter().any(|t| t.contains("/tmp/big.bin")),
        "{:?}",
        r.truncated
    );

    let v = forensics::verify(&out, Some(&key.public_hex())).unwrap();
    assert!(v.ok(), "{:?}", v.problems());
    assert_eq!(v.container.as_ref().unwrap().id, c.id);

    let all = entries(&out);
    let get = |p: &str| {
        all.iter().find(|e| e.0 == p).unwrap_or_else(|| {
            panic!(
                "no {p} in {:?}",
                all.iter().map(|e| &e.0).collect::<Vec<_>>()
            )
        })
    };
    assert_eq!(get("fs/upper/tmp/payload.sh").1, b"dropped\n");
    // Symlinks are stored as their target text, never followed, never a link in the archive.
    assert_eq!(
        get("fs/upper/tmp/evil-link").1,
        canary.to_str().unwrap().as_bytes()
    );
    assert_eq!(get("fs/upper/tmp/root-link").1, b"/");
    assert!(all.iter().all(|e| e.2.is_none()));
    let manifest: forensics::Manifest = serde_json::from_slice(&get("manifest.json").1).unwrap();
    let link = manifest
        .files
        .iter()
        .find(|f| f.path == "fs/upper/tmp/evil-link")
        .unwrap();
    assert_eq!(link.link.as_deref(), Some(canary.to_str().unwrap()));
    assert_eq!(get("fs/upper/tmp/big.bin").1.len(), 100_000);
    assert!(
        all.iter()
            .all(|e| !String::from_utf8_lossy(&e.1).contains("HOST-CANARY-4f1c9e")),
        "a symlink was followed out of the container"
    );
    let changes: serde_json::Value = serde_json::from_slice(&get("fs/changes.json").1).unwrap();
    assert!(changes
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["path"] == "/etc/group" && c["kind"] == "deleted"));
    let procs: serde_json::Value =
        serde_json::from_slice(&get("container/processes.json").1).unwrap();
    let nc = procs
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "nc")
        .expect("nc in the process list");
    assert!(nc["cmdline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "8080"));
    assert!(
        nc["fds"].as_array().unwrap().iter().any(|f| f["socket"]
            .as_str()
            .is_some_and(|s| s.contains(":8080") && s.contains("LISTEN"))),
        "{nc}"
    );
    assert!(nc["exe_sha256"].as_str().is_some_and(|h| h.len() == 64));
    let exes: serde_json::Value =
        serde_json::from_slice(&get("container/executables.json").1).unwrap();
    assert!(
        exes.as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "/bin/busybox"),
        "{exes}"
    );
    assert!(String::from_utf8_lossy(&get("events/recent.jsonl").1).contains("process.exec"));

    // One file altered: verification names it.
    let altered = dir.path().join("altered.tar.zst");
    rewrite_bundle(&out, &altered, |p, d| {
        Some(if p == "container/processes.json" {
            b"[]".to_vec()
        } else {
            d
        })
    });
    let v = forensics::verify(&altered, Some(&key.public_hex())).unwrap();
    assert!(!v.ok());
    assert_eq!(v.altered, vec!["container/processes.json".to_string()]);
    assert!(v.signature_ok && v.missing.is_empty() && v.added.is_empty());
    assert!(
        v.problems()[0].starts_with("container/processes.json: altered"),
        "{:?}",
        v.problems()
    );

    // A file removed and one added.
    let cut = dir.path().join("cut.tar.zst");
    rewrite_bundle(&out, &cut, |p, d| {
        (p != "fs/upper/tmp/payload.sh").then_some(d)
    });
    let v = forensics::verify(&cut, None).unwrap();
    assert_eq!(v.missing, vec!["fs/upper/tmp/payload.sh".to_string()]);

    // The manifest edited to match an altered file: the signature no longer holds.
    let forged = dir.path().join("forged.tar.zst");
    rewrite_bundle(&out, &forged, |p, d| {
        Some(if p == "manifest.json" {
            String::from_utf8(d)
                .unwrap()
                .replace("\"host\": \"", "\"host\": \"x")
                .into_bytes()
        } else {
            d
        })
    });
    let v = forensics::verify(&forged, None).unwrap();
    assert!(!v.signature_ok && !v.ok());

    // Signed by another key than the trusted one.
    let other = AgentKey::load_or_create(&dir.path().join("other.key")).unwrap();
    let v = forensics::verify(&out, Some(&other.public_hex())).unwrap();
    assert_eq!(v.signer_trusted, Some(false));
    assert!(!v.ok());
}

#[test]
fn a_bundle_never_fills_the_disk() {
    testkit::require!(Root, Docker);
    let env = Env::new();
    let img = busybox_image();
    let c = TestContainer::run("rp-bundle-space", &[&img, "sleep", "600"]);
    let f = env.facts(&[&c]).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let key = AgentKey::load_or_create(&dir.path().join("agent.key")).unwrap();
    let limits = BundleLimits {
        min_free_bytes: u64::MAX / 4,
        ..BundleLimits::default()
    };
    let out = dir.path().join("b.tar.zst");
    let err = forensics::capture(&f, &[], &key, &out, &limits).unwrap_err();
    assert!(err.to_string().contains("free"), "{err}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no partial file left (key + pub only)"
    );
}

fn alert_for(c: &TestContainer, rule: &str, pid: u32, start: u64) -> Alert {
    let mut ct = Container::unnamed(c.id.clone(), ContainerRuntime::Docker);
    ct.name = c.name.clone();
    Alert {
        id: EventId::new(7, u64::from(pid)),
        time_ns: 0,
        rule: rule.into(),
        description: String::new(),
        priority: Priority::Critical,
        tags: vec!["T1496".into()].into(),
        output: String::new(),
        output_fields: Default::default(),
        source: "syscall".into(),
        device: Arc::new(Default::default()),
        container: Some(Arc::new(ct)),
        process: Some(Arc::new(Process {
            pid,
            name: "miner".into(),
            start_time_ns: start,
            ..Process::default()
        })),
        events: vec![],
    }
}

fn pid_of(c: &TestContainer, pattern: &str) -> u32 {
    let out = testkit::docker_ok(["top", &c.name, "-eo", "pid,args"]);
    out.lines()
        .find(|l| l.contains(pattern))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no {pattern} in {out}"))
}

#[test]
fn a_playbook_isolates_captures_and_kills_in_order_and_records_everything() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let net = Network::new();
    let victim = server("rp-pb-victim", &net);
    let peer = server("rp-pb-peer", &net);
    victim.exec(&[
        "sh",
        "-c",
        "cp /bin/busybox /tmp/busybox-miner; /tmp/busybox-miner sleep 600 &",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let miner = pid_of(&victim, "busybox-miner");
    let start = actions::start_time_ns(miner).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let playbooks = playbook::parse_playbooks(
        Path::new("pb.yaml"),
        "playbooks:
  - name: crypto-miner
    match: {rules: [\"Crypto miner*\"], priority: critical}
    actions: [isolate, forensics, kill_tree, kill]
    rate_limit: {max: 1, per: 1h}
  - name: watch-only
    match: {tags: [T1496]}
    actions: [stop]
    dry_run: true
",
    )
    .unwrap();
    let cfg = ResponderConfig {
        playbooks,
        forensics_dir: dir.path().join("forensics"),
        key_path: dir.path().join("agent.key"),
        enforce: env.cfg.clone(),
        bundle_limits: BundleLimits {
            min_free_bytes: 1 << 20,
            ..BundleLimits::default()
        },
        rule_actions: RuleActions::Off,
        ..ResponderConfig::default()
    };
    let responder = Responder::start(cfg, None).unwrap();
    let alert = alert_for(&victim, "Crypto miner launched", miner, start);
    let mut ev = rampart_event::Event::new(
        EventId::new(1, 1),
        1,
        EventKind::ProcessExec,
        Arc::new(Default::default()),
    );
    ev.container = alert.container.clone();
    responder.observe(&ev);
    let d = rampart_rules::Detection {
        alert: alert.clone(),
        actions: vec![],
        rule_index: 0,
    };
    assert_eq!(responder.handle(&d), 2);
    assert!(responder.wait_idle(Duration::from_secs(60)));
    let mut recs = Vec::new();
    responder.drain(&mut recs);
    let summary: Vec<(String, String, String)> = recs
        .iter()
        .map(|e| {
            let r = e.response.as_ref().unwrap();
            (
                r.playbook.clone().unwrap_or_default(),
                r.action.clone(),
                r.outcome.clone(),
            )
        })
        .collect();
    let s = |p: &str, a: &str, o: &str| (p.to_string(), a.to_string(), o.to_string());
    assert_eq!(
        summary,
        vec![
            s("crypto-miner", "isolate", "ok"),
            s("crypto-miner", "forensics", "ok"),
            s("crypto-miner", "kill_tree", "ok"),
            // Already dead: recorded as failed, and the run went on to the end.
            s("crypto-miner", "kill", "failed"),
            s("watch-only", "stop", "dry_run"),
        ],
        "{recs:#?}"
    );
    // The effects.
    assert!(!reaches(&peer, &victim, 8080), "isolated");
    assert!(eventually(|| !Path::new(&format!("/proc/{miner}"))
        .exists()
        || std::fs::read_to_string(format!("/proc/{miner}/stat"))
            .is_ok_and(|s| s.contains(") Z "))));
    let bundle = recs[1].response.as_ref().unwrap().detail.clone().unwrap();
    let bundle = bundle.split(" (").next().unwrap();
    assert!(forensics::verify(Path::new(bundle), None).unwrap().ok());
    let entries = entries(Path::new(bundle));
    let recent = &entries
        .iter()
        .find(|e| e.0 == "events/recent.jsonl")
        .unwrap()
        .1;
    assert!(
        String::from_utf8_lossy(recent).contains("Crypto miner launched"),
        "the alert is in the bundle"
    );
    assert_eq!(
        victim.inspect("{{.State.Running}}"),
        "true",
        "the dry-run stop did nothing"
    );
    let j = serde_json::to_value(&recs[0]).unwrap();
    assert_eq!(j["type"], "response.action");
    assert_eq!(j["class_uid"], 7001);
    assert_eq!(j["response"]["rule"], "Crypto miner launched");
    assert!(j["response"]["started_ns"].as_u64().unwrap() <= j["time_ns"].as_u64().unwrap());

    // Rate limit: the second alert within the hour is recorded, not acted on.
    assert_eq!(responder.handle(&d), 1, "only the unlimited playbook runs");
    assert!(responder.wait_idle(Duration::from_secs(10)));
    let mut more = Vec::new();
    responder.drain(&mut more);
    let limited: Vec<_> = more
        .iter()
        .filter(|e| {
            e.response
                .as_ref()
                .is_some_and(|r| r.outcome == "rate_limited")
        })
        .collect();
    assert_eq!(limited.len(), 4, "{more:#?}");

    let mut e = env.enforcer();
    assert!(e.release(&victim.id, false).unwrap());
    assert!(reaches(&peer, &victim, 8080));
    responder.shutdown();
}

/// Issue 19: a bundle holds the flagged process's memory, read while the container is frozen:
/// a string the process built at run time (so it is in no argv or file) is found in a
/// writable region, every region is described in the signed manifest, and the budget cuts.
#[test]
fn a_bundle_holds_the_flagged_process_memory_read_while_the_container_is_frozen() {
    testkit::require!(Root, Docker);
    let env = Env::new();
    let img = busybox_image();
    let dir = tempfile::tempdir().unwrap();
    // The marker is assembled by the shell: its argv holds only the pieces.
    let c = TestContainer::run(
        "rp-memory",
        &[
            &img,
            "sh",
            "-c",
            "X=wallet; M=\"${X}_RAMPART_HEAP_$((6*7))_marker\"; \
             while true; do date +%s%N > /tmp/tick; sleep 0.05; done",
        ],
    );
    let marker = b"wallet_RAMPART_HEAP_42_marker";
    std::thread::sleep(Duration::from_millis(300));
    let f = env.facts(&[&c]).remove(0);
    let pid = f.pid;
    let target = actions::ProcessRef {
        pid,
        start_time_ns: actions::start_time_ns(pid),
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        !cmdline.windows(marker.len()).any(|w| w == marker),
        "the marker must not be in argv"
    );
    let key = AgentKey::load_or_create(&dir.path().join("agent.key")).unwrap();
    let limits = BundleLimits {
        min_free_bytes: 1 << 20,
        ..BundleLimits::default()
    };
    let out = dir.path().join("m.tar.zst");
    let r = forensics::capture_with(&f, &[], &key, &out, &limits, &[target]).unwrap();
    assert_eq!(r.memory.len(), 1);
    let m = &r.memory[0];
    assert_eq!(m.pid, pid);
    assert!(m.frozen, "read while frozen");
    assert!(m.error.is_none(), "{m:?}");
    assert!(m.captured_bytes > 0);
    // Thawed again afterwards (it was running before).
    assert!(!actions::is_frozen(&f));
    let tick = || std::fs::read_to_string(format!("/proc/{pid}/root/tmp/tick")).unwrap_or_default();
    let t1 = tick();
    assert!(eventually(|| tick() != t1), "the container runs again");

    // The signed manifest describes every region; the stored bytes hash as it says.
    let v = forensics::verify(&out, Some(&key.public_hex())).unwrap();
    assert!(v.ok(), "{:?}", v.problems());
    let all = entries(&out);
    let manifest: forensics::Manifest =
        serde_json::from_slice(&all.iter().find(|(p, _, _)| p == "manifest.json").unwrap().1)
            .unwrap();
    assert_eq!(manifest.memory, r.memory);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert_eq!(
        m.regions.len(),
        maps.lines().count(),
        "one record per mapping:\n{maps}"
    );
    let mut found_in = None;
    for region in &m.regions {
        assert!(!region.start.is_empty() && !region.end.is_empty() && region.perms.len() == 4);
        match region.status.as_str() {
            "captured" | "cut" => {
                let entry = region.entry.as_deref().unwrap();
                let data = &all.iter().find(|(p, _, _)| p == entry).unwrap().1;
                assert_eq!(data.len() as u64, region.captured);
                assert_eq!(
                    region.sha256.as_deref(),
                    Some(hex::encode(sha2::Sha256::digest(data)).as_str())
                );
                if data.windows(marker.len()).any(|w| w == marker) {
                    found_in = Some(region.clone());
                }
            }
            "unreadable" => assert!(
                !region.perms.starts_with('r') || region.error.is_some(),
                "{region:?}"
            ),
            other => panic!("status {other} without a budget: {region:?}"),
        }
    }
    assert_eq!(
        m.unreadable,
        m.regions
            .iter()
            .filter(|r| r.status == "unreadable")
            .count()
    );
    let found = found_in.unwrap_or_else(|| panic!("marker not in any region: {m:#?}"));
    assert!(
        found.perms.contains('w'),
        "found in a writable region (heap or anonymous): {found:?}"
    );

    // A container already frozen (a playbook's `freeze` first) stays frozen; a small budget
    // cuts, and says so.
    actions::freeze(&f).unwrap();
    let small = BundleLimits {
        max_memory_bytes: 64 << 10,
        ..limits
    };
    let out2 = dir.path().join("m2.tar.zst");
    let r2 = forensics::capture_with(&f, &[], &key, &out2, &small, &[target]).unwrap();
    assert!(actions::is_frozen(&f), "left frozen as it was");
    actions::thaw(&f).unwrap();
    let m2 = &r2.memory[0];
    assert!(m2.frozen);
    assert!(m2.captured_bytes <= 64 << 10, "{}", m2.captured_bytes);
    assert!(m2.over_limit > 0, "{m2:#?}");
    assert!(r2
        .truncated
        .iter()
        .any(|t| t.contains("limits.max_memory_bytes")));
    assert!(m2.regions.iter().any(|r| r.status == "limit"));

    // A pid that is not the process meant (start time differs) is not read.
    let wrong = actions::ProcessRef {
        pid,
        start_time_ns: Some(1),
    };
    let out3 = dir.path().join("m3.tar.zst");
    let r3 = forensics::capture_with(&f, &[], &key, &out3, &limits, &[wrong]).unwrap();
    assert_eq!(r3.memory[0].captured_bytes, 0);
    assert!(r3.memory[0].error.is_some());
}
