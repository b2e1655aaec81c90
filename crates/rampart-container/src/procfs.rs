//! Reading a process from /proc: what the process table needs for processes that started before
//! the agent, and for events whose sensor could not describe the process.
//!
//! Every read goes through [`ProcFs`], whose root is `/proc` in production and a directory tree
//! in tests.

use std::fs;
use std::path::{Path, PathBuf};

use rampart_event::Process;

/// Access to a procfs tree.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), for start times.
    ticks: u64,
    /// Boot time, nanoseconds since the epoch (from `/proc/stat` `btime`).
    boot_ns: u64,
}

/// Boot time in nanoseconds since the epoch, to the microsecond: `CLOCK_REALTIME` minus
/// `CLOCK_BOOTTIME` (the clock of `/proc/PID/stat` start times and of the kernel's
/// `task->start_boottime`).
fn boot_time_ns() -> Option<u64> {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec to write into.
        (unsafe { libc::clock_gettime(clock, &mut ts) } == 0)
            .then(|| i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec))
    };
    let boot = read(libc::CLOCK_REALTIME)? - read(libc::CLOCK_BOOTTIME)?;
    u64::try_from(boot).ok()
}

impl Default for ProcFs {
    fn default() -> Self {
        ProcFs::new("/proc")
    }
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> ProcFs {
        let root = root.into();
        // SAFETY: sysconf has no preconditions.
        let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
        let btime_ns = || {
            fs::read_to_string(root.join("stat"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("btime "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
                .map_or(0, |s| s * 1_000_000_000)
        };
        // The live /proc: the precise boot time, so that start times agree with the sensor's
        // (`btime` is whole seconds: up to a second off).
        let boot_ns = if root == Path::new("/proc") {
            boot_time_ns().unwrap_or_else(btime_ns)
        } else {
            btime_ns()
        };
        ProcFs {
            root,
            ticks: ticks.max(1),
            boot_ns,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Thread-group ids of every process.
    pub fn pids(&self) -> Vec<u32> {
        let Ok(dir) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The cgroup paths of `pid`: (v2 path, v1 `pids` controller path).
    pub fn cgroup_paths(&self, pid: u32) -> (Option<String>, Option<String>) {
        let Ok(text) = fs::read_to_string(self.root.join(pid.to_string()).join("cgroup")) else {
            return (None, None);
        };
        let mut v2 = None;
        let mut v1 = None;
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrl, path) = (parts.next(), parts.next(), parts.next());
            match (ctrl, path) {
                (Some(""), Some(p)) => v2 = Some(p.to_string()),
                (Some(c), Some(p)) if c.split(',').any(|x| x == "pids") => v1 = Some(p.to_string()),
                _ => {}
            }
        }
        (v2, v1)
    }

    /// When `pid` started, nanoseconds since the epoch (10 ms resolution), on the clock of the
    /// sensor's `start_time_ns`; `None` when it is gone.
    pub fn start_time_ns(&self, pid: u32) -> Option<u64> {
        let stat = fs::read_to_string(self.root.join(pid.to_string()).join("stat")).ok()?;
        self.start_of(&stat)
    }

    /// Field 22 (starttime) of a `stat` line, counted after the last `)` (comm may hold spaces
    /// and parentheses), converted to nanoseconds since the epoch.
    fn start_of(&self, stat: &str) -> Option<u64> {
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let ticks: u64 = rest.split(' ').nth(19)?.parse().ok()?;
        Some(self.boot_ns + ticks * 1_000_000_000 / self.ticks)
    }

    /// Reads `pid` as a [`Process`] without ancestors; `None` when it is gone.
    pub fn process(&self, pid: u32) -> Option<Process> {
        let dir = self.root.join(pid.to_string());
        let stat = fs::read_to_string(dir.join("stat")).ok()?;
        // pid (comm) state ppid pgrp session tty_nr ... starttime is field 22.
        let close = stat.rfind(')')?;
        let name = stat.get(stat.find('(')? + 1..close)?.to_string();
        let rest: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
        let ppid = rest.get(1)?.parse().ok()?;
        let tty: i64 = rest.get(4)?.parse().ok()?;
        let mut p = Process {
            pid,
            tid: pid,
            ppid,
            name,
            tty: tty_dev(tty),
            start_time_ns: self.start_of(&stat)?,
            loginuid: u32::MAX,
            ..Process::default()
        };
        if let Ok(status) = fs::read_to_string(dir.join("status")) {
            for line in status.lines() {
                let mut f = line.split_whitespace();
                match f.next() {
                    Some("Uid:") => {
                        p.uid = parse_next(&mut f);
                        p.euid = parse_next(&mut f);
                    }
                    Some("Gid:") => {
                        p.gid = parse_next(&mut f);
                        p.egid = parse_next(&mut f);
                    }
                    Some("CapEff:") => p.cap_effective = parse_hex(f.next()),
                    Some("CapPrm:") => p.cap_permitted = parse_hex(f.next()),
                    Some("NSpid:") => p.vpid = f.last().and_then(|v| v.parse().ok()),
                    _ => {}
                }
            }
        }
        p.args = fs::read(dir.join("cmdline"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        p.exe = read_link(&dir.join("exe"));
        p.cwd = read_link(&dir.join("cwd"));
        p.loginuid = fs::read_to_string(dir.join("loginuid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u32::MAX);
        p.stdin_type = fd_type(&read_link(&dir.join("fd/0")));
        p.stdout_type = fd_type(&read_link(&dir.join("fd/1")));
        p.exe_fileless = p.exe.starts_with("/memfd:") || p.exe.ends_with(" (deleted)");
        Some(p)
    }
}

/// /proc's `tty_nr` (new_encode_dev: minor split around the major) as the kernel's internal
/// dev_t (`major << 20 | minor`), the form the BPF sensor reports.
fn tty_dev(tty_nr: i64) -> u32 {
    let n = u32::try_from(tty_nr).unwrap_or(0);
    let major = (n >> 8) & 0xfff;
    let minor = (n & 0xff) | ((n >> 12) & 0xfff00);
    (major << 20) | minor
}

fn parse_next<'a>(f: &mut impl Iterator<Item = &'a str>) -> u32 {
    f.next().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn parse_hex(v: Option<&str>) -> u64 {
    v.and_then(|x| u64::from_str_radix(x, 16).ok()).unwrap_or(0)
}

fn read_link(p: &Path) -> String {
    fs::read_link(p)
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Falco-style fd type from the target of a /proc/<pid>/fd link.
fn fd_type(target: &str) -> Option<String> {
    if target.is_empty() {
        return None;
    }
    let t = if target.starts_with("socket:") {
        // The family is not in the link; a socket on stdin is what the rules look for.
        "socket"
    } else if target.starts_with("pipe:") {
        "pipe"
    } else if target == "/dev/null" {
        "null"
    } else if target.starts_with("/dev/pts/")
        || target.starts_with("/dev/tty")
        || target == "/dev/console"
    {
        "tty"
    } else if target.starts_with("anon_inode:") {
        "anon"
    } else {
        "file"
    };
    Some(t.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_process_from_a_proc_tree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        fs::write(root.join("stat"), "cpu 1 2 3\nbtime 1700000000\n").expect("write");
        let d = root.join("42");
        fs::create_dir_all(d.join("fd")).expect("mkdir");
        fs::write(
            d.join("stat"),
            "42 (my (odd) name) S 7 42 42 34816 42 4194304 0 0 0 0 0 0 0 0 20 0 1 0 250 0 0",
        )
        .expect("write");
        fs::write(
            d.join("status"),
            "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\nCapEff:\t0000000000000400\nNSpid:\t42\t1\n",
        )
        .expect("write");
        fs::write(d.join("cmdline"), b"sh\0-c\0id\0").expect("write");
        fs::write(d.join("loginuid"), "1000").expect("write");
        std::os::unix::fs::symlink("/bin/dash", d.join("exe")).expect("symlink");
        std::os::unix::fs::symlink("/root", d.join("cwd")).expect("symlink");
        std::os::unix::fs::symlink("socket:[1234]", d.join("fd/0")).expect("symlink");
        std::os::unix::fs::symlink("/dev/pts/0", d.join("fd/1")).expect("symlink");
        let procfs = ProcFs::new(root);
        let p = procfs.process(42).expect("process");
        assert_eq!(p.name, "my (odd) name");
        assert_eq!((p.ppid, p.uid, p.euid, p.gid), (7, 1000, 0, 100));
        assert_eq!(p.vpid, Some(1));
        assert_eq!(p.cap_effective, 0x400);
        assert_eq!(p.args, vec!["sh", "-c", "id"]);
        assert_eq!((p.exe.as_str(), p.cwd.as_str()), ("/bin/dash", "/root"));
        assert_eq!(p.loginuid, 1000);
        assert_eq!(p.stdin_type.as_deref(), Some("socket"));
        assert_eq!(p.stdout_type.as_deref(), Some("tty"));
        assert_eq!(p.tty, 136 << 20, "pts/0 as major 136, minor 0");
        assert_eq!(
            p.start_time_ns,
            1_700_000_000_000_000_000 + 250 * 1_000_000_000 / procfs.ticks
        );
        assert!(procfs.process(43).is_none());
        assert_eq!(procfs.pids(), vec![42]);
    }
}
