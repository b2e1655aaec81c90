//! `rampart key`, `rampart image sign|verify` and `rampart authz` against real components: a
//! Debian `docker-registry` on a loopback port started by the test, images pushed by dockerd,
//! and (for the plugin) a second dockerd started with `--authorization-plugin`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::dockerd::{dockerd_argv, spawn_logged, wait_for, NetNs};
use testkit::load_images;

fn rampart(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rampart"));
    c.args(args)
        .env_remove("RAMPART_KEY_PASSWORD")
        .env_remove("COSIGN_PASSWORD");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run rampart")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `docker-registry` (distribution 2.8) on 127.0.0.1, storage in a temporary directory.
struct TestRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts it; `wrap` runs it inside another command (`ip netns exec NS`).
    fn start(wrap: &[&str]) -> TestRegistry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "docker-registry is not installed (scripts/setup installs it)"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
        argv.extend([
            bin.display().to_string(),
            "serve".into(),
            cfg.display().to_string(),
        ]);
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        TestRegistry {
            child,
            port,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until `probe` (a command that exits 0 once the registry answers) succeeds.
    fn wait(&self, probe: &mut dyn FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if probe() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log =
            std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not come up on {}:\n{log}", self.host());
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tcp_up(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Removes the listed images on drop.
struct Images(Vec<String>, Option<String>);

impl Drop for Images {
    fn drop(&mut self) {
        let mut args = vec!["rmi", "-f"];
        args.extend(self.0.iter().map(String::as_str));
        let mut c = Command::new("docker");
        if let Some(h) = &self.1 {
            c.args(["-H", h]);
        }
        let _ = c.args(&args).output();
    }
}

/// A variant of `base`: the same files with a label `rampart.test=<value>` (another config, so
/// another manifest digest). Built with `docker commit`, no build tool needed.
fn variant(docker: &[&str], base: &str, tag: &str, value: &str) {
    let name = testkit::unique("trust-variant");
    let mut create = docker.to_vec();
    create.extend(["create", "--name", &name, base, "true"]);
    let o = testkit::docker(&create);
    assert!(o.status.success(), "{}", text(&o).1);
    let label = format!("LABEL rampart.test={value}");
    let mut commit = docker.to_vec();
    commit.extend(["commit", "--change", &label, &name, tag]);
    let o = testkit::docker(&commit);
    let mut rm = docker.to_vec();
    rm.extend(["rm", "-f", &name]);
    let _ = testkit::docker(&rm);
    assert!(o.status.success(), "{}", text(&o).1);
}

fn docker_ok(docker: &[&str], args: &[&str]) -> String {
    let mut all = docker.to_vec();
    all.extend_from_slice(args);
    let o = testkit::docker(&all);
    assert!(o.status.success(), "docker {all:?}: {}", text(&o).1);
    text(&o).0.trim().to_string()
}

fn repo_digest(docker: &[&str], image: &str) -> String {
    let out = docker_ok(
        docker,
        &["inspect", "--format", "{{json .RepoDigests}}", image],
    );
    let list: Vec<String> = serde_json::from_str(&out).expect("repo digests");
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    list.iter()
        .find_map(|d| d.strip_prefix(&format!("{repo}@")).map(str::to_string))
        .unwrap_or_else(|| panic!("{image} has no repo digest in {list:?}"))
}

#[test]
fn sign_verify_and_tamper_against_a_real_registry() {
    testkit::require!(Root, Docker);
    let reg = TestRegistry::start(&[]);
    reg.wait(&mut || tcp_up(reg.port));
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let base = testkit::busybox_image();
    let repo = format!("{}/{}", reg.host(), testkit::unique("trust"));
    let (v1, other, bundled) = (
        format!("{repo}/app:v1"),
        format!("{repo}/app:tampered"),
        format!("{repo}/bundled:v1"),
    );
    let mut images = Images(vec![v1.clone(), other.clone(), bundled.clone()], None);
    docker_ok(&[], &["tag", &base, &v1]);
    docker_ok(&[], &["push", "-q", &v1]);
    let signed_digest = repo_digest(&[], &v1);
    // The base image keeps this repository digest after the tag moves: removed at the end.
    images.0.push(format!("{repo}/app@{signed_digest}"));

    // Keys: an encrypted one (the password from the environment) and a stranger's.
    let prefix = d.join("release").display().to_string();
    let pw = [("RAMPART_KEY_PASSWORD", "correct horse")];
    let o = rampart(&["key", "generate", "-o", &prefix], &pw);
    assert!(o.status.success(), "{:?}", text(&o));
    let key = std::fs::read_to_string(format!("{prefix}.key")).expect("key");
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{key}"
    );
    let o = rampart(&["key", "generate", "-o", &prefix], &pw);
    assert_eq!(o.status.code(), Some(2), "no overwrite: {:?}", text(&o));
    let stranger = d.join("stranger").display().to_string();
    assert!(rampart(&["key", "generate", "-o", &stranger], &[])
        .status
        .success());
    let (kf, pubf, spub) = (
        format!("{prefix}.key"),
        format!("{prefix}.pub"),
        format!("{stranger}.pub"),
    );

    // Unsigned: verify fails.
    let o = rampart(&["image", "verify", &v1, "--key", &pubf], &[]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o)
            .1
            .contains(&format!("{signed_digest} has no signature")),
        "{:?}",
        text(&o)
    );

    // Wrong password, then sign.
    let o = rampart(
        &["image", "sign", &v1, "--key", &kf],
        &[("RAMPART_KEY_PASSWORD", "nope")],
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("wrong password"), "{:?}", text(&o));
    let o = rampart(&["image", "sign", &v1, "--key", &kf], &pw);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains(&signed_digest), "{:?}", text(&o));

    // cosign's storage: the sha256-<hex>.sig tag exists in the same repository.
    let sig_tag = format!("{}.sig", signed_digest.replacen(':', "-", 1));
    let tags = Command::new("curl")
        .args([
            "-sf",
            &format!(
                "http://{}/v2/{}/app/tags/list",
                reg.host(),
                repo.split_once('/').map(|x| x.1).unwrap_or_default()
            ),
        ])
        .output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&tags.stdout).contains(&sig_tag),
        "{:?}",
        tags
    );

    let o = rampart(&["image", "verify", &v1, "--key", &pubf], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o)
            .0
            .contains(&format!("at {signed_digest}: signed by")),
        "{:?}",
        text(&o)
    );
    let o = rampart(&["image", "verify", &v1, "--key", &spub], &[]);
    assert_eq!(o.status.code(), Some(1), "a stranger's key: {:?}", text(&o));
    assert!(text(&o).1.contains("none valid"), "{:?}", text(&o));

    // The Sigstore bundle v0.3 referrer form (cosign 3), on a registry without the referrers
    // API (distribution 2.8): found through the sha256-<hex> index tag.
    docker_ok(&[], &["tag", &base, &bundled]);
    docker_ok(&[], &["push", "-q", &bundled]);
    let o = rampart(&["image", "sign", "--bundle", &bundled, "--key", &kf], &pw);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = rampart(
        &["image", "verify", &bundled, "--key", &spub, "--key", &pubf],
        &[],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("Sigstore bundle"), "{:?}", text(&o));

    // Tamper: another image pushed under the signed tag.
    variant(&[], &base, &other, &testkit::unique("t"));
    docker_ok(&[], &["tag", &other, &v1]);
    docker_ok(&[], &["push", "-q", &v1]);
    let moved_digest = repo_digest(&[], &v1);
    assert_ne!(moved_digest, signed_digest);
    let o = rampart(&["image", "verify", &v1, "--key", &pubf], &[]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(
        err.contains(&moved_digest) && err.contains(&signed_digest) && err.contains("moved"),
        "the failure names both digests: {err}"
    );
    // The signed digest itself still verifies.
    let pinned = format!("{repo}/app@{signed_digest}");
    assert!(rampart(&["image", "verify", &pinned, "--key", &pubf], &[])
        .status
        .success());
    // Tag and digest together: the tag must still point at the digest.
    let both = format!("{v1}@{signed_digest}");
    let o = rampart(&["image", "verify", &both, "--key", &pubf], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains(&moved_digest), "{:?}", text(&o));

    // Trust policy: pinned digests, warn on missing signatures.
    let policy = d.join("trust.yaml");
    std::fs::write(
        &policy,
        format!(
            "default: deny\nimages:\n  - match: \"{repo}/bundled\"\n    keys: [release.pub]\n    digests: [\"sha256:{}\"]\n  - match: \"{repo}/app\"\n    keys: [release.pub]\n    missing: warn\n",
            "0".repeat(64)
        ),
    )
    .expect("policy");
    let p = policy.display().to_string();
    let o = rampart(&["image", "verify", &bundled, "--policy", &p], &[]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("not among the pinned digests"),
        "{:?}",
        text(&o)
    );
    let o = rampart(&["image", "verify", &v1, "--policy", &p], &[]);
    assert!(o.status.success(), "missing: warn {:?}", text(&o));
    assert!(text(&o).1.starts_with("warning:"), "{:?}", text(&o));
    let o = rampart(
        &["image", "verify", "docker.io/library/x:1", "--policy", &p],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "default deny {:?}", text(&o));
    std::fs::write(&policy, "images:\n  - match: x\n    keys: [missing.pub]\n").expect("w");
    let o = rampart(&["image", "verify", &v1, "--policy", &p], &[]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o).1.contains(&format!("{p}:3")),
        "file:line {:?}",
        text(&o)
    );
}

