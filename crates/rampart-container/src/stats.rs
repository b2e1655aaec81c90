//! Periodic resource use of every running container (`container.stats` events), read from the
//! container's cgroup: CPU (and how long it has stayed busy), memory, pids, and their limits.
//!
//! cgroup v2 files are used where the controller is enabled in the unified hierarchy; on v1 and
//! hybrid hosts (Docker's cgroupfs driver) the v1 controllers' files.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rampart_event::{Device, Event, EventId, EventKind, ResourceInfo};

use crate::directory::ContainerDirectory;
use crate::procfs::ProcFs;

/// CPU use above this (thousandths of a core) counts as busy for `high_cpu_ms`.
const BUSY_MILLICORES: u64 = 800;

/// Where each controller's hierarchy is mounted.
#[derive(Debug, Clone, Default)]
struct Mounts {
    unified: Option<PathBuf>,
    v1: HashMap<String, PathBuf>,
}

fn mounts() -> Mounts {
    let mut m = Mounts::default();
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return m;
    };
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or_default();
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or_default();
        let opts = r.nth(1).unwrap_or_default();
        match fstype {
            "cgroup2" if m.unified.is_none() => m.unified = Some(PathBuf::from(mount_point)),
            "cgroup" => {
                for o in opts.split(',') {
                    if ["cpu", "cpuacct", "memory", "pids"].contains(&o) {
                        m.v1.insert(o.to_string(), PathBuf::from(mount_point));
                    }
                }
            }
            _ => {}
        }
    }
    m
}

#[derive(Debug)]
struct Prev {
    cpu_ns: u64,
    at: Instant,
    busy_since: Option<Instant>,
}

/// Samples every running container of a [`ContainerDirectory`].
#[derive(Debug)]
pub struct StatsSampler {
    dir: Arc<ContainerDirectory>,
    procfs: ProcFs,
    mounts: Mounts,
    prev: HashMap<String, Prev>,
    device: Arc<Device>,
    instance: u64,
    seq: u64,
}

impl StatsSampler {
    pub fn new(
        dir: Arc<ContainerDirectory>,
        procfs: ProcFs,
        device: Arc<Device>,
        instance: u64,
    ) -> Self {
        StatsSampler {
            dir,
            procfs,
            mounts: mounts(),
            prev: HashMap::new(),
            device,
            instance,
            seq: 0,
        }
    }

    /// One `container.stats` event per running container. The first sample of a container
    /// only records its CPU counter (CPU use needs two samples).
    pub fn sample(&mut self) -> Vec<Event> {
        let now = Instant::now();
        let wall_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for rec in self.dir.list().into_iter().filter(|r| r.pid != 0) {
            let (v2, v1) = self.procfs.cgroup_paths(rec.pid);
            let Some(files) = self.files(v2.as_deref(), v1.as_deref()) else {
                continue;
            };
            let Some(cpu_ns) = files.cpu_ns() else {
                continue;
            };
            seen.push(rec.container.id.clone());
            let prev = self.prev.insert(
                rec.container.id.clone(),
                Prev {
                    cpu_ns,
                    at: now,
                    busy_since: None,
                },
            );
            let Some(prev) = prev else { continue };
            let elapsed = now.duration_since(prev.at).as_nanos().max(1) as u64;
            let millicores = cpu_ns.saturating_sub(prev.cpu_ns) * 1000 / elapsed;
            let busy_since = if millicores >= BUSY_MILLICORES {
                Some(prev.busy_since.unwrap_or(prev.at))
            } else {
                None
            };
            if let Some(p) = self.prev.get_mut(&rec.container.id) {
                p.busy_since = busy_since;
            }
            self.seq += 1;
            let mut e = Event::new(
                EventId::new(self.instance, self.seq),
                wall_ns,
                EventKind::ContainerStats,
                self.device.clone(),
            );
            e.container = Some(rec.container.clone());
            e.resources = Some(ResourceInfo {
                cpu_millicores: millicores,
                cpu_limit_millicores: files.cpu_limit_millicores(),
                memory_bytes: files.memory_bytes().unwrap_or(0),
                memory_limit_bytes: files.memory_limit_bytes(),
                pids: files.pids().unwrap_or(0),
                pids_limit: files.pids_limit(),
                high_cpu_ms: busy_since.map_or(0, |s| now.duration_since(s).as_millis() as u64),
                interval_ms: elapsed / 1_000_000,
            });
            out.push(e);
        }
        self.prev.retain(|id, _| seen.contains(id));
        out
    }

