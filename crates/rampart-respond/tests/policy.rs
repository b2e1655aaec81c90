//! Policies against real containers: exec kills by name and hash before the program prints,
//! network micro-segmentation between containers of a test network, unselected containers
//! untouched, events naming the rule and mechanism, and following Docker.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, ip_of, reaches, server, Env, Network};
use rampart_event::EventKind;
use rampart_kernel::enforce::{Direction, Verdict};
use rampart_respond::{Policy, PolicyWatcher};
use sha2::{Digest, Sha256};
use testkit::{busybox_image, TestContainer};

/// busybox runs the applet named by argv[0], or argv[1] when argv[0] starts with `busybox`.
/// `/tmp/xmrig` is a script (comm `xmrig`); `/tmp/busybox-tool` a busybox with bytes appended
/// (it runs, and its SHA-256 is its own).
const FIXTURES: &str = "printf '#!/bin/sh\\necho mined\\n' > /tmp/xmrig && chmod +x /tmp/xmrig \
    && cat /bin/busybox > /tmp/busybox-tool && echo rampart-test >> /tmp/busybox-tool \
    && chmod +x /tmp/busybox-tool";

fn sha_of(c: &TestContainer, path: &str) -> String {
    let data = std::fs::read(format!("/proc/{}/root{path}", c.pid())).unwrap();
    hex::encode(Sha256::digest(data))
}

