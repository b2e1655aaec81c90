//! The syscall recorder: every syscall number, and every capability check, made by the tasks of
//! chosen cgroups, counted in the kernel. It is what seccomp-profile learning and capability
//! learning read; the sensor reports only the ~45 syscalls that matter for detection.
//!
//! The programs are in `bpf/syscalls.bpf.c`: a raw tracepoint on `sys_enter` and, where the
//! kernel has it (Linux 6.14+), one on the `capability:cap_capable` tracepoint. Nothing leaves
//! the kernel per syscall: counts accumulate in a hash map keyed by (cgroup, syscall number,
//! architecture, seccomp phase) that user space reads when it wants. Tasks outside the watched
//! cgroups cost one array lookup plus one ancestor-cgroup lookup and one hash lookup per
//! watched cgroup level, and only while a recorder is alive: dropping it detaches everything.
//!
//! # Guarantees
//! * A syscall made by a task of a watched cgroup (or of any cgroup below it) between
//!   [`SyscallRecorder::watch`] and the read is counted, unless the count map is full, in which
//!   case [`SyscallRecorder::lost`] is non-zero. Syscalls refused by a seccomp filter before the
//!   tracepoint runs are never seen: record under an allow-all filter or unconfined.
//! * Counts are exact (atomic adds), not sampled.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::RawTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};

use crate::cgroup::{cgroup_layout, CgroupLayout};
use crate::error::KernelError;

static RECORDER_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/syscalls.bpf.o"));

const SR_SELF: u32 = 1;
const SR_CHILDREN: u32 = 2;
const SR_MAX_LEVELS: usize = 16;
const SR_STAT_SYSCALL_FULL: u32 = 0;
const SR_STAT_CAP_FULL: u32 = 1;

/// `struct sr_syscall_key` of `bpf/syscalls.bpf.c`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SyscallKey {
    cgroup: u64,
    nr: u32,
    arch: u8,
    filtered: u8,
    v1: u8,
    pad: u8,
}
// SAFETY: repr(C), integer fields only, no padding bytes beyond the explicit `pad`.
unsafe impl aya::Pod for SyscallKey {}
const _: () = assert!(std::mem::size_of::<SyscallKey>() == 16);

/// `struct sr_cap_key` of `bpf/syscalls.bpf.c`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CapKey {
    cgroup: u64,
    cap: u32,
    granted: u8,
    v1: u8,
    pad: [u8; 2],
}
// SAFETY: repr(C), integer fields only, explicit padding.
unsafe impl aya::Pod for CapKey {}
const _: () = assert!(std::mem::size_of::<CapKey>() == 16);

/// Which cgroup hierarchy a cgroup id belongs to (ids are inode numbers of one hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CgroupHierarchy {
    /// The unified (v2) hierarchy.
    V2,
    /// The v1 hierarchy of the `pids` controller (hosts without a v2 mount).
    V1Pids,
}

/// A cgroup as the recorder names it: its id in one hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CgroupRef {
    pub hierarchy: CgroupHierarchy,
    /// The kernel's cgroup id: the inode number of the cgroup's directory.
    pub id: u64,
}

/// What a watch on a cgroup directory records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchScope {
    /// The tasks of the cgroup and of all cgroups below it, counted under the cgroup itself.
    Cgroup,
    /// The tasks of every cgroup below it, counted under the child cgroup on each task's path:
    /// one set of counts per child (per container, when watching `/docker`), including children
    /// created after the watch began. Cgroup v2 only.
    Children,
}

/// The syscall ABI a syscall was made through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyscallAbi {
    /// The machine's own ABI (x86_64 on x86_64).
    Native,
    /// 32-bit x86 compatibility (int 0x80 or a 32-bit process); numbers are i386's.
    Ia32,
    /// x32 (64-bit registers, 32-bit pointers); numbers are x86_64's with the x32 bit removed,
    /// or x32's own (512 and up).
    X32,
}

/// How often one cgroup made one syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SyscallCount {
    pub cgroup: CgroupRef,
    pub abi: SyscallAbi,
    /// The syscall number in `abi`'s table.
    pub nr: u32,
    /// The task had a seccomp filter installed when it made the call: the call is one a
    /// seccomp profile of the container must allow.
    pub under_seccomp: bool,
    pub count: u64,
}

