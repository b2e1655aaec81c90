//! Periodic resource use of every running container (`container.stats` events), read from the
//! container's cgroup: CPU (and how long it has stayed busy), memory, pids, block IO, and their
//! limits.
//!
//! cgroup v2 files are used where the controller is enabled in the unified hierarchy; on v1 and
//! hybrid hosts (Docker's cgroupfs driver) the v1 controllers' files. Block IO is read from v2
//! `io.stat` when the container's unified cgroup has it, else from the v1 blkio controller's
//! `blkio.throttle.io_service_bytes` and `blkio.throttle.io_serviced` (the throttle files are
//! the ones every v1 kernel fills, whatever the IO scheduler).

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
                    if ["cpu", "cpuacct", "memory", "pids", "blkio"].contains(&o) {
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
    io: Option<IoCounters>,
}

/// Block IO of a cgroup since it was created, summed over every device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

impl IoCounters {
    /// The counters of the cgroup directory `dir`: v2 `io.stat` if it is there, else the v1
    /// blkio throttle files. `None` when neither is readable (no IO controller for the cgroup).
    pub fn read(dir: &Path) -> Option<IoCounters> {
        if let Ok(text) = fs::read_to_string(dir.join("io.stat")) {
            return Some(IoCounters::from_io_stat(&text));
        }
        let bytes = fs::read_to_string(dir.join("blkio.throttle.io_service_bytes")).ok()?;
        let ops = fs::read_to_string(dir.join("blkio.throttle.io_serviced")).ok()?;
        let (read_bytes, write_bytes) = blkio_read_write(&bytes);
        let (read_ops, write_ops) = blkio_read_write(&ops);
        Some(IoCounters {
            read_bytes,
            write_bytes,
            read_ops,
            write_ops,
        })
    }

    /// Parses cgroup v2 `io.stat`: one line per device, `MAJ:MIN rbytes=N wbytes=N rios=N
    /// wios=N dbytes=N dios=N` (keys the kernel may extend; unknown keys are ignored). Lines
    /// that do not start with a device number, and values that are not numbers, are skipped.
    /// Sums saturate. Hand-written: the format is one line per device of `key=value` pairs,
    /// and no maintained crate parses only this file.
    pub fn from_io_stat(text: &str) -> IoCounters {
        let mut c = IoCounters::default();
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            if !fields.next().is_some_and(is_device_number) {
                continue;
            }
            for kv in fields {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(v) = v.parse::<u64>() else { continue };
                let slot = match k {
                    "rbytes" => &mut c.read_bytes,
                    "wbytes" => &mut c.write_bytes,
                    "rios" => &mut c.read_ops,
                    "wios" => &mut c.write_ops,
                    _ => continue,
                };
                *slot = slot.saturating_add(v);
            }
        }
        c
    }
}

/// `MAJ:MIN`, both decimal.
fn is_device_number(s: &str) -> bool {
    s.split_once(':').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|x| x.is_ascii_digit())
            && b.bytes().all(|x| x.is_ascii_digit())
    })
}

/// Read and Write totals of a v1 blkio file (`MAJ:MIN Read N` ... per device, then a
/// `Total N` line, which is skipped: it also counts discards). Garbage lines are skipped.
fn blkio_read_write(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0u64, 0u64);
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(dev), Some(op), Some(v), None) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        if !is_device_number(dev) {
            continue;
        }
        let Ok(v) = v.parse::<u64>() else { continue };
        match op {
            "Read" => r = r.saturating_add(v),
            "Write" => w = w.saturating_add(v),
            _ => {}
        }
    }
    (r, w)
}

