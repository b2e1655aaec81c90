//! `rampart harden host --userns` against a real dockerd: the files `--apply` writes configure a
//! second dockerd (its own data-root, exec-root, socket, mount and network namespaces, with the
//! written subuid/subgid bind-mounted over /etc/subuid and /etc/subgid, as
//! crates/rampart-audit/tests/userns.rs does), whose containers' root is then a host uid of
//! 100000 or more, read from /proc/PID/uid_map; `--verify` says so, and fails for a container
//! run with --userns=host. The shared daemon and the host's files are not touched.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{rampart, text};

struct SecondDaemon {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    cgroup_parent: String,
}

impl SecondDaemon {
    /// dockerd configured only by `d/daemon.json` (no --userns-remap flag).
    fn start(d: &Path) -> SecondDaemon {
        let socket = d.join("docker.sock");
        let cgroup_parent = format!("/rampart-hardenhost-{}", std::process::id());
        let ns = format!("rampart-hardenhost-{}", std::process::id());
        let script = format!(
            "mount --bind {d}/subuid /etc/subuid && mount --bind {d}/subgid /etc/subgid && exec dockerd \
             --config-file {d}/daemon.json \
             --data-root {d}/data --exec-root {d}/exec -H unix://{sock} --pidfile {d}/docker.pid \
             --bridge none --iptables=false --ip-masq=false \
             --cgroup-parent {cgroup_parent} --containerd-namespace {ns} --containerd-plugins-namespace {ns}-plugins",
            d = d.display(),
            sock = socket.display(),
        );
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log");
        let child = Command::new("unshare")
            // Its own network namespace: a dockerd started with --bridge none deletes the
            // host's docker0 interface.
            .args(["-m", "-n", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("unshare dockerd");
        let mut daemon = SecondDaemon {
            child,
            dir: d.to_path_buf(),
            socket,
            cgroup_parent,
        };
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if let Ok(Some(st)) = daemon.child.try_wait() {
                let log = std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default();
                panic!("second dockerd exited ({st}) with the applied daemon.json:\n{log}");
            }
            let out = daemon.docker(&["info", "--format", "{{json .SecurityOptions}}"]);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("name=userns")
            {
                return daemon;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let log = std::fs::read_to_string(d.join("dockerd.log")).unwrap_or_default();
        panic!("second dockerd did not come up remapping with the applied daemon.json:\n{log}");
    }

    fn docker(&self, args: &[&str]) -> Output {
        let host = format!("unix://{}", self.socket.display());
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        testkit::docker(&all)
    }

    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        let _ = self.docker(&["rm", "-f", "remapped", "hostns"]);
        // Only while not yet reaped (std caches the status once it has reaped it).
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child (dockerd, exec'd by sh), not yet reaped.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
        }
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let rel = self.cgroup_parent.trim_start_matches('/');
        if let Ok(dirs) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in dirs.flatten() {
                let _ = std::fs::remove_dir(h.path().join(rel));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
        let _ = &self.dir;
    }
}

#[test]
fn harden_host_userns_apply_configures_a_dockerd_whose_container_root_is_a_high_uid() {
    testkit::require!(Root, Docker);
    if Command::new("unshare").arg("--version").output().is_err() {
        panic!("unshare (util-linux) is needed to start the second dockerd");
    }
    let img = testkit::busybox_image();
    let tmp = tempfile::Builder::new()
        .prefix("rampart-hardenhost-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let d = tmp.path();
    let dj = d.join("daemon.json");
    // Keys dockerd accepts next to the flags the test passes; their formatting must survive.
    let original = "{\n\t\"log-level\": \"info\",\n\t\"max-concurrent-downloads\": 2\n}\n";
    std::fs::write(&dj, original).expect("w");
    // Another user's range where a naive allocator would start; the user already has a subgid
    // range (dockerd looks subgid up by the user's name, not the group's).
    std::fs::write(d.join("subuid"), "alice:100000:65536\n").expect("w");
    std::fs::write(
        d.join("subgid"),
        "alice:100000:65536\nnobody:200000:65536\n",
    )
    .expect("w");
    let paths = [
        "--daemon-json",
        dj.to_str().expect("utf8"),
        "--subuid",
        d.join("subuid").to_str().expect("utf8").to_owned().leak(),
        "--subgid",
        d.join("subgid").to_str().expect("utf8").to_owned().leak(),
    ];
    let mut cmd = vec!["harden", "host", "--userns", "--remap", "nobody:nogroup"];
    cmd.extend_from_slice(&paths);

    // Dry run: the diff and the lines, nothing written.
    let out = rampart(&cmd);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("-\t\"max-concurrent-downloads\": 2\n+\t\"max-concurrent-downloads\": 2,\n+\t\"userns-remap\": \"nobody:nogroup\"\n"),
        "{t}"
    );
    assert!(t.contains("+nobody:165536:65536"), "{t}");
    assert!(t.contains("nobody already has nobody:200000:65536"), "{t}");
    assert!(t.contains("/var/lib/docker/165536.200000"), "{t}");
    assert!(t.contains("--userns=host"), "{t}");
    assert_eq!(std::fs::read_to_string(&dj).expect("r"), original);
    assert_eq!(
        std::fs::read_to_string(d.join("subuid")).expect("r"),
        "alice:100000:65536\n"
    );

    // --apply writes exactly that.
    let mut apply = cmd.clone();
    apply.push("--apply");
    let out = rampart(&apply);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&dj).expect("r"),
        "{\n\t\"log-level\": \"info\",\n\t\"max-concurrent-downloads\": 2,\n\t\"userns-remap\": \"nobody:nogroup\"\n}\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("subuid")).expect("r"),
        "alice:100000:65536\nnobody:165536:65536\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("subgid")).expect("r"),
        "alice:100000:65536\nnobody:200000:65536\n"
    );
    let mode = std::fs::metadata(d.join("subuid"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o644);
    // Applying again changes nothing.
    let out = rampart(&apply);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("nothing to write"), "{}", text(&out));

    // dockerd accepts the file and remaps by it.
    let daemon = SecondDaemon::start(d);
    testkit::load_images(&format!("unix://{}", daemon.socket.display()), &[&img]);
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "remapped",
        "--network",
        "none",
        &img,
        "sleep",
        "600",
    ]);
    daemon.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hostns",
        "--userns",
        "host",
        "--network",
        "none",
        &img,
        "sleep",
        "600",
    ]);
    let pid = daemon.docker_ok(&["inspect", "--format", "{{.State.Pid}}", "remapped"]);
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map");
    let f: Vec<u64> = uid_map
        .split_whitespace()
        .map(|x| x.parse().expect("num"))
        .collect();
    assert_eq!(f[..3], [0, 165_536, 65_536], "{uid_map}");
    assert!(f[1] >= 100_000);
    let gid_map = std::fs::read_to_string(format!("/proc/{pid}/gid_map")).expect("gid_map");
    assert!(
        gid_map.split_whitespace().nth(1) == Some("200000"),
        "{gid_map}"
    );
    // The remapped data-root subdirectory the explanation named.
    assert!(d.join("data/165536.200000").is_dir());

    // --verify from the host's view.
    let sock = daemon.socket.display().to_string();
    let mut verify = cmd.clone();
    verify.extend_from_slice(&[
        "--verify",
        "--docker-socket",
        &sock,
        "--container",
        "remapped",
    ]);
    let out = rampart(&verify);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("PASS remapped: root is host uid 165536"),
        "{}",
        text(&out)
    );
    let mut verify = cmd.clone();
    verify.extend_from_slice(&[
        "--verify",
        "--docker-socket",
        &sock,
        "--container",
        "hostns",
    ]);
    let out = rampart(&verify);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAIL hostns: root is host uid 0")
            && text(&out).contains("--userns=host"),
        "{}",
        text(&out)
    );
    drop(daemon);
}

