//! Response actions on processes and containers: kill a process or a process tree, kill every
//! process of a container, freeze and thaw a container (cgroup freezer), stop it (Docker API).
//! Isolation is in [`crate::PolicyEnforcer`], since it lives in the kernel's policy maps.
//!
//! Processes are signalled through pidfds after checking that the pid still is the process we
//! mean (its start time) and that it belongs to the container (its cgroup): a pid that was
//! reused between the alert and the action is not touched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rampart_container::DockerClient;

use crate::error::RespondError;
use crate::facts::ContainerFacts;

/// A process to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRef {
    /// Host pid.
    pub pid: u32,
    /// When it started, nanoseconds since the epoch, if known (the event's `start_time_ns`):
    /// a process with the same pid and another start time is left alone.
    pub start_time_ns: Option<u64>,
}

/// Start time of `pid`, nanoseconds since the epoch, from /proc (10 ms resolution), on the
/// sensor's clock.
pub fn start_time_ns(pid: u32) -> Option<u64> {
    rampart_container::ProcFs::default().start_time_ns(pid)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// The process is in `cgroup` (its v2 cgroup is that directory or below it).
pub fn in_cgroup(pid: u32, cgroup: &Path) -> bool {
    crate::facts::cgroup_v2_dir(pid).is_some_and(|d| d.starts_with(cgroup))
}

/// A pidfd, so that a signal reaches the process we checked, never a successor with its pid.
struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    fn open(pid: u32) -> std::io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        Ok(PidFd(unsafe {
            std::os::fd::FromRawFd::from_raw_fd(fd as i32)
        }))
    }

    fn signal(&self, sig: i32) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Opens a pidfd for `p` after checking it is the process meant (start time within 20 ms) and,
/// with `cgroup`, that it runs in that cgroup.
fn checked_pidfd(p: ProcessRef, cgroup: Option<&Path>) -> Result<PidFd, RespondError> {
    let fd = PidFd::open(p.pid).map_err(|e| RespondError::Process {
        pid: p.pid,
        message: format!("not running ({e})"),
    })?;
    // Checked after opening the pidfd: if these hold now, the fd refers to this process.
    if let Some(want) = p.start_time_ns {
        let have = start_time_ns(p.pid).unwrap_or(0);
        if have.abs_diff(want) > 20_000_000 {
            return Err(RespondError::Process {
                pid: p.pid,
                message:
                    "the pid now belongs to another process (start time differs); not signalled"
                        .into(),
            });
        }
    }
    if let Some(cg) = cgroup {
        if !in_cgroup(p.pid, cg) {
            return Err(RespondError::Process {
                pid: p.pid,
                message: format!(
                    "is not in the container's cgroup {}; not signalled",
                    cg.display()
                ),
            });
        }
    }
    Ok(fd)
}

/// The process has exited (gone, or a zombie waiting for its parent).
fn exited(pid: u32) -> bool {
    exit_state(pid).is_some()
}

/// How the process ended, when it has: `None` while it runs (or its state cannot be read for
/// another reason than its absence, e.g. no file descriptor left: then it is not "exited").
fn exit_state(pid: u32) -> Option<String> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            return Some("and was reaped".into())
        }
        Err(_) => return None,
    };
    // Fields after the command name: state is the first; exit_code (a wait status) the 50th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    if state != "Z" && state != "X" {
        return None;
    }
    let status: i32 = fields.get(49).and_then(|f| f.parse().ok()).unwrap_or(-1);
    Some(if status < 0 {
        "(a zombie)".into()
    } else if status & 0x7f == 0 {
        format!("with status {}", (status >> 8) & 0xff)
    } else {
        format!("on signal {}", status & 0x7f)
    })
}

/// Kills one process with SIGKILL.
pub fn kill_process(p: ProcessRef, cgroup: Option<&Path>) -> Result<(), RespondError> {
    if let Some(how) = exit_state(p.pid) {
        return Err(RespondError::Process {
            pid: p.pid,
            message: format!("has already exited {how}"),
        });
    }
    let fd = checked_pidfd(p, cgroup)?;
    fd.signal(libc::SIGKILL).map_err(|e| RespondError::Process {
        pid: p.pid,
        message: format!("SIGKILL: {e}"),
    })
}