/// Per-second rate of a counter that went from `prev` to `cur` in `elapsed_ns` (0 when it
/// went backwards: a new cgroup after a restart).
fn per_sec(prev: u64, cur: u64, elapsed_ns: u64) -> u64 {
    let d = u128::from(cur.saturating_sub(prev));
    u64::try_from(d * 1_000_000_000 / u128::from(elapsed_ns.max(1))).unwrap_or(u64::MAX)
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
    /// only records its CPU and IO counters (rates need two samples).
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
            let io = self
                .io_dir(v2.as_deref(), v1.as_deref())
                .and_then(|d| IoCounters::read(&d));
            seen.push(rec.container.id.clone());
            let prev = self.prev.insert(
                rec.container.id.clone(),
                Prev {
                    cpu_ns,
                    at: now,
                    busy_since: None,
                    io,
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
            let rate = |f: fn(&IoCounters) -> u64| {
                Some(per_sec(f(prev.io.as_ref()?), f(io.as_ref()?), elapsed))
            };
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
                io_read_bytes: io.map(|c| c.read_bytes),
                io_write_bytes: io.map(|c| c.write_bytes),
                io_read_ops: io.map(|c| c.read_ops),
                io_write_ops: io.map(|c| c.write_ops),
                io_read_bps: rate(|c| c.read_bytes),
                io_write_bps: rate(|c| c.write_bytes),
                io_read_iops: rate(|c| c.read_ops),
                io_write_iops: rate(|c| c.write_ops),
            });
            out.push(e);
        }
        self.prev.retain(|id, _| seen.contains(id));
        out
    }

    /// The cgroup directory holding the container's IO counters: the unified one when it has
    /// `io.stat` (the io controller is enabled there), else the v1 blkio one. The v1 path is
    /// the pids hierarchy's ([`ProcFs::cgroup_paths`]): runtimes place a container at the same
    /// path in every v1 hierarchy.
    fn io_dir(&self, v2: Option<&str>, v1: Option<&str>) -> Option<PathBuf> {
        let rel = |p: &str| p.trim_start_matches('/').to_string();
        if let (Some(u), Some(p)) = (&self.mounts.unified, v2) {
            let d = u.join(rel(p));
            if d.join("io.stat").exists() {
                return Some(d);
            }
        }
        Some(self.mounts.v1.get("blkio")?.join(rel(v1?)))
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

    /// `io.stat` as a 6.1 kernel writes it for a container on two disks (virtio and a
    /// device-mapper volume).
    const IO_STAT: &str = "254:0 rbytes=1459200 wbytes=52428800 rios=88 wios=50 dbytes=0 dios=0\n\
                           253:1 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n";
    /// `blkio.throttle.io_service_bytes` and `io_serviced` as this host's 6.x kernel (cgroup
    /// v1, Docker's cgroupfs driver) wrote them after `dd bs=1M count=50 oflag=direct`.
    const V1_BYTES: &str = "254:0 Read 512000\n254:0 Write 52428800\n254:0 Sync 52940800\n\
                            254:0 Async 0\n254:0 Discard 0\n254:0 Total 52940800\nTotal 52940800\n";
    const V1_OPS: &str = "254:0 Read 88\n254:0 Write 50\n254:0 Sync 138\n254:0 Async 0\n\
                          254:0 Discard 0\n254:0 Total 138\nTotal 138\n";

    #[test]
    fn io_stat_sums_devices() {
        assert_eq!(
            IoCounters::from_io_stat(IO_STAT),
            IoCounters {
                read_bytes: 1_459_200 + 4096,
                write_bytes: 52_428_800 + 8192,
                read_ops: 89,
                write_ops: 52,
            }
        );
    }

    #[test]
    fn io_stat_empty_and_hostile_contents_give_zero_or_skip_lines() {
        assert_eq!(IoCounters::from_io_stat(""), IoCounters::default());
        assert_eq!(IoCounters::from_io_stat("\n\n"), IoCounters::default());
        // A device line with no entries, `max` and other non-numbers, negative numbers,
        // overflowing numbers, keys without `=`, lines without a device, binary junk.
        let hostile = "8:0\n\
                       8:16 rbytes=max wbytes=-5 rios=18446744073709551616 wios\n\
                       rbytes=999 wbytes=999\n\
                       x:0 rbytes=999\n\
                       8: rbytes=999\n\
                       \u{0}\u{ff}garbage ===\n\
                       8:32 rbytes=10 wbytes=20 rios=1 wios=2 newkey=7 rbytes=5\n";
        assert_eq!(
            IoCounters::from_io_stat(hostile),
            IoCounters {
                read_bytes: 15,
                write_bytes: 20,
                read_ops: 1,
                write_ops: 2,
            }
        );
        // Sums saturate instead of wrapping or panicking.
        let big = format!("8:0 wbytes={m}\n8:16 wbytes={m}\n", m = u64::MAX);
        assert_eq!(IoCounters::from_io_stat(&big).write_bytes, u64::MAX);
    }

    #[test]
    fn blkio_v1_read_and_write_totals() {
        assert_eq!(blkio_read_write(V1_BYTES), (512_000, 52_428_800));
        assert_eq!(blkio_read_write(V1_OPS), (88, 50));
        // Two devices are summed; the trailing Total line is not a device line.
        let two = "8:0 Read 1\n8:0 Write 2\n8:16 Read 10\n8:16 Write 20\nTotal 33\n";
        assert_eq!(blkio_read_write(two), (11, 22));
        // A cgroup that did no IO: only the Total line.
        assert_eq!(blkio_read_write("Total 0\n"), (0, 0));
        assert_eq!(blkio_read_write(""), (0, 0));
        let hostile = "8:0 Read max\n8:0 Write -1\n8:0 Write 5 extra\nRead 7\n\
                       8:0 Write\nfoo:bar Write 9\n8:0 Write 3\n";
        assert_eq!(blkio_read_write(hostile), (0, 3));
    }

    #[test]
    fn io_counters_from_either_version_of_a_cgroup_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(IoCounters::read(dir.path()), None, "no io files");
        fs::write(dir.path().join("blkio.throttle.io_service_bytes"), V1_BYTES).expect("w");
        assert_eq!(IoCounters::read(dir.path()), None, "one v1 file only");
        fs::write(dir.path().join("blkio.throttle.io_serviced"), V1_OPS).expect("w");
        assert_eq!(
            IoCounters::read(dir.path()),
            Some(IoCounters {
                read_bytes: 512_000,
                write_bytes: 52_428_800,
                read_ops: 88,
                write_ops: 50,
            })
        );
        // io.stat wins when the unified io controller is on; empty means no IO yet.
        fs::write(dir.path().join("io.stat"), "").expect("w");
        assert_eq!(IoCounters::read(dir.path()), Some(IoCounters::default()));
    }

    #[test]
    fn io_rates_per_second_and_zero_when_the_counter_restarts() {
        assert_eq!(per_sec(0, 50 << 20, 2_000_000_000), 25 << 20);
        assert_eq!(per_sec(100, 10, 1_000_000_000), 0);
        assert_eq!(per_sec(0, u64::MAX, 1), u64::MAX);
        assert_eq!(per_sec(0, 7, 0), 7_000_000_000);
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