    fn files(&self, v2: Option<&str>, v1: Option<&str>) -> Option<CgroupFiles> {
        let rel = |p: &str| p.trim_start_matches('/').to_string();
        let v2dir = match (&self.mounts.unified, v2) {
            (Some(u), Some(p)) => Some(u.join(rel(p))),
            _ => None,
        };
        // v2 when its cpu controller is on for this cgroup (cpu.stat has usage either way,
        // but limits exist only with the controllers enabled).
        if let Some(d) = &v2dir {
            if d.join("cpu.max").exists() && d.join("memory.current").exists() {
                return Some(CgroupFiles::V2(d.clone()));
            }
        }
        let path = v1.map(rel)?;
        let dir = |c: &str| self.mounts.v1.get(c).map(|m| m.join(&path));
        Some(CgroupFiles::V1 {
            cpuacct: dir("cpuacct")?,
            cpu: dir("cpu"),
            memory: dir("memory"),
            pids: dir("pids"),
        })
    }
}

enum CgroupFiles {
    V2(PathBuf),
    V1 {
        cpuacct: PathBuf,
        cpu: Option<PathBuf>,
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
    },
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// A limit file's value; `max`, -1 and the v1 "unlimited" sentinel (near i64::MAX) are `None`.
fn limit(p: &Path) -> Option<u64> {
    let text = fs::read_to_string(p).ok()?;
    let v: u64 = text.trim().parse().ok()?;
    (v < (1 << 62)).then_some(v)
}

impl CgroupFiles {
    fn cpu_ns(&self) -> Option<u64> {
        match self {
            CgroupFiles::V2(d) => fs::read_to_string(d.join("cpu.stat"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|us| us * 1000),
            CgroupFiles::V1 { cpuacct, .. } => read_u64(&cpuacct.join("cpuacct.usage")),
        }
    }

    fn cpu_limit_millicores(&self) -> Option<u64> {
        let (quota, period) = match self {
            CgroupFiles::V2(d) => {
                let text = fs::read_to_string(d.join("cpu.max")).ok()?;
                let mut f = text.split_whitespace();
                let q = f.next()?;
                if q == "max" {
                    return None;
                }
                (q.parse::<i64>().ok()?, f.next()?.parse::<i64>().ok()?)
            }
            CgroupFiles::V1 { cpu, .. } => {
                let cpu = cpu.as_ref()?;
                let q = fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
                    .ok()?
                    .trim()
                    .parse::<i64>()
                    .ok()?;
                let p = fs::read_to_string(cpu.join("cpu.cfs_period_us"))
                    .ok()?
                    .trim()
                    .parse::<i64>()
                    .ok()?;
                (q, p)
            }
        };
        (quota > 0 && period > 0).then(|| (quota as u64) * 1000 / period as u64)
    }

    fn memory_bytes(&self) -> Option<u64> {
        match self {
            CgroupFiles::V2(d) => read_u64(&d.join("memory.current")),
            CgroupFiles::V1 { memory, .. } => {
                read_u64(&memory.as_ref()?.join("memory.usage_in_bytes"))
            }
        }
    }

    fn memory_limit_bytes(&self) -> Option<u64> {
        match self {
            CgroupFiles::V2(d) => limit(&d.join("memory.max")),
            CgroupFiles::V1 { memory, .. } => {
                limit(&memory.as_ref()?.join("memory.limit_in_bytes"))
            }
        }
    }

    fn pids(&self) -> Option<u64> {
        match self {
            CgroupFiles::V2(d) => read_u64(&d.join("pids.current")),
            CgroupFiles::V1 { pids, .. } => read_u64(&pids.as_ref()?.join("pids.current")),
        }
    }

    fn pids_limit(&self) -> Option<u64> {
        match self {
            CgroupFiles::V2(d) => limit(&d.join("pids.max")),
            CgroupFiles::V1 { pids, .. } => limit(&pids.as_ref()?.join("pids.max")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_treat_max_and_sentinels_as_unlimited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("x");
        fs::write(&f, "max\n").expect("w");
        assert_eq!(limit(&f), None);
        fs::write(&f, "9223372036854771712\n").expect("w");
        assert_eq!(limit(&f), None);
        fs::write(&f, "536870912\n").expect("w");
        assert_eq!(limit(&f), Some(536_870_912));
    }

    #[test]
    fn v2_cpu_limit_in_millicores() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("cpu.max"), "50000 100000\n").expect("w");
        assert_eq!(
            CgroupFiles::V2(dir.path().to_path_buf()).cpu_limit_millicores(),
            Some(500)
        );
        fs::write(dir.path().join("cpu.max"), "max 100000\n").expect("w");
        assert_eq!(
            CgroupFiles::V2(dir.path().to_path_buf()).cpu_limit_millicores(),
            None
        );
    }
}