/// How often one cgroup's tasks were checked for one capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapabilityCount {
    pub cgroup: CgroupRef,
    /// The capability number (`CAP_NET_BIND_SERVICE` = 10).
    pub cap: u32,
    /// The check succeeded (the task had the capability).
    pub granted: bool,
    pub count: u64,
}

/// Why a watch could not be set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("{}: not a directory of the cgroup v2 hierarchy ({}) or of the v1 pids hierarchy ({})", path.display(), unified.as_ref().map_or("not mounted".into(), |p| p.display().to_string()), v1.as_ref().map_or("not mounted".into(), |p| p.display().to_string()))]
    NotACgroup {
        path: PathBuf,
        unified: Option<PathBuf>,
        v1: Option<PathBuf>,
    },
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: &'static str },
}

/// Loaded and attached recorder programs; dropping it detaches them and frees the maps.
pub struct SyscallRecorder {
    ebpf: Ebpf,
    layout: CgroupLayout,
    /// Watched v2 cgroups and their levels.
    levels: std::collections::HashMap<u64, u32>,
    capabilities: Result<(), String>,
}

impl std::fmt::Debug for SyscallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyscallRecorder")
            .field("layout", &self.layout)
            .field("watched_v2", &self.levels.len())
            .field("capabilities", &self.capabilities)
            .finish()
    }
}

