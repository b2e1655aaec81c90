//! Learning what a container really does: its syscalls and capability checks (counted in the
//! kernel by [`rampart_kernel::SyscallRecorder`], filtered to the container's cgroup), the
//! files it writes (`docker diff`) and its resource peaks (cgroup files, sampled).
//!
//! # Seccomp during learning
//! A seccomp filter refuses syscalls before any tracepoint sees them, so a container must be
//! learned under a filter that refuses nothing:
//! * `--security-opt seccomp=unconfined`: everything the container's cgroup does is recorded,
//!   including what the runtime (runc) does while it sets the container up (mount,
//!   pivot_root, ...). The learned profile allows those too: a wider profile, but one that
//!   works.
//! * `--security-opt seccomp=learn.json` with Rampart's learning profile
//!   ([`crate::seccomp::learning_profile`], allow-all): the runtime installs it as a real filter
//!   just before it starts the container's process, so only syscalls made under a filter are
//!   kept: exactly the set the learned profile must allow. The tighter choice.
//!
//! Under Docker's default profile (or any profile that refuses syscalls) learning is refused
//! with an error saying how to re-create the container.
//!
//! # Start-up
//! With `restart`, the recorder watches the container's parent cgroup, restarts the container
//! and follows it into its new cgroup, so start-up (the runtime's last steps, the entrypoint's
//! exec and initialisation) is recorded: a profile learned without it may not let the
//! container start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rampart_container::models::{ChangeType, ContainerInspectResponse};
use rampart_container::{DockerClient, IoCounters};
use rampart_kernel::{CgroupRef, SyscallRecorder, WatchScope};
use serde::{Deserialize, Serialize};

use crate::blockdev::{self, BlockDevice};
use crate::caps;
use crate::cgroupfs::{self, Mounts};
use crate::error::AuditError;
use crate::seccomp::{self, NamedSyscalls, SeccompProfile};

/// How the container was confined while it was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LearnMode {
    /// `seccomp=unconfined`: every syscall of the cgroup is kept.
    Unconfined,
    /// An allow-all filter: only syscalls made under the filter are kept.
    LearningProfile,
}

/// How often a capability was checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapUse {
    pub granted: u64,
    pub denied: u64,
}

/// A path the container changed in its writable layer (`docker diff`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    /// `A` added, `C` changed, `D` deleted.
    pub kind: char,
}

/// Resource peaks seen during the recording.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Peaks {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    /// Highest CPU use over one sampling interval, in cores.
    pub cpu_cores: Option<f64>,
    /// Highest block IO over one sampling interval, per second (all devices summed); `None`
    /// when the cgroup's IO counters were not readable. On cgroup v1 buffered writes are
    /// charged to the kernel's writeback, not the container, so only direct and synchronous
    /// writes count there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_write_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_read_iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_write_iops: Option<u64>,
}

/// What one recording learned about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub container: String,
    pub container_id: String,
    pub image: String,
    pub mode: LearnMode,
    /// The container was restarted under the recorder (start-up included).
    pub restarted: bool,
    pub duration_ms: u64,
    pub syscalls: NamedSyscalls,
    /// Capability checks by name; `None` when the kernel cannot record them.
    pub capabilities: Option<BTreeMap<String, CapUse>>,
    /// Why capabilities were not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities_unavailable: Option<String>,
    pub changes: Vec<Change>,
    pub peaks: Peaks,
    /// The disk holding the container's writable layer (Docker's data root), which IO limits
    /// name; `None` when it could not be found (the reason is in `warnings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_device: Option<BlockDevice>,
    /// Counts lost because a kernel map was full (0 for a complete recording).
    pub lost: u64,
    /// Things a person should know about this recording.
    pub warnings: Vec<String>,
}

impl Recording {
    /// The seccomp profile that allows the recorded syscalls, plus the few the runtime makes
    /// depending on timing ([`seccomp::RUNTIME_TIMING`]), which a recording may miss.
    pub fn profile(&self) -> SeccompProfile {
        let mut names: BTreeSet<String> = self.syscalls.names.keys().cloned().collect();
        let recorded = names.len();
        names.extend(seccomp::RUNTIME_TIMING.iter().map(|n| n.to_string()));
        seccomp::allow_list(
            &names,
            format!(
                "learned by rampart from container {} ({}) over {} s, {} syscalls recorded + {} the runtime makes depending on timing, {}",
                self.container,
                self.image,
                self.duration_ms / 1000,
                recorded,
                names.len() - recorded,
                match self.mode {
                    LearnMode::Unconfined => "recorded unconfined (runtime set-up included)",
                    LearnMode::LearningProfile => "recorded under the learning profile",
                }
            ),
        )
    }