/// Kills a process and all its descendants: stops them all first (so none can fork or be
/// re-parented away), then kills them, and returns (with the pids) once they have exited.
pub fn kill_tree(p: ProcessRef, cgroup: Option<&Path>) -> Result<Vec<u32>, RespondError> {
    let root = checked_pidfd(p, cgroup)?;
    root.signal(libc::SIGSTOP)
        .map_err(|e| RespondError::Process {
            pid: p.pid,
            message: format!("SIGSTOP: {e}"),
        })?;
    let mut tree: BTreeSet<u32> = BTreeSet::from([p.pid]);
    let mut fds = vec![root];
    // Stop descendants until a pass finds no new one.
    for _ in 0..64 {
        let mut added = false;
        for pid in all_pids() {
            if tree.contains(&pid) {
                continue;
            }
            if parent_of(pid).is_some_and(|pp| tree.contains(&pp)) {
                if let Ok(fd) = PidFd::open(pid) {
                    let _ = fd.signal(libc::SIGSTOP);
                    fds.push(fd);
                    tree.insert(pid);
                    added = true;
                }
            }
        }
        if !added {
            break;
        }
    }
    for fd in &fds {
        let _ = fd.signal(libc::SIGKILL);
    }
    // Return once they are dead, so that what runs next sees them gone.
    let end = Instant::now() + Duration::from_secs(2);
    while tree.iter().any(|p| !exited(*p)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(tree.into_iter().collect())
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every process in `cgroup` and below.
pub fn cgroup_pids(cgroup: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![cgroup.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `rampart respond kill`: every process of running container `c` (`pid` `None`), or one of
/// its processes, or (`tree`) that process and its descendants; what was killed, in words.
/// A pid outside the container is refused.
pub fn kill(c: &ContainerFacts, pid: Option<u32>, tree: bool) -> Result<String, RespondError> {
    let Some(cg) = c.cgroup.clone() else {
        return Err(RespondError::NotRunning(c.label()));
    };
    let Some(pid) = pid else {
        let n = kill_container(c)?;
        return Ok(format!("killed {n} processes of {}", c.label()));
    };
    let p = ProcessRef {
        pid,
        start_time_ns: start_time_ns(pid),
    };
    if tree {
        let pids = kill_tree(p, Some(&cg))?;
        Ok(format!(
            "killed {} processes of {}: {pids:?}",
            pids.len(),
            c.label()
        ))
    } else {
        kill_process(p, Some(&cg))?;
        Ok(format!("killed pid {pid} of {}", c.label()))
    }
}

/// Kills every process of the container (`cgroup.kill` where the kernel has it, 5.14+;
/// otherwise SIGKILL to each process until none is left). Returns how many were signalled.
pub fn kill_container(c: &ContainerFacts) -> Result<usize, RespondError> {
    let cg = container_cgroup(c, "kill")?;
    let pids = cgroup_pids(&cg);
    let kill_file = cg.join("cgroup.kill");
    if kill_file.exists() {
        std::fs::write(&kill_file, "1").map_err(|e| RespondError::io(&kill_file, e))?;
        return Ok(pids.len());
    }
    for _ in 0..10 {
        let left = cgroup_pids(&cg);
        if left.is_empty() {
            break;
        }
        for pid in left {
            if let Ok(fd) = PidFd::open(pid) {
                let _ = fd.signal(libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(pids.len())
}

fn container_cgroup(c: &ContainerFacts, what: &'static str) -> Result<PathBuf, RespondError> {
    if !c.running {
        return Err(RespondError::NotRunning(c.label()));
    }
    c.cgroup.clone().ok_or_else(|| RespondError::NoCgroup {
        container: c.label(),
        what,
    })
}

/// How a container was frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freezer {
    /// `cgroup.freeze` of the container's cgroup v2 directory.
    V2,
    /// `freezer.state` of the v1 freezer hierarchy (what `docker pause` uses on cgroup v1).
    V1,
}

fn v1_freezer_state(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let ctrls = parts.next()?;
        let path = parts.next()?;
        ctrls.split(',').any(|c| c == "freezer").then_some(path)
    })?;
    let p = Path::new("/sys/fs/cgroup/freezer")
        .join(rel.trim_start_matches('/'))
        .join("freezer.state");
    p.exists().then_some(p)
}

/// Freezes every process of the container and waits (up to 5 s) until the kernel reports it
/// frozen.
pub fn freeze(c: &ContainerFacts) -> Result<Freezer, RespondError> {
    set_frozen(c, true)
}

/// Whether every process of the container is frozen now (by [`freeze`], `docker pause` or a
/// playbook's `freeze`).
pub fn is_frozen(c: &ContainerFacts) -> bool {
    let Ok(cg) = container_cgroup(c, "freeze") else {
        return false;
    };
    if std::fs::read_to_string(cg.join("cgroup.events"))
        .is_ok_and(|s| s.lines().any(|l| l == "frozen 1"))
    {
        return true;
    }
    v1_freezer_state(c.pid)
        .is_some_and(|f| std::fs::read_to_string(f).is_ok_and(|s| s.trim() == "FROZEN"))
}

/// Thaws a container frozen by [`freeze`] (or by `docker pause` on cgroup v1).
pub fn thaw(c: &ContainerFacts) -> Result<Freezer, RespondError> {
    set_frozen(c, false)
}

fn set_frozen(c: &ContainerFacts, frozen: bool) -> Result<Freezer, RespondError> {
    let cg = container_cgroup(c, "freeze")?;
    let v2 = cg.join("cgroup.freeze");
    let v1 = v1_freezer_state(c.pid);
    if !frozen {
        // Thaw whichever is frozen.
        let mut which = None;
        if v2.exists() {
            std::fs::write(&v2, "0").map_err(|e| RespondError::io(&v2, e))?;
            which = Some(Freezer::V2);
        }
        if let Some(v1) = &v1 {
            if std::fs::read_to_string(v1).is_ok_and(|s| s.trim() != "THAWED") {
                std::fs::write(v1, "THAWED").map_err(|e| RespondError::io(v1, e))?;
                which = Some(Freezer::V1);
            }
        }
        return which.ok_or_else(|| RespondError::NoCgroup {
            container: c.label(),
            what: "thaw",
        });
    }
    let (which, file, check): (Freezer, PathBuf, Box<dyn Fn() -> bool>) = if v2.exists() {
        let events = cg.join("cgroup.events");
        (
            Freezer::V2,
            v2.clone(),
            Box::new(move || {
                std::fs::read_to_string(&events).is_ok_and(|s| s.lines().any(|l| l == "frozen 1"))
            }),
        )
    } else if let Some(v1) = v1 {
        let f = v1.clone();
        (
            Freezer::V1,
            v1,
            Box::new(move || std::fs::read_to_string(&f).is_ok_and(|s| s.trim() == "FROZEN")),
        )
    } else {
        return Err(RespondError::NoCgroup {
            container: c.label(),
            what: "freeze",
        });
    };
    let value = match which {
        Freezer::V2 => "1",
        Freezer::V1 => "FROZEN",
    };
    std::fs::write(&file, value).map_err(|e| RespondError::io(&file, e))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        if Instant::now() > deadline {
            return Err(RespondError::State {
                path: file,
                message: "the container did not report frozen within 5 s".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(which)
}

/// Stops the container through Docker (SIGTERM, then SIGKILL after `grace`).
pub async fn stop(
    docker: &DockerClient,
    c: &ContainerFacts,
    grace: Duration,
) -> Result<(), RespondError> {
    // Docker takes whole seconds; a grace beyond i32 seconds is the default 10 s, as before.
    let grace = if i32::try_from(grace.as_secs()).is_ok() {
        grace
    } else {
        Duration::from_secs(10)
    };
    docker
        .stop(&c.id, grace)
        .await
        .map_err(|e| RespondError::Docker {
            op: "stop container",
            target: c.label(),
            message: e.message(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn kill_tree_kills_descendants_and_refuses_a_reused_pid() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let pid = child.id();
        let kids: Vec<u32> = all_pids()
            .into_iter()
            .filter(|p| parent_of(*p) == Some(pid))
            .collect();
        assert_eq!(kids.len(), 2);
        let start = start_time_ns(pid).unwrap();
        let wrong = ProcessRef {
            pid,
            start_time_ns: Some(start - 5_000_000_000),
        };
        assert!(
            kill_tree(wrong, None).is_err(),
            "another start time: left alone"
        );
        let killed = kill_tree(
            ProcessRef {
                pid,
                start_time_ns: Some(start),
            },
            None,
        )
        .unwrap();
        assert_eq!(killed.len(), 3, "{killed:?}");
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        std::thread::sleep(Duration::from_millis(100));
        for k in kids {
            assert!(
                std::fs::read_to_string(format!("/proc/{k}/stat"))
                    .map_or(true, |s| s.contains(") Z ")),
                "child {k} still alive"
            );
        }
    }

    #[test]
    fn a_process_that_already_exited_is_reported_with_how_it_ended() {
        use std::process::Command;
        // Zombies (not yet reaped by this test): one exits 3, one is killed by SIGKILL.
        let mut exits = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let mut killed = Command::new("sleep").arg("300").spawn().unwrap();
        let ref_of = |pid| ProcessRef {
            pid,
            start_time_ns: None,
        };
        assert!(exit_state(killed.id()).is_none(), "running");
        // SAFETY: our own child, not reaped yet.
        unsafe { libc::kill(killed.id() as i32, libc::SIGKILL) };
        let end = Instant::now() + Duration::from_secs(5);
        while (exit_state(exits.id()).is_none() || exit_state(killed.id()).is_none())
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let e = kill_process(ref_of(exits.id()), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has already exited with status 3"), "{e}");
        let e = kill_process(ref_of(killed.id()), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has already exited on signal 9"), "{e}");
        exits.wait().unwrap();
        killed.wait().unwrap();
    }
}
