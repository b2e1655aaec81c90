//! A second dockerd for the tests that need one of their own (the authorization plugin, TLS
//! users): a network namespace, long-running children stopped gracefully, readiness waits.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace made by the test (`ip netns add`), deleted on drop. A second dockerd,
/// its registry and the plugin share it: the daemon pulls from 127.0.0.1 of its own namespace.
pub struct NetNs(pub String);

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let name = format!("rampart-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        for args in [
            vec!["netns", "add", &name],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            let o = Command::new("ip").args(&args).output().expect("ip");
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        NetNs(name)
    }

    /// The prefix that runs a command in the namespace. nsenter, not `ip netns exec`: the latter
    /// mounts a fresh /sys, hiding the cgroup hierarchy dockerd needs.
    pub fn exec(&self) -> Vec<String> {
        vec!["nsenter".into(), format!("--net=/run/netns/{}", self.0)]
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A child service (dockerd, the plugin): SIGTERM, then SIGKILL after 20 s, on `stop` or drop.
pub struct Service(pub Child);

impl Service {
    pub fn stop(&mut self) {
        // Never a signal to a reaped child: its pid may belong to another process by now
        // (`stop` runs again on drop).
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `argv` with stdout and stderr to `log`.
pub fn spawn_logged(argv: &[String], log: &Path) -> Service {
    let f = std::fs::File::create(log).expect("log");
    Service(
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}")),
    )
}

/// Waits up to 60 s for `ok`; panics with `log` when it never holds.
pub fn wait_for(what: &str, log: &Path, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{what} did not come up:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The command line of a second dockerd in `ns`: data, exec root and pid file under `dir`, its
/// own containerd namespaces and cgroup parent named after `tag`, no bridge and no iptables
/// changes, listening on `hosts` (`-H` values), plus `extra` flags (the plugin, TLS). It runs in
/// a mount namespace of its own so its mounts do not leak into the host's.
pub fn dockerd_argv(
    ns: &NetNs,
    dir: &Path,
    tag: &str,
    hosts: &[String],
    extra: &[String],
) -> Vec<String> {
    let path = |p: &str| dir.join(p).display().to_string();
    let id = format!("rampart-{tag}-{}", std::process::id());
    let mut argv = ns.exec();
    argv.extend(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "dockerd",
            "--data-root",
            &path("data"),
            "--exec-root",
            &path("exec"),
            "--pidfile",
            &path("docker.pid"),
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
            "--cgroup-parent",
            &format!("/{id}"),
            "--containerd-namespace",
            &id,
            "--containerd-plugins-namespace",
            &format!("{id}-plugins"),
        ]
        .map(String::from),
    );
    for h in hosts {
        argv.extend(["-H".to_string(), h.clone()]);
    }
    argv.extend(extra.iter().cloned());
    argv
}