    /// Capabilities the workload was granted at least once.
    pub fn used_capabilities(&self) -> Option<BTreeSet<String>> {
        self.capabilities.as_ref().map(|m| {
            m.iter()
                .filter(|(_, u)| u.granted > 0)
                .map(|(n, _)| n.clone())
                .collect()
        })
    }

    pub fn load(path: &Path) -> Result<Recording, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuditError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| AuditError::json(path, &e))
    }

    pub fn save(&self, path: &Path) -> Result<(), AuditError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| AuditError::json(path, &e))?;
        std::fs::write(path, text + "\n").map_err(|e| AuditError::io(path, e))
    }
}

/// Options of a recording.
#[derive(Debug, Clone)]
pub struct LearnOptions {
    pub duration: Duration,
    /// Restart the container under the recorder so its start-up is learned.
    pub restart: bool,
    /// Resource sampling interval.
    pub sample_every: Duration,
    pub proc_root: PathBuf,
}

impl Default for LearnOptions {
    fn default() -> Self {
        LearnOptions {
            duration: Duration::from_secs(60),
            restart: false,
            sample_every: Duration::from_millis(500),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

fn bad(container: &str, reason: impl Into<String>) -> AuditError {
    AuditError::Container {
        container: container.to_string(),
        reason: reason.into(),
    }
}

/// How the container is confined, or why it cannot be learned.
fn learn_mode(
    name: &str,
    inspect: &ContainerInspectResponse,
    daemon_seccomp: Option<&str>,
) -> Result<LearnMode, AuditError> {
    let opts = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.security_opt.clone())
        .unwrap_or_default();
    let privileged = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.privileged)
        .unwrap_or(false);
    let value = opts.iter().find_map(|o| {
        o.strip_prefix("seccomp=")
            .or_else(|| o.strip_prefix("seccomp:"))
            .map(str::to_string)
    });
    let how = "re-create it with --security-opt seccomp=unconfined, or for a tighter profile with \
               the learning profile (`rampart profile learning-profile -o learn.json`, then \
               --security-opt seccomp=learn.json)";
    match value.as_deref() {
        Some("unconfined") => Ok(LearnMode::Unconfined),
        Some(json) => {
            let p: SeccompProfile = serde_json::from_str(json).map_err(|e| {
                bad(name, format!("its seccomp profile is not readable ({e}); {how}"))
            })?;
            if p.allows_everything() {
                Ok(LearnMode::LearningProfile)
            } else {
                Err(bad(name, format!(
                    "it runs under a seccomp profile that refuses syscalls (defaultAction {}): refused syscalls never reach the recorder; {how}",
                    p.default_action
                )))
            }
        }
        None if privileged => Ok(LearnMode::Unconfined),
        None => match daemon_seccomp {
            Some(o) if o.contains("profile=unconfined") => Ok(LearnMode::Unconfined),
            None => Ok(LearnMode::Unconfined),
            Some(_) => Err(bad(name, format!(
                "it runs under Docker's default seccomp profile, which refuses syscalls before the recorder sees them; {how}"
            ))),
        },
    }
}

/// The cgroup directory the container's processes live in (v2 if the host has it, else the
/// v1 pids hierarchy).
fn cgroup_dir(mounts: &Mounts, proc_root: &Path, pid: u32) -> Option<PathBuf> {
    mounts
        .unified_dir_of(proc_root, pid)
        .or_else(|| mounts.dir_of(proc_root, pid, "pids"))
}

fn running_pid(inspect: &ContainerInspectResponse) -> Option<u32> {
    let s = inspect.state.as_ref()?;
    if s.running != Some(true) {
        return None;
    }
    s.pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0)
}

/// Resource sampler of one process's cgroups.
#[derive(Default)]
struct Sampler {
    peaks: Peaks,
    last_cpu: Option<(u64, Instant)>,
    last_io: Option<(IoCounters, Instant)>,
}

/// Per-second rate of a counter over `dt_ns` (0 when it went backwards: a new cgroup).
fn rate(prev: u64, cur: u64, dt_ns: u128) -> u64 {
    u64::try_from(u128::from(cur.saturating_sub(prev)) * 1_000_000_000 / dt_ns.max(1))
        .unwrap_or(u64::MAX)
}

