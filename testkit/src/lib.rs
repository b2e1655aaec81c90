//! Test support for Rampart's crates.
//!
//! * [`require!`] gates a test on what it needs (root, Docker, BPF). Outside CI a missing need
//!   skips the test with a loud `SKIPPED` line on stderr; in CI (`CI=true`) it fails the test, so
//!   CI can never go green by skipping.
//! * [`busybox_image`] and [`debian_image`] build the test images locally (never pulled): a
//!   busybox-static image and a Debian bookworm minbase image from debootstrap, cached under
//!   [`cache_dir`] and in the local Docker image store so repeated runs are fast.
//! * [`TestContainer`] runs a container and removes it when dropped.
//! * [`Postgres`] and [`HaProxy`] run a private PostgreSQL cluster and a TCP proxy on loopback
//!   ports (Debian packages `postgresql`, `haproxy`), for tests of several servers as one.
//!
//! Tests use the `docker` CLI: it is the tool a user would use, and it keeps the tests
//! independent of the code under test.
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failure here is a test failure"
)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

mod services;
pub use services::{postgres_bin, ClickHouse, HaProxy, Postgres, CLICKHOUSE_BIN, HAPROXY_BIN};

/// What a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0.
    Root,
    /// A reachable Docker daemon (`docker info` works).
    Docker,
    /// The kernel accepts BPF programs from this process (root and BTF present).
    Bpf,
    /// Debian's Chromium and ChromeDriver (`/usr/bin/chromium`, `/usr/bin/chromedriver`).
    Chromium,
}

/// True when running under CI (`CI=true` or `CI=1`), where skipping is a failure.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn missing(need: Need) -> Option<String> {
    match need {
        Need::Root => (unsafe { libc::geteuid() } != 0).then(|| "root (run as root: sudo)".into()),
        Need::Docker => {
            let ok = Command::new("docker")
                .args(["info", "--format", "{{.ServerVersion}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            (!ok).then(|| "a running Docker daemon (scripts/test starts dockerd)".into())
        }
        Need::Bpf => {
            if unsafe { libc::geteuid() } != 0 {
                Some("root for BPF".into())
            } else if !Path::new("/sys/kernel/btf/vmlinux").exists() {
                Some("kernel BTF (/sys/kernel/btf/vmlinux)".into())
            } else {
                None
            }
        }
        Need::Chromium => {
            let missing: Vec<&str> = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
                .into_iter()
                .filter(|p| !Path::new(p).exists())
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "{} (Debian packages chromium, chromium-driver: scripts/setup)",
                    missing.join(", ")
                )
            })
        }
    }
}

/// Checks `needs`; returns false (after printing a loud SKIPPED line) when one is missing
/// outside CI, panics when one is missing in CI.
pub fn available(needs: &[Need], test: &str) -> bool {
    let missing: Vec<String> = needs.iter().filter_map(|n| missing(*n)).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test} needs {}", missing.join(", "));
    if in_ci() {
        panic!("CI=true and {msg}: CI must run every test");
    }
    eprintln!("\n=== SKIPPED: {msg} ===\n");
    false
}

/// For a test that finds something it needs missing in a way [`require!`] cannot check (a
/// cgroup v2 hierarchy, a header file, a kernel tracepoint): prints a loud SKIPPED line outside
/// CI, panics in CI (`CI=true`), where every test must run.
pub fn skip(test: &str, why: &str) {
    let msg = format!("{test} needs {why}");
    if in_ci() {
        panic!("CI=true and {msg}: CI must run every test");
    }
    eprintln!("\n=== SKIPPED: {msg} ===\n");
}

/// Returns from the test (skipping it loudly) unless every need is met; fails in CI.
///
/// ```ignore
/// #[test]
/// fn sees_exec_in_container() {
///     testkit::require!(Root, Docker, Bpf);
///     ...
/// }
/// ```
#[macro_export]
macro_rules! require {
    ($($need:ident),+ $(,)?) => {
        if !$crate::available(&[$($crate::Need::$need),+], module_path!()) {
            return;
        }
    };
}

/// Where test fixtures are cached across runs (`RAMPART_TEST_CACHE`, default
/// `/var/cache/rampart/test`).
pub fn cache_dir() -> PathBuf {
    let dir = std::env::var_os("RAMPART_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/rampart/test"));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// An exclusive lock on a file in the cache dir, held until dropped; serialises fixture builds
/// across test processes.
struct CacheLock {
    /// Held open: the lock lives as long as the descriptor.
    _file: File,
}

impl CacheLock {
    fn take(name: &str) -> CacheLock {
        let f = File::create(cache_dir().join(format!("{name}.lock"))).unwrap();
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {name}");
        CacheLock { _file: f }
    }
}