#[test]
fn harden_host_refuses_malformed_and_non_regular_daemon_json_and_keeps_container_harden() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let dj = d.join("daemon.json");
    let bad = "{\n  \"debug\": true\n  \"log-level\": \"info\"\n}\n";
    std::fs::write(&dj, bad).expect("w");
    let sub = |n: &str| d.join(n).to_str().expect("utf8").to_string();
    let out = rampart(&[
        "harden",
        "host",
        "--userns",
        "--apply",
        "--daemon-json",
        &sub("daemon.json"),
        "--subuid",
        &sub("subuid"),
        "--subgid",
        &sub("subgid"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}:3:3", dj.display())),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&dj).expect("r"), bad);
    assert!(!d.join("subuid").exists());
    // A symlinked daemon.json is refused, its target untouched.
    let real = d.join("real.json");
    std::fs::write(&real, "{}").expect("w");
    let link = d.join("link.json");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let out = rampart(&[
        "harden",
        "host",
        "--userns",
        "--apply",
        "--daemon-json",
        &sub("link.json"),
        "--subuid",
        &sub("subuid"),
        "--subgid",
        &sub("subgid"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is a symlink"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&real).expect("r"), "{}");
    // `harden CONTAINER` still parses as before; `harden host` needs --userns.
    let out = rampart(&["harden", "host"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--userns"), "{}", text(&out));
    let out = rampart(&["harden", "--help"]);
    assert!(text(&out).contains("<CONTAINER>"), "{}", text(&out));
}