#[test]
fn authz_plugin_admits_signed_images_and_refuses_the_rest() {
    testkit::require!(Root, Docker);
    let ns = NetNs::new("authz");
    let dir = tempfile::Builder::new()
        .prefix("rampart-authz-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let d = dir.path();
    let exec = ns.exec();
    let exec_ref: Vec<&str> = exec.iter().map(String::as_str).collect();
    let mut reg = TestRegistry::start(&exec_ref);
    let host = reg.host();
    let mut probe_args = exec.clone();
    probe_args.extend(["curl".into(), "-sf".into(), format!("http://{host}/v2/")]);
    reg.wait(&mut || {
        Command::new(&probe_args[0])
            .args(&probe_args[1..])
            .output()
            .is_ok_and(|o| o.status.success())
    });

    // Keys, trust policy, admission policy, an (empty) vulnerability database.
    let prefix = d.join("ops").display().to_string();
    assert!(rampart(&["key", "generate", "-o", &prefix], &[])
        .status
        .success());
    std::fs::write(
        d.join("trust.yaml"),
        format!("default: deny\nimages:\n  - match: \"{host}/*\"\n    keys: [ops.pub]\n"),
    )
    .expect("trust");
    let admission = |fail: &str| {
        format!(
            "fail: {fail}\ntrust: trust.yaml\nmax_severity: high\nscan_timeout: 60s\nbreak_glass: [ops-admin]\n\
             rules: [signed, scanned, privileged, host-namespaces, sensitive-mounts, non-root, limits, seccomp, capabilities, devices, confinement]\n"
        )
    };
    std::fs::write(d.join("closed.yaml"), admission("closed")).expect("w");
    std::fs::write(d.join("open.yaml"), admission("open")).expect("w");
    let db = d.join("vulns.db");
    rampart_scan::VulnDb::open_or_create(&db).expect("db");

    let plugin = format!("rampart-test-{}", std::process::id());
    let plugin_sock = PathBuf::from(format!("/run/docker/plugins/{plugin}.sock"));
    let docker_sock = d.join("docker.sock");
    let events = d.join("events.jsonl");
    let start_plugin = |policy: &str| {
        let _ = std::fs::remove_file(&plugin_sock);
        let mut argv = exec.clone();
        argv.extend(
            [
                env!("CARGO_BIN_EXE_rampart"),
                "authz",
                "--policy",
                &d.join(policy).display().to_string(),
                "--socket",
                &plugin_sock.display().to_string(),
                "--docker-socket",
                &docker_sock.display().to_string(),
                "--db",
                &db.display().to_string(),
                "--cache-dir",
                &d.join("scan-cache").display().to_string(),
                "--events",
                &events.display().to_string(),
                "--verdict-ttl",
                "0s",
                "-v",
            ]
            .map(String::from),
        );
        let log = d.join(format!("plugin-{policy}.log"));
        let p = spawn_logged(&argv, &log);
        wait_for("the plugin", &log, || plugin_sock.exists());
        p
    };
    let mut plugin_proc = start_plugin("closed.yaml");

    // The second dockerd, asking the plugin about every call.
    let cgroup_parent = format!("/rampart-authz-{}", std::process::id());
    let argv = dockerd_argv(
        &ns,
        d,
        "authz",
        &[format!("unix://{}", docker_sock.display())],
        &["--authorization-plugin".to_string(), plugin.clone()],
    );
    let dlog = d.join("dockerd.log");
    let mut daemon = spawn_logged(&argv, &dlog);
    let h = format!("unix://{}", docker_sock.display());
    let dk: Vec<&str> = vec!["-H", &h];
    wait_for("the second dockerd", &dlog, || {
        testkit::docker(["-H", h.as_str(), "version"])
            .status
            .success()
    });

    // Images: busybox and a variant of it (made on the main daemon: the plugin would refuse
    // the container `docker commit` needs) moved over without a registry, then pushed to the
    // test registry.
    let moved = format!("{host}/ops/moved:v1");
    let _main_images = Images(vec![moved.clone()], None);
    variant(&[], &testkit::busybox_image(), &moved, "moved");
    load_images(&h, &[testkit::busybox_image().as_str(), moved.as_str()]);
    let base = testkit::busybox_image();
    let (signed, unsigned) = (
        format!("{host}/ops/signed:v1"),
        format!("{host}/ops/unsigned:v1"),
    );
    for img in [&signed, &unsigned] {
        docker_ok(&dk, &["tag", &base, img]);
        docker_ok(&dk, &["push", "-q", img]);
    }
    let signed_digest = repo_digest(&dk, &signed);
    let mut sign = exec.clone();
    sign.extend(
        [
            env!("CARGO_BIN_EXE_rampart"),
            "image",
            "sign",
            &signed,
            "--key",
            &format!("{prefix}.key"),
        ]
        .map(String::from),
    );
    let o = Command::new(&sign[0])
        .args(&sign[1..])
        .output()
        .expect("sign");
    assert!(o.status.success(), "{:?}", text(&o));

    let limits = [
        "--user",
        "1000",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "64",
    ];
    let run = |extra: &[&str], image: &str| -> Output {
        let mut a = vec!["-H", h.as_str(), "run", "--rm", "--network", "none"];
        a.extend_from_slice(extra);
        a.extend([image, "true"]);
        testkit::docker(&a)
    };
    let denied = |o: &Output, needles: &[&str]| {
        let err = text(o).1;
        assert!(!o.status.success(), "should be denied: {err}");
        assert!(
            err.contains(&format!("authorization denied by plugin {plugin}")),
            "{err}"
        );
        for n in needles {
            assert!(err.contains(n), "{n:?} not in {err}");
        }
    };

    // Signed, scanned (on demand: no cached scan yet), limited, non-root: runs.
    let o = run(&limits, &signed);
    assert!(o.status.success(), "signed image refused: {:?}", text(&o));
    assert!(
        d.join("scan-cache")
            .read_dir()
            .is_ok_and(|mut r| r.next().is_some()),
        "the scan on demand is cached: {}\n{}",
        std::fs::read_to_string(&events).unwrap_or_default(),
        std::fs::read_to_string(d.join("plugin-closed.yaml.log")).unwrap_or_default()
    );
    // Unsigned: refused, naming the rule and the digest.
    let unsigned_digest = repo_digest(&dk, &unsigned);
    denied(
        &run(&limits, &unsigned),
        &["[signed]", &format!("{unsigned_digest} has no signature")],
    );
    // Configuration rules.
    denied(
        &run(&["--privileged", "-v", "/:/host", "--pid", "host"], &signed),
        &[
            "[privileged]",
            "[sensitive-mounts] HostConfig.Binds[0]: bind mount of host path /",
            "[host-namespaces]",
            "[limits]",
            "[non-root]",
        ],
    );
    let mut with_caps = limits.to_vec();
    with_caps.extend([
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "-v",
        "/var/run/docker.sock:/s",
    ]);
    denied(
        &run(&with_caps, &signed),
        &[
            "[capabilities] HostConfig.CapAdd: adding capability \"CAP_SYS_ADMIN\" is not allowed",
            "[seccomp]",
            "/var/run/docker.sock",
        ],
    );
    // Break glass is for the authenticated users the policy lists (dockerd forwards the TLS
    // client certificate's name); over this unix socket nobody is authenticated, so the label
    // the requester chooses allows nothing (issue 15: no self-service exceptions).
    let mut glass = vec!["--label", "rampart.break-glass=INC-42", "--privileged"];
    glass.extend_from_slice(&limits);
    denied(&run(&glass, &signed), &["[privileged]"]);
    // A create without a body (CVE-2024-41110 class): dockerd forwards none, the plugin denies.
    let o = Command::new("curl")
        .args([
            "-s",
            "--unix-socket",
            &docker_sock.display().to_string(),
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "http://localhost/containers/create",
        ])
        .output()
        .expect("curl");
    let body = text(&o).0;
    assert!(
        body.contains("without a request body") && body.contains("CVE-2024-41110"),
        "{body}"
    );

    // Tamper: another image pushed under the signed tag and pulled; the tag moved.
    docker_ok(&dk, &["tag", &moved, &signed]);
    docker_ok(&dk, &["push", "-q", &signed]);
    let moved_digest = repo_digest(&dk, &signed);
    assert_ne!(moved_digest, signed_digest);
    denied(
        &run(&limits, &signed),
        &["[signed]", &moved_digest, &signed_digest, "moved"],
    );

    // The registry goes away: fail closed (default), then fail open.
    let pinned = format!("{host}/ops/signed@{signed_digest}");
    reg.child.kill().expect("kill registry");
    let _ = reg.child.wait();
    denied(
        &run(&limits, &pinned),
        &["could not decide", "fail: closed"],
    );
    plugin_proc.stop();
    plugin_proc = start_plugin("open.yaml");
    let o = run(&limits, &pinned);
    assert!(o.status.success(), "fail open: {:?}", text(&o));

    // Every decision is an event.
    let log = std::fs::read_to_string(&events).expect("events");
    let outcomes: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .map(|v| v["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in ["allow", "deny", "fail_closed", "fail_open"] {
        assert!(
            outcomes.iter().any(|o| o == want),
            "{want} not in {outcomes:?}"
        );
    }

    plugin_proc.stop();
    daemon.stop();
    let rel = cgroup_parent.trim_start_matches('/');
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
    drop(plugin_proc);
}