/// Runs `docker` with `args`, returning its output (whatever the exit status).
pub fn docker<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// Runs `docker` with `args` and returns stdout, panicking with stderr when it fails.
pub fn docker_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = docker(&args);
    assert!(
        out.status.success(),
        "docker {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn image_exists(tag: &str) -> bool {
    docker(["image", "inspect", "--format", "{{.Id}}", tag])
        .status
        .success()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Imports the directory `root` as image `tag` (`ENV PATH` set, since `docker import` sets none).
fn import_dir(root: &Path, tag: &str) {
    let mut tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tar");
    run(Command::new("docker")
        .args([
            "import",
            "-c",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "-",
            tag,
        ])
        .stdin(tar.stdout.take().expect("tar stdout")));
    assert!(
        tar.wait().is_ok_and(|s| s.success()),
        "tar of {} failed",
        root.display()
    );
}

/// Tag of the busybox test image: a static busybox (Debian's busybox-static) with its applets
/// linked in /bin, an /etc/passwd with root and `nobody`, /tmp. Built on first use.
pub fn busybox_image() -> String {
    const TAG: &str = "rampart-test/busybox:1";
    let _lock = CacheLock::take("busybox-image");
    if image_exists(TAG) {
        return TAG.into();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox-static is not installed (scripts/setup installs it)");
    let root = cache_dir().join("busybox-root");
    let _ = fs::remove_dir_all(&root);
    for d in [
        "bin", "etc", "tmp", "root", "proc", "sys", "dev", "var/log", "usr/bin",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let list = Command::new(busybox).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    run(Command::new("chmod").args(["1777"]).arg(root.join("tmp")));
    import_dir(&root, TAG);
    TAG.into()
}

/// Tag of the Debian bookworm minbase test image, built with debootstrap from the mirror in
/// /etc/apt/sources.list.d/debian.sources (or /etc/apt/sources.list). The rootfs is cached in
/// [`cache_dir`]; the first build takes a few minutes.
pub fn debian_image() -> String {
    const TAG: &str = "rampart-test/debian:bookworm";
    let _lock = CacheLock::take("debian-image");
    if image_exists(TAG) {
        return TAG.into();
    }
    let root = cache_dir().join("debian-bookworm");
    let done = cache_dir().join("debian-bookworm.done");
    if !done.exists() {
        let _ = fs::remove_dir_all(&root);
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&root)
            .arg(debian_mirror()));
        fs::write(&done, b"ok").unwrap();
    }
    import_dir(&root, TAG);
    TAG.into()
}

/// Tag of the Debian test image with logrotate installed (Debian's own package, fetched with
/// `apt-get download` from this machine's mirror and installed with dpkg in a container that is
/// then committed). For tests of real log rotation.
pub fn logrotate_image() -> String {
    const TAG: &str = "rampart-test/debian-logrotate:1";
    let base = debian_image();
    let _lock = CacheLock::take("logrotate-image");
    if image_exists(TAG) {
        return TAG.into();
    }
    let debs = cache_dir().join("logrotate-debs");
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs).unwrap();
    run(Command::new("apt-get")
        .args(["download", "logrotate", "libpopt0"])
        .current_dir(&debs));
    let name = unique("logrotate-build");
    let mount = format!("{}:/debs:ro", debs.display());
    docker_ok([
        "run",
        "--name",
        &name,
        "-v",
        &mount,
        &base,
        "sh",
        "-c",
        // cron (logrotate's scheduler) is not needed: tests run logrotate themselves.
        "dpkg -i --force-depends /debs/*.deb",
    ]);
    docker_ok(["commit", &name, TAG]);
    let _ = docker(["rm", "-f", &name]);
    TAG.into()
}

/// The Debian mirror this machine's apt uses.
pub fn debian_mirror() -> String {
    for f in [
        "/etc/apt/sources.list.d/debian.sources",
        "/etc/apt/sources.list",
    ] {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("URIs:") {
                if let Some(u) = rest.split_whitespace().find(|u| !u.contains("security")) {
                    return u.to_string();
                }
            }
            if let Some(rest) = line.strip_prefix("deb ") {
                if let Some(u) = rest.split_whitespace().find(|w| w.starts_with("http")) {
                    if !u.contains("security") {
                        return u.to_string();
                    }
                }
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

/// A name unique to this process and call, for containers, networks and files.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running container, removed (`docker rm -f`) when dropped.
#[derive(Debug)]
pub struct TestContainer {
    pub id: String,
    pub name: String,
}

impl TestContainer {
    /// `docker run -d --name <unique> ARGS...`; `args` are the options, the image and the command.
    pub fn run(prefix: &str, args: &[&str]) -> TestContainer {
        let name = unique(prefix);
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend_from_slice(args);
        let id = docker_ok(&all);
        TestContainer { id, name }
    }

    /// `docker exec NAME ARGS...`, returning the output.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    /// Host pid of the container's init process.
    pub fn pid(&self) -> u32 {
        docker_ok(["inspect", "-f", "{{.State.Pid}}", &self.name])
            .parse()
            .expect("pid")
    }

    /// `docker inspect -f FORMAT`.
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(["inspect", "-f", format, &self.name])
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = docker(["rm", "-f", "-v", &self.name]);
    }
}

/// Copies `images` from the host's dockerd into the daemon at `host` (`unix://...`), by
/// `docker save | docker -H host load` (no registry is reachable from the test daemons).
pub fn load_images(host: &str, images: &[&str]) {
    let mut save = Command::new("docker")
        .arg("save")
        .args(images)
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker save");
    let load = Command::new("docker")
        .args(["-H", host, "load", "-q"])
        .stdin(save.stdout.take().expect("stdout"))
        .output()
        .expect("docker load");
    assert!(
        save.wait().expect("save").success() && load.status.success(),
        "docker load into {host}: {}",
        String::from_utf8_lossy(&load.stderr)
    );
}
