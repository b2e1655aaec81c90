//! Reading cgroup controllers and a process's cgroup files, for limits (container checks),
//! controller availability (host checks) and resource peaks (hardening proposals).
//!
//! Works on v1, v2 and hybrid hosts: each controller is looked up in the v1 hierarchy that has
//! it, else in the unified hierarchy if the controller is enabled there.

use std::fs;
use std::path::{Path, PathBuf};

/// The controllers container limits depend on.
pub const CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "io"];

/// Where each hierarchy is mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// The unified (v2) mount point.
    pub unified: Option<PathBuf>,
    /// v1 mounts: (mount point, controllers it carries).
    pub v1: Vec<(PathBuf, Vec<String>)>,
}

/// Which hierarchy serves a controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// A v1 hierarchy at this mount point.
    V1(PathBuf),
    /// The unified hierarchy (controller listed in its root `cgroup.controllers`).
    V2(PathBuf),
}

impl Mounts {
    /// Reads `mountinfo` (normally /proc/self/mountinfo).
    pub fn from_mountinfo(text: &str) -> Mounts {
        let mut m = Mounts::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = unescape(left.split(' ').nth(4).unwrap_or_default());
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or_default();
            let superopts = r.nth(1).unwrap_or_default();
            match fstype {
                "cgroup2" if m.unified.is_none() => m.unified = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    let ctrls: Vec<String> = superopts
                        .split(',')
                        .filter(|o| {
                            !o.starts_with("name=")
                                && !matches!(
                                    *o,
                                    "rw" | "ro" | "relatime" | "noexec" | "nosuid" | "nodev"
                                )
                        })
                        .map(str::to_string)
                        .collect();
                    m.v1.push((PathBuf::from(mount_point), ctrls));
                }
                _ => {}
            }
        }
        m
    }

    /// This process's mounts.
    pub fn current() -> Mounts {
        fs::read_to_string("/proc/self/mountinfo")
            .map(|t| Mounts::from_mountinfo(&t))
            .unwrap_or_default()
    }

    /// The hierarchy that serves `controller` (v1 names: `blkio` for io, `cpu` for cpu).
    pub fn serving(&self, controller: &str) -> Option<Served> {
        let v1_name = match controller {
            "io" => "blkio",
            other => other,
        };
        if let Some((p, _)) = self.v1.iter().find(|(_, c)| c.iter().any(|x| x == v1_name)) {
            return Some(Served::V1(p.clone()));
        }
        let root = self.unified.as_ref()?;
        let enabled = fs::read_to_string(root.join("cgroup.controllers")).ok()?;
        enabled
            .split_whitespace()
            .any(|c| c == controller)
            .then(|| Served::V2(root.clone()))
    }

    /// The directory of `controller` for process `pid`, from /proc/PID/cgroup.
    pub fn dir_of(&self, proc_root: &Path, pid: u32, controller: &str) -> Option<PathBuf> {
        let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
        match self.serving(controller)? {
            Served::V1(mount) => {
                let v1_name = if controller == "io" {
                    "blkio"
                } else {
                    controller
                };
                text.lines().find_map(|l| {
                    let mut p = l.splitn(3, ':');
                    let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
                    ctrls
                        .split(',')
                        .any(|c| c == v1_name)
                        .then(|| mount.join(path.trim_start_matches('/')))
                })
            }
            Served::V2(mount) => text.lines().find_map(|l| {
                l.strip_prefix("0::")
                    .map(|path| mount.join(path.trim_start_matches('/')))
            }),
        }
    }

    /// The cgroup v2 directory of process `pid`, if the host has a unified hierarchy.
    pub fn unified_dir_of(&self, proc_root: &Path, pid: u32) -> Option<PathBuf> {
        let mount = self.unified.as_ref()?;
        let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("0::")
                .map(|path| mount.join(path.trim_start_matches('/')))
        })
    }
}