fn raise(peak: &mut Option<u64>, v: u64) {
    *peak = Some(peak.map_or(v, |p| p.max(v)));
}

impl Sampler {
    fn sample(&mut self, mounts: &Mounts, proc_root: &Path, pid: u32) {
        if let Some(d) = mounts.dir_of(proc_root, pid, "memory") {
            let (cur, peak) = cgroupfs::memory_usage(&d);
            let m = cur.max(peak);
            self.peaks.memory_bytes = self.peaks.memory_bytes.max(m);
        }
        if let Some(d) = mounts.dir_of(proc_root, pid, "pids") {
            let cur = cgroupfs::read_u64(&d.join("pids.current"));
            let peak = cgroupfs::read_u64(&d.join("pids.peak"));
            self.peaks.pids = self.peaks.pids.max(cur.max(peak));
        }
        let cpu_dir = mounts
            .dir_of(proc_root, pid, "cpu")
            .filter(|d| cgroupfs::cpu_usage_ns(d).is_some())
            .or_else(|| mounts.dir_of(proc_root, pid, "cpuacct"));
        if let Some(ns) = cpu_dir.and_then(|d| cgroupfs::cpu_usage_ns(&d)) {
            let now = Instant::now();
            if let Some((prev, at)) = self.last_cpu {
                let dt = now.duration_since(at).as_nanos() as f64;
                if dt > 0.0 && ns >= prev {
                    let cores = (ns - prev) as f64 / dt;
                    self.peaks.cpu_cores =
                        Some(self.peaks.cpu_cores.map_or(cores, |c| c.max(cores)));
                }
            }
            self.last_cpu = Some((ns, now));
        }
        if let Some(io) = mounts
            .dir_of(proc_root, pid, "io")
            .and_then(|d| IoCounters::read(&d))
        {
            let now = Instant::now();
            if let Some((prev, at)) = self.last_io {
                let dt = now.duration_since(at).as_nanos();
                raise(
                    &mut self.peaks.io_read_bps,
                    rate(prev.read_bytes, io.read_bytes, dt),
                );
                raise(
                    &mut self.peaks.io_write_bps,
                    rate(prev.write_bytes, io.write_bytes, dt),
                );
                raise(
                    &mut self.peaks.io_read_iops,
                    rate(prev.read_ops, io.read_ops, dt),
                );
                raise(
                    &mut self.peaks.io_write_iops,
                    rate(prev.write_ops, io.write_ops, dt),
                );
            }
            self.last_io = Some((io, now));
        }
    }
}

/// The disk holding the container's writes: the filesystem of its overlay upper directory
/// (the writable layer), else of Docker's data root.
fn data_disk(
    inspect: &ContainerInspectResponse,
    docker_root: Option<&str>,
) -> Result<BlockDevice, String> {
    let upper = inspect
        .graph_driver
        .as_ref()
        .and_then(|g| g.data.get("UpperDir").cloned())
        .map(PathBuf::from)
        .filter(|p| p.is_dir());
    let path = upper
        .or_else(|| docker_root.map(PathBuf::from))
        .ok_or("the daemon reported no data root")?;
    blockdev::block_device_of(&path, Path::new("/sys"), Path::new("/dev")).map_err(|e| e.0)
}