#[test]
fn miner_name_and_binary_by_hash_are_killed_before_they_print() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let img = busybox_image();
    let app = TestContainer::run("rp-app", &[&img, "sleep", "600"]);
    let other = TestContainer::run("rp-other", &[&img, "sleep", "600"]);
    for c in [&app, &other] {
        assert!(c.exec(&["sh", "-c", FIXTURES]).status.success());
    }
    let tool_sha = sha_of(&app, "/tmp/busybox-tool");
    let text = format!(
        "name: exec-test\nselectors:\n  app: {{name: {}}}\nexec:\n  - \"* deny name xmrig\"\n  - app deny sha256 {tool_sha}\n",
        app.name
    );
    let policy = Policy::parse(Path::new("exec-test.yaml"), &text).unwrap();
    let mut e = env.enforcer();
    let report = e.apply(&policy, &env.facts(&[&app, &other])).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.selected.len(), 1);
    assert_eq!(report.unselected.len(), 1);
    assert!(
        report
            .hash_matches
            .iter()
            .any(|m| m.contains("/tmp/busybox-tool")),
        "{report:?}"
    );

    for argv in [&["/tmp/xmrig"][..], &["/tmp/busybox-tool", "echo", "mined"]] {
        let out = app.exec(argv);
        assert_eq!(out.status.code(), Some(137), "{argv:?}: {out:?}");
        assert!(
            out.stdout.is_empty(),
            "{argv:?} printed before it was killed: {out:?}"
        );
        let out = other.exec(argv);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "mined",
            "unselected: {out:?}"
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&app.exec(&["echo", "ok"]).stdout).trim(),
        "ok"
    );

    let mut evs = Vec::new();
    assert!(eventually(|| {
        e.poll(&mut evs).unwrap();
        evs.len() >= 2
    }));
    let by_name = evs
        .iter()
        .find(|e| {
            e.policy
                .as_ref()
                .is_some_and(|p| p.rule == "* deny name xmrig")
        })
        .expect("an event for the name rule");
    assert_eq!(by_name.kind, EventKind::PolicyExecDenied);
    let p = by_name.policy.as_ref().unwrap();
    assert_eq!(p.policy, "exec-test");
    assert_eq!(p.selector, "app");
    assert_eq!(p.action, "deny");
    assert_eq!(p.mechanism, "bpf_send_signal@tp_btf/sched_process_exec");
    assert_eq!(by_name.container.as_ref().unwrap().id, app.id);
    let by_hash = evs
        .iter()
        .find(|e| {
            e.policy
                .as_ref()
                .is_some_and(|p| p.sha256.as_deref() == Some(&tool_sha))
        })
        .expect("an event for the hash rule");
    assert_eq!(by_hash.file.as_ref().unwrap().path, "/tmp/busybox-tool");
    let json = serde_json::to_value(by_hash).unwrap();
    assert_eq!(json["type"], "policy.exec_denied");
    assert_eq!(json["class_uid"], 1007);
    assert_eq!(json["policy"]["reason"], "rule");

    // A file with the denied hash written after the policy was applied: the kernel reports the
    // unknown file, user space hashes it and kills the process; from then on the kernel kills
    // it before its first instruction.
    app.exec(&["cp", "/tmp/busybox-tool", "/tmp/busybox-later"]);
    // Nothing reads the reports during this exec: it runs (documented: the first exec of a
    // file written after apply is hashed in user space).
    let first = app.exec(&["/tmp/busybox-later", "echo", "first"]);
    assert_eq!(String::from_utf8_lossy(&first.stdout).trim(), "first");
    let mut later = Vec::new();
    assert!(
        eventually(|| {
            e.poll(&mut later).unwrap();
            later.iter().any(|ev| {
                ev.file
                    .as_ref()
                    .is_some_and(|f| f.path == "/tmp/busybox-later")
            })
        }),
        "{later:#?}"
    );
    let out = app.exec(&["/tmp/busybox-later", "echo", "mined"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn frontend_reaches_backend_8080_only_and_unselected_containers_are_untouched() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let net = Network::new();
    let frontend = server("rp-frontend", &net);
    let backend = server("rp-backend", &net);
    let third = server("rp-third", &net);
    let bystander = server("rp-bystander", &net);
    std::thread::sleep(Duration::from_millis(300));
    assert!(reaches(&frontend, &backend, 22) && reaches(&frontend, &third, 8080));

    let text = format!(
        "\
name: shop
selectors:
  frontend:
    name: {}
    default: {{egress: deny}}
  backend:
    name: {}
    default: {{ingress: deny}}
network:
  - frontend -> backend tcp/8080 allow
",
        frontend.name, backend.name
    );
    let policy = Policy::parse(Path::new("shop.yaml"), &text).unwrap();
    let all = env.facts(&[&frontend, &backend, &third, &bystander]);
    let mut e = env.enforcer();
    let report = e.apply(&policy, &all).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    assert!(reaches(&frontend, &backend, 8080), "allowed by the rule");
    assert!(
        !reaches(&frontend, &backend, 22),
        "backend:22 is not allowed"
    );
    assert!(!reaches(&frontend, &third, 8080), "no other container");
    assert!(
        !reaches(&third, &backend, 8080),
        "backend's ingress admits only frontend"
    );
    assert!(
        reaches(&bystander, &third, 8080),
        "unselected containers talk as before"
    );
    assert!(
        reaches(&backend, &third, 22),
        "backend's egress is not restricted"
    );
    let attached = e.kernel().attached_cgroups();
    assert!(attached.contains(&frontend.id) && attached.contains(&backend.id));
    assert!(
        !attached.contains(&third.id) && !attached.contains(&bystander.id),
        "{attached:?}"
    );

    let mut evs = Vec::new();
    assert!(eventually(|| {
        e.poll(&mut evs).unwrap();
        evs.iter().any(|ev| {
            ev.policy
                .as_ref()
                .is_some_and(|p| p.mechanism == "cgroup_skb/ingress")
        })
    }));
    let denied22 = evs
        .iter()
        .find(|ev| {
            ev.network
                .as_ref()
                .and_then(|n| n.dst)
                .is_some_and(|d| d.port == 22)
        })
        .expect("a denial of backend:22");
    assert_eq!(denied22.kind, EventKind::PolicyNetDenied);
    let p = denied22.policy.as_ref().unwrap();
    assert_eq!(
        (p.rule.as_str(), p.reason.as_str(), p.mechanism.as_str()),
        ("default", "default", "cgroup/connect4")
    );
    assert_eq!(p.selector, "frontend");
    assert_eq!(
        denied22.network.as_ref().unwrap().dst.unwrap().ip,
        ip_of(&backend)
    );
    let ingress = evs
        .iter()
        .find(|ev| {
            ev.policy
                .as_ref()
                .is_some_and(|p| p.mechanism == "cgroup_skb/ingress")
        })
        .unwrap();
    assert_eq!(
        ingress.network.as_ref().unwrap().src.unwrap().ip,
        ip_of(&third)
    );
    assert_eq!(ingress.container.as_ref().unwrap().id, backend.id);

    // `rampart policy test` answers the same questions without traffic.
    let plan = e.dry_plan(&policy, &all).unwrap();
    let f = plan.group_of(&frontend.id).unwrap();
    assert_eq!(
        f.decide(Direction::Egress, ip_of(&backend), 8080, 6),
        (Verdict::Allow, Some(1))
    );
    assert_eq!(
        f.decide(Direction::Egress, ip_of(&backend), 22, 6).0,
        Verdict::Deny
    );

    // Replacing the policy by one without network rules restores everything.
    let none = Policy::parse(Path::new("none.yaml"), "name: none\n").unwrap();
    e.apply(&none, &all).unwrap();
    assert!(reaches(&frontend, &backend, 22) && reaches(&third, &backend, 8080));
    assert!(e.kernel().attached_cgroups().is_empty());
}

#[test]
fn an_invalid_policy_changes_nothing() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let net = Network::new();
    let a = server("rp-inv-a", &net);
    let b = server("rp-inv-b", &net);
    std::thread::sleep(Duration::from_millis(300));
    let good = format!(
        "selectors:\n  a: {{name: {}, default: {{egress: deny}}}}\nnetwork:\n  - a -> {} tcp/8080 allow\n",
        a.name,
        ip_of(&b)
    );
    let policy = Policy::parse(Path::new("good.yaml"), &good).unwrap();
    let all = env.facts(&[&a, &b]);
    let mut e = env.enforcer();
    e.apply(&policy, &all).unwrap();
    let before = e.status().unwrap();
    let targets_before = e.kernel().targets();
    for (bad, expect) in [
        (
            format!("{good}  - a -> nowhere tcp/22 allow\n"),
            "bad.yaml:5: network rule 2",
        ),
        (
            format!("{good}  - a -> {} tcp/22 permit\n", ip_of(&b)),
            "not `permit`",
        ),
        ("selectors: [".to_string(), "bad.yaml:1:"),
    ] {
        let err = Policy::parse(Path::new("bad.yaml"), &bad).unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
    }
    let after = e.status().unwrap();
    assert_eq!(before.policy, after.policy);
    assert_eq!(targets_before, e.kernel().targets());
    assert!(reaches(&a, &b, 8080) && !reaches(&a, &b, 22));
}