impl SyscallRecorder {
    /// Loads and attaches the recorder. Nothing is recorded until [`watch`](Self::watch).
    /// Capability recording is optional: when the kernel has no `cap_capable` tracepoint,
    /// [`capability_recording`](Self::capability_recording) says why and the rest works.
    pub fn start() -> Result<SyscallRecorder, RecorderError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(KernelError::NotRoot.into());
        }
        let btf = Btf::from_sys_fs().map_err(KernelError::Btf)?;
        let layout = cgroup_layout();
        let v1_subsys: u32 = match (&layout.v1_pids, layout.pids_subsys_id) {
            (Some(_), Some(id)) => id,
            _ => u32::MAX,
        };
        let mut ebpf = EbpfLoader::new()
            .btf(&btf)
            .override_global("V1_SUBSYS", &v1_subsys, true)
            .load(RECORDER_OBJ)
            .map_err(|e| KernelError::Object(Box::new(e)))?;
        attach(&mut ebpf, "sr_sys_enter", "sys_enter")?;
        let capabilities = attach(&mut ebpf, "sr_cap_capable", "cap_capable").map_err(|e| {
            format!(
                "capability checks are not recorded: {e} (the capability:cap_capable tracepoint \
                 needs Linux 6.14 or later)"
            )
        });
        Ok(SyscallRecorder {
            ebpf,
            layout,
            levels: Default::default(),
            capabilities,
        })
    }

    /// `Ok` when capability checks are recorded, else why not.
    pub fn capability_recording(&self) -> Result<(), &str> {
        self.capabilities
            .as_ref()
            .map(|_| ())
            .map_err(String::as_str)
    }

    /// The cgroup hierarchies the recorder resolves paths against.
    pub fn cgroup_layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// The cgroup `dir` (a directory of the cgroup v2 mount, or of the v1 `pids` mount on hosts
    /// without v2) as the recorder names it.
    pub fn cgroup_ref(&self, dir: &Path) -> Result<CgroupRef, RecorderError> {
        let (hierarchy, _) = self.locate(dir)?;
        let meta = fs::metadata(dir).map_err(|e| KernelError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        Ok(CgroupRef {
            hierarchy,
            id: meta.ino(),
        })
    }

    /// Starts recording the cgroup directory `dir`. Returns its id, under which
    /// [`WatchScope::Cgroup`] counts appear.
    pub fn watch(&mut self, dir: &Path, scope: WatchScope) -> Result<CgroupRef, RecorderError> {
        let (hierarchy, level) = self.locate(dir)?;
        let cg = self.cgroup_ref(dir)?;
        match hierarchy {
            CgroupHierarchy::V2 => {
                if level >= SR_MAX_LEVELS - 1 {
                    return Err(RecorderError::Unsupported {
                        path: dir.to_path_buf(),
                        reason: "cgroup is nested deeper than the recorder follows (15 levels)",
                    });
                }
                let mode = match scope {
                    WatchScope::Cgroup => SR_SELF,
                    WatchScope::Children => SR_CHILDREN,
                };
                let mut watch: HashMap<_, u64, u32> = map_mut(&mut self.ebpf, "SR_WATCH")?;
                watch
                    .insert(&cg.id, &mode, 0)
                    .map_err(|e| KernelError::map("SR_WATCH", e))?;
                self.levels.insert(cg.id, level as u32);
                self.write_levels()?;
            }
            CgroupHierarchy::V1Pids => {
                if scope == WatchScope::Children {
                    return Err(RecorderError::Unsupported {
                        path: dir.to_path_buf(),
                        reason: "recording the children of a cgroup needs the cgroup v2 \
                                 hierarchy; on a v1-only host watch each container's cgroup",
                    });
                }
                let mut watch: HashMap<_, u64, u32> = map_mut(&mut self.ebpf, "SR_WATCH_V1")?;
                watch
                    .insert(&cg.id, &SR_SELF, 0)
                    .map_err(|e| KernelError::map("SR_WATCH_V1", e))?;
            }
        }
        Ok(cg)
    }

    /// Stops recording `cg` (a reference [`watch`](Self::watch) returned); its counts stay
    /// until [`forget`](Self::forget).
    pub fn unwatch(&mut self, cg: CgroupRef) -> Result<(), RecorderError> {
        let name = match cg.hierarchy {
            CgroupHierarchy::V2 => "SR_WATCH",
            CgroupHierarchy::V1Pids => "SR_WATCH_V1",
        };
        let mut watch: HashMap<_, u64, u32> = map_mut(&mut self.ebpf, name)?;
        // A missing key is not an error: the cgroup is not watched either way.
        let _ = watch.remove(&cg.id);
        if cg.hierarchy == CgroupHierarchy::V2 {
            self.levels.remove(&cg.id);
            self.write_levels()?;
        }
        Ok(())
    }

    /// Every syscall count so far, of every recorded cgroup.
    pub fn syscalls(&self) -> Result<Vec<SyscallCount>, RecorderError> {
        let map: HashMap<_, SyscallKey, u64> = map_ref(&self.ebpf, "SR_SYSCALLS")?;
        let mut out = Vec::new();
        for item in map.iter() {
            let (k, count) = item.map_err(|e| KernelError::map("SR_SYSCALLS", e))?;
            out.push(SyscallCount {
                cgroup: cgroup_of(k.cgroup, k.v1),
                abi: match k.arch {
                    1 => SyscallAbi::Ia32,
                    2 => SyscallAbi::X32,
                    _ => SyscallAbi::Native,
                },
                nr: k.nr,
                under_seccomp: k.filtered != 0,
                count,
            });
        }
        out.sort();
        Ok(out)
    }

    /// Every capability-check count so far (empty when capability recording is off).
    pub fn capabilities(&self) -> Result<Vec<CapabilityCount>, RecorderError> {
        let map: HashMap<_, CapKey, u64> = map_ref(&self.ebpf, "SR_CAPS")?;
        let mut out = Vec::new();
        for item in map.iter() {
            let (k, count) = item.map_err(|e| KernelError::map("SR_CAPS", e))?;
            out.push(CapabilityCount {
                cgroup: cgroup_of(k.cgroup, k.v1),
                cap: k.cap,
                granted: k.granted != 0,
                count,
            });
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the counts of every cgroup for which `keep` is false (cgroups recorded through
    /// a [`WatchScope::Children`] watch that turned out not to matter).
    pub fn forget(&mut self, keep: impl Fn(CgroupRef) -> bool) -> Result<(), RecorderError> {
        {
            let mut map: HashMap<_, SyscallKey, u64> = map_mut(&mut self.ebpf, "SR_SYSCALLS")?;
            let gone: Vec<SyscallKey> = map
                .keys()
                .filter_map(Result::ok)
                .filter(|k| !keep(cgroup_of(k.cgroup, k.v1)))
                .collect();
            for k in gone {
                let _ = map.remove(&k);
            }
        }
        let mut map: HashMap<_, CapKey, u64> = map_mut(&mut self.ebpf, "SR_CAPS")?;
        let gone: Vec<CapKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !keep(cgroup_of(k.cgroup, k.v1)))
            .collect();
        for k in gone {
            let _ = map.remove(&k);
        }
        Ok(())
    }

    /// Counts that could not be kept because a count map was full (syscalls, capability
    /// checks). Non-zero means the recording is incomplete.
    pub fn lost(&self) -> Result<(u64, u64), RecorderError> {
        let map = self
            .ebpf
            .map("SR_STAT")
            .ok_or_else(|| KernelError::map("SR_STAT", missing_map()))?;
        let stats: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| KernelError::map("SR_STAT", e))?;
        let sum = |i: u32| -> Result<u64, RecorderError> {
            Ok(stats
                .get(&i, 0)
                .map_err(|e| KernelError::map("SR_STAT", e))?
                .iter()
                .sum())
        };
        Ok((sum(SR_STAT_SYSCALL_FULL)?, sum(SR_STAT_CAP_FULL)?))
    }

    fn write_levels(&mut self) -> Result<(), RecorderError> {
        let mask = self.levels.values().fold(0u32, |m, l| m | (1 << l));
        let mut levels: Array<_, u32> = Array::try_from(
            self.ebpf
                .map_mut("SR_LEVELS")
                .ok_or_else(|| KernelError::map("SR_LEVELS", missing_map()))?,
        )
        .map_err(|e| KernelError::map("SR_LEVELS", e))?;
        levels
            .set(0, &mask, 0)
            .map_err(|e| KernelError::map("SR_LEVELS", e))?;
        Ok(())
    }

    /// Which hierarchy `dir` is in, and its level there (the root is level 0).
    fn locate(&self, dir: &Path) -> Result<(CgroupHierarchy, usize), RecorderError> {
        if let Some(root) = &self.layout.unified {
            if let Ok(rel) = dir.strip_prefix(root) {
                return Ok((CgroupHierarchy::V2, rel.components().count()));
            }
        }
        if self.layout.unified.is_none() {
            if let Some(root) = &self.layout.v1_pids {
                if let Ok(rel) = dir.strip_prefix(root) {
                    return Ok((CgroupHierarchy::V1Pids, rel.components().count()));
                }
            }
        }
        Err(RecorderError::NotACgroup {
            path: dir.to_path_buf(),
            unified: self.layout.unified.clone(),
            v1: self.layout.v1_pids.clone(),
        })
    }
}

fn cgroup_of(id: u64, v1: u8) -> CgroupRef {
    CgroupRef {
        hierarchy: if v1 != 0 {
            CgroupHierarchy::V1Pids
        } else {
            CgroupHierarchy::V2
        },
        id,
    }
}

fn attach(ebpf: &mut Ebpf, name: &'static str, hook: &'static str) -> Result<(), KernelError> {
    let p: &mut RawTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| KernelError::program(name, hook, aya::programs::ProgramError::NotLoaded))?
        .try_into()
        .map_err(|e| KernelError::program(name, hook, e))?;
    p.load().map_err(|e| KernelError::program(name, hook, e))?;
    p.attach(hook)
        .map_err(|e| KernelError::program(name, hook, e))?;
    Ok(())
}

fn missing_map() -> aya::maps::MapError {
    aya::maps::MapError::InvalidName {
        name: "missing".into(),
    }
}

fn map_mut<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<HashMap<&'a mut MapData, K, V>, KernelError> {
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| KernelError::map(name, missing_map()))?;
    HashMap::try_from(map).map_err(|e| KernelError::map(name, e))
}

fn map_ref<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a Ebpf,
    name: &'static str,
) -> Result<HashMap<&'a MapData, K, V>, KernelError> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| KernelError::map(name, missing_map()))?;
    HashMap::try_from(map).map_err(|e| KernelError::map(name, e))
}