/// mountinfo escapes space, tab, newline and backslash as a backslash and three octal digits.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A limit file's value: `None` for unlimited (`max`, or v1's page-rounded i64::MAX).
pub fn read_limit(path: &Path) -> Option<Option<u64>> {
    let text = fs::read_to_string(path).ok()?;
    let t = text.trim();
    if t == "max" {
        return Some(None);
    }
    let v: u64 = t.parse().ok()?;
    // v1 reports "unlimited" as PAGE_COUNTER_MAX * PAGE_SIZE, a number near i64::MAX.
    Some((v < (1u64 << 62)).then_some(v))
}

/// A single-number file (`memory.usage_in_bytes`, `pids.current`).
pub fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `usage_usec` of a v2 `cpu.stat`, in nanoseconds.
pub fn read_cpu_stat_ns(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|us| us * 1000)
}

/// Memory limit of a cgroup directory of the memory controller (v1 or v2).
pub fn memory_limit(dir: &Path) -> Option<Option<u64>> {
    read_limit(&dir.join("memory.max")).or_else(|| read_limit(&dir.join("memory.limit_in_bytes")))
}

/// Pids limit of a cgroup directory of the pids controller.
pub fn pids_limit(dir: &Path) -> Option<Option<u64>> {
    read_limit(&dir.join("pids.max"))
}

/// Current and peak memory of a memory-controller directory: (current, peak since the cgroup
/// was created when the kernel keeps one).
pub fn memory_usage(dir: &Path) -> (Option<u64>, Option<u64>) {
    let current = read_u64(&dir.join("memory.current"))
        .or_else(|| read_u64(&dir.join("memory.usage_in_bytes")));
    let peak = read_u64(&dir.join("memory.peak"))
        .or_else(|| read_u64(&dir.join("memory.max_usage_in_bytes")));
    (current, peak)
}

/// Total CPU time of a cpu/cpuacct directory, nanoseconds.
pub fn cpu_usage_ns(dir: &Path) -> Option<u64> {
    read_cpu_stat_ns(&dir.join("cpu.stat")).or_else(|| read_u64(&dir.join("cpuacct.usage")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
35 30 0:31 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
36 30 0:32 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";

    #[test]
    fn v1_controllers_of_a_hybrid_host() {
        let m = Mounts::from_mountinfo(HYBRID);
        assert_eq!(m.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.serving("memory"),
            Some(Served::V1(PathBuf::from("/sys/fs/cgroup/memory")))
        );
        assert_eq!(
            m.serving("io"),
            Some(Served::V1(PathBuf::from("/sys/fs/cgroup/blkio")))
        );
        let systemd =
            m.v1.iter()
                .find(|(p, _)| p.ends_with("systemd"))
                .expect("named");
        assert!(systemd.1.is_empty(), "a named hierarchy has no controllers");
    }

    #[test]
    fn dir_of_a_process_from_proc_cgroup() {
        let m = Mounts::from_mountinfo(HYBRID);
        let proc_root = tempfile::tempdir().expect("tmp");
        fs::create_dir(proc_root.path().join("42")).expect("mkdir");
        fs::write(
            proc_root.path().join("42/cgroup"),
            "4:memory:/docker/abc\n8:pids:/docker/abc\n0::/docker/abc\n",
        )
        .expect("write");
        assert_eq!(
            m.dir_of(proc_root.path(), 42, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/docker/abc"))
        );
        assert_eq!(
            m.unified_dir_of(proc_root.path(), 42),
            Some(PathBuf::from("/sys/fs/cgroup/unified/docker/abc"))
        );
    }

    #[test]
    fn limits_read_max_and_v1_unlimited_as_none() {
        let d = tempfile::tempdir().expect("tmp");
        fs::write(
            d.path().join("memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .expect("w");
        assert_eq!(memory_limit(d.path()), Some(None));
        fs::write(d.path().join("memory.max"), "67108864\n").expect("w");
        assert_eq!(memory_limit(d.path()), Some(Some(64 << 20)));
        fs::write(d.path().join("pids.max"), "max\n").expect("w");
        assert_eq!(pids_limit(d.path()), Some(None));
        assert_eq!(pids_limit(&d.path().join("nope")), None);
    }

    #[test]
    fn mountinfo_octal_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