#[test]
fn the_watcher_applies_the_policy_to_containers_that_start_later() {
    testkit::require!(Root, Docker, Bpf);
    let env = Env::new();
    let img = busybox_image();
    let prefix = testkit::unique("rp-watched");
    let policy = Policy::parse(
        Path::new("w.yaml"),
        &format!("selectors:\n  w: {{name: \"{prefix}*\"}}\nexec:\n  - w deny name nc\n"),
    )
    .unwrap();
    let e = Arc::new(Mutex::new(env.enforcer()));
    e.lock().unwrap().apply(&policy, &[]).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let events = Arc::new(Mutex::new(Vec::new()));
    let watcher = PolicyWatcher::new(e.clone(), env.docker.clone());
    let sink = events.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = rt.spawn(watcher.run(
        move |ev| {
            sink.lock().unwrap().push(ev);
            true
        },
        stop_rx,
    ));
    std::thread::sleep(Duration::from_millis(500));
    // The container's first command is the denied one.
    let name = format!("{prefix}-1");
    let c = TestContainer {
        id: testkit::docker_ok([
            "run",
            "-d",
            "--name",
            &name,
            &img,
            "sh",
            "-c",
            "nc -h 2>&1; echo first-exec-done; sleep 600",
        ]),
        name,
    };
    assert!(eventually(|| e
        .lock()
        .unwrap()
        .status()
        .unwrap()
        .containers
        .iter()
        .any(|s| s.id == c.id)));
    let out = c.exec(&["nc", "-h"]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let logs = testkit::docker(["logs", &c.name]);
    let logs =
        String::from_utf8_lossy(&logs.stdout).to_string() + &String::from_utf8_lossy(&logs.stderr);
    // Usually the policy is attached at `create`, before the first process; report it.
    eprintln!(
        "first exec in the container caught: {}",
        !logs.contains("Usage")
    );
    assert!(eventually(|| events
        .lock()
        .unwrap()
        .iter()
        .any(|ev| ev.kind == EventKind::PolicyExecDenied)));
    drop(c);
    assert!(
        eventually(|| e.lock().unwrap().status().unwrap().containers.is_empty()),
        "removed containers are forgotten"
    );
    stop_tx.send(true).unwrap();
    rt.block_on(handle).unwrap().unwrap();
}