/// Records container `name` for `opts.duration`.
pub async fn learn(
    docker: &DockerClient,
    name: &str,
    opts: &LearnOptions,
) -> Result<Recording, AuditError> {
    let api = docker;
    let inspect = api
        .inspect_container(name)
        .await
        .map_err(|e| AuditError::docker("inspect container", name, e))?;
    let id = inspect.id.clone().unwrap_or_default();
    let cname = inspect
        .name
        .clone()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let image = inspect
        .config
        .as_ref()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let info = api
        .info()
        .await
        .map_err(|e| AuditError::docker("info", "daemon", e))?;
    let daemon_seccomp = info
        .security_options
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.starts_with("name=seccomp"));
    let mode = learn_mode(name, &inspect, daemon_seccomp.as_deref())?;
    let mounts = Mounts::current();
    let pid = running_pid(&inspect);
    if pid.is_none() && !opts.restart {
        return Err(bad(
            name,
            "it is not running: start it, or pass --restart to have it started under the recorder",
        ));
    }
    let mut warnings = Vec::new();
    let mut recorder = SyscallRecorder::start()?;
    let current_dir = pid.and_then(|p| cgroup_dir(&mounts, &opts.proc_root, p));
    let mut targets: BTreeSet<CgroupRef> = BTreeSet::new();
    if opts.restart {
        let parent = match &current_dir {
            Some(d) => d.parent().map(Path::to_path_buf),
            None => {
                let unified = mounts
                    .unified
                    .clone()
                    .ok_or_else(|| bad(name, "restart learning needs the cgroup v2 hierarchy"))?;
                let cg_parent = inspect
                    .host_config
                    .as_ref()
                    .and_then(|h| h.cgroup_parent.clone())
                    .filter(|p| !p.is_empty());
                let systemd = info.cgroup_driver.is_some_and(|d| {
                    d == rampart_container::models::SystemInfoCgroupDriverEnum::SYSTEMD
                });
                let default = if systemd { "system.slice" } else { "docker" };
                Some(
                    unified.join(
                        cg_parent
                            .as_deref()
                            .unwrap_or(default)
                            .trim_start_matches('/'),
                    ),
                )
            }
        }
        .ok_or_else(|| bad(name, "its cgroup has no parent directory"))?;
        recorder.watch(&parent, WatchScope::Children)?;
        if let Some(d) = &current_dir {
            targets.insert(recorder.cgroup_ref(d)?);
        }
    } else if let Some(d) = &current_dir {
        targets.insert(recorder.watch(d, WatchScope::Cgroup)?);
        warnings.push(
            "the container was already running: its start-up was not recorded, so the profile may not let it start; record with --restart (or merge a recording made with --restart)".into(),
        );
    } else {
        return Err(bad(
            name,
            "its cgroup directory was not found under /proc/PID/cgroup",
        ));
    }

    if opts.restart {
        api.restart(name, Duration::from_secs(10))
            .await
            .map_err(|e| AuditError::docker("restart container", name, e))?;
    }
    // The duration counts from the (re)started container, not from the stop, which may take
    // the whole stop timeout when PID 1 ignores SIGTERM.
    let started = Instant::now();
    let mut sampler = Sampler::default();
    let deadline = started + opts.duration;
    let mut last_pid = None;
    loop {
        // Follow the container into a new cgroup after a (re)start.
        if opts.restart {
            if let Ok(i) = api.inspect_container(name).await {
                if let Some(p) = running_pid(&i) {
                    if last_pid != Some(p) {
                        if let Some(d) = cgroup_dir(&mounts, &opts.proc_root, p) {
                            if let Ok(r) = recorder.cgroup_ref(&d) {
                                targets.insert(r);
                            }
                        }
                        last_pid = Some(p);
                    }
                }
            }
        }
        let sample_pid = last_pid.or(pid);
        if let Some(p) = sample_pid {
            sampler.sample(&mounts, &opts.proc_root, p);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(opts.sample_every.min(deadline - now)).await;
    }
    let duration = started.elapsed();
    let block_device = match data_disk(&inspect, info.docker_root_dir.as_deref()) {
        Ok(d) => Some(d),
        Err(e) => {
            warnings.push(format!(
                "IO limits cannot name a disk: {e}; set --device-read-bps/--device-write-bps by hand"
            ));
            None
        }
    };
    let counts = recorder.syscalls()?;
    let caps_counts = recorder.capabilities()?;
    let (lost_sys, lost_caps) = recorder.lost()?;
    let cap_state = recorder.capability_recording().map_err(str::to_string);
    drop(recorder);

    let mine: Vec<_> = counts
        .iter()
        .filter(|c| targets.contains(&c.cgroup))
        .collect();
    let use_filtered = mode == LearnMode::LearningProfile;
    let named = NamedSyscalls::from_counts(
        mine.iter()
            .filter(|c| !use_filtered || c.under_seccomp)
            .map(|c| (c.abi, c.nr, c.count)),
    );
    if mine.is_empty() {
        warnings.push(
            "no syscall was recorded for the container: did it run during the recording?".into(),
        );
    }
    if !named.unknown.is_empty() {
        warnings.push(format!(
            "{} syscall number(s) have no name in this build's tables and are not in the profile: {:?}",
            named.unknown.len(),
            named.unknown
        ));
    }
    let capabilities = match &cap_state {
        Ok(()) => {
            let mut m: BTreeMap<String, CapUse> = BTreeMap::new();
            for c in caps_counts.iter().filter(|c| targets.contains(&c.cgroup)) {
                let e = m.entry(caps::name(c.cap)).or_default();
                if c.granted {
                    e.granted += c.count;
                } else {
                    e.denied += c.count;
                }
            }
            Some(m)
        }
        Err(_) => None,
    };
    let changes = api
        .container_changes(name)
        .await
        .map_err(|e| AuditError::docker("diff container", name, e))?
        .unwrap_or_default()
        .into_iter()
        .map(|c| Change {
            path: c.path,
            kind: match c.kind {
                ChangeType::_0 => 'C',
                ChangeType::_1 => 'A',
                ChangeType::_2 => 'D',
            },
        })
        .collect();
    if lost_sys + lost_caps > 0 {
        warnings.push(format!(
            "{} counts were lost because a kernel map was full: the recording is incomplete",
            lost_sys + lost_caps
        ));
    }
    Ok(Recording {
        container: cname,
        container_id: id,
        image,
        mode,
        restarted: opts.restart,
        duration_ms: duration.as_millis() as u64,
        syscalls: named,
        capabilities,
        capabilities_unavailable: cap_state.err(),
        changes,
        peaks: sampler.peaks,
        block_device,
        lost: lost_sys + lost_caps,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_container::models::HostConfig;

    fn with_opts(opts: &[&str]) -> ContainerInspectResponse {
        ContainerInspectResponse {
            host_config: Some(HostConfig {
                security_opt: Some(opts.iter().map(|s| s.to_string()).collect()),
                ..HostConfig::default()
            }),
            ..ContainerInspectResponse::default()
        }
    }

    #[test]
    fn profile_adds_what_the_runtime_does_depending_on_timing() {
        let rec = Recording {
            container: "c".into(),
            container_id: "id".into(),
            image: "img".into(),
            mode: LearnMode::LearningProfile,
            restarted: true,
            duration_ms: 6000,
            syscalls: NamedSyscalls {
                names: [("read", 3), ("execve", 1), ("futex", 2)]
                    .into_iter()
                    .map(|(n, c)| (n.to_string(), c))
                    .collect(),
                unknown: Vec::new(),
            },
            capabilities: None,
            capabilities_unavailable: None,
            changes: Vec::new(),
            peaks: Peaks::default(),
            block_device: None,
            lost: 0,
            warnings: Vec::new(),
        };
        let p = rec.profile();
        let allowed = p.allowed().expect("allow-list");
        for n in ["read", "execve", "rt_sigreturn", "restart_syscall", "futex"] {
            assert!(allowed.contains(n), "{n}: {allowed:?}");
        }
        assert_eq!(allowed.len(), 2 + seccomp::RUNTIME_TIMING.len());
        for n in ["link", "linkat", "mount", "ptrace"] {
            assert!(!allowed.contains(n), "{n}");
        }
        let comment = p.syscalls[0].comment.clone().unwrap_or_default();
        assert!(
            comment.contains("3 syscalls recorded + 9 the runtime makes"),
            "{comment}"
        );
    }

    #[test]
    fn learn_mode_follows_the_container_seccomp_setting() {
        let def = Some("name=seccomp,profile=default");
        assert_eq!(
            learn_mode("c", &with_opts(&["seccomp=unconfined"]), def).expect("ok"),
            LearnMode::Unconfined
        );
        let learning = serde_json::to_string(&seccomp::learning_profile()).expect("json");
        assert_eq!(
            learn_mode("c", &with_opts(&[&format!("seccomp={learning}")]), def).expect("ok"),
            LearnMode::LearningProfile
        );
        let e = learn_mode("c", &with_opts(&[]), def).expect_err("default profile");
        assert!(
            e.to_string().contains("Docker's default seccomp profile"),
            "{e}"
        );
        assert!(e.is_bad_input());
        let deny = serde_json::to_string(&seccomp::allow_list(&["read".to_string()].into(), "x"))
            .expect("json");
        let e = learn_mode("c", &with_opts(&[&format!("seccomp={deny}")]), def).expect_err("deny");
        assert!(e.to_string().contains("refuses syscalls"), "{e}");
        // A daemon without seccomp: nothing is refused.
        assert_eq!(
            learn_mode("c", &with_opts(&[]), None).expect("ok"),
            LearnMode::Unconfined
        );
    }
}
