//! Prevention in the kernel: the programs of `bpf/enforce.bpf.c`, pinned so that they outlive
//! the process that installed them.
//!
//! # Pinned layout (bpffs)
//! ```text
//! <dir>/                       DEFAULT_PIN_DIR, versioned with the ABI
//!   maps/RE_*                  every map, pinned by name (shared by all program instances)
//!   prog/enforce_*             the six cgroup programs, loaded once
//!   links/exec-<hook>          the exec hook's link: exec-lsm, exec-tp_btf or exec-raw_tp
//!   links/<key>/enforce_*      the cgroup programs attached to one container's cgroup
//! ```
//! A link stays attached while its pin exists; removing a pin (or [`Enforcer::detach_cgroup`],
//! [`Enforcer::remove_all`]) detaches it. Nothing is attached to a cgroup that has no
//! `links/<key>/`, and the programs do nothing for a cgroup without a target entry.
//!
//! # What user space writes
//! * [`Target`] per cgroup id: the policy id, which checks apply, the defaults, isolation;
//! * exec rules of a policy: names and paths (exact or prefix), files by identity
//!   ([`FileId`], what a SHA-256 rule resolved to);
//! * network rules of a policy: per (direction, address prefix) the port rules that apply,
//!   already merged by the caller so that the longest prefix carries all of them
//!   ([`Enforcer::put_net`]);
//! * isolation allow-lists per cgroup.
//!
//! Writers must serialise among themselves (rampart-respond holds a lock file); each map update
//! is atomic for the programs.

mod abi;
pub mod bpffs;
mod maps;

pub use maps::{EnforceMaps, MapOp, MemoryMaps};

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{HashMap, Map, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{
    BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, Lsm,
    ProgramError, RawTracePoint,
};
use aya::{Btf, Ebpf, EbpfLoader};

use abi::*;

static ENFORCE_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforce.bpf.o"));

/// Where the enforcement state is pinned. The suffix is the ABI version of
/// `bpf/enforce.bpf.c`: a Rampart with a different ABI uses a different directory and never
/// reuses maps whose layout it does not know.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/rampart/enforce-v2";

/// The cgroup programs and how they attach.
const CGROUP_PROGRAMS: [(&str, CgroupHook); 6] = [
    ("enforce_connect4", CgroupHook::SockAddr),
    ("enforce_connect6", CgroupHook::SockAddr),
    ("enforce_sendmsg4", CgroupHook::SockAddr),
    ("enforce_sendmsg6", CgroupHook::SockAddr),
    (
        "enforce_ingress",
        CgroupHook::Skb(CgroupSkbAttachType::Ingress),
    ),
    (
        "enforce_egress",
        CgroupHook::Skb(CgroupSkbAttachType::Egress),
    ),
];

#[derive(Debug, Clone, Copy)]
enum CgroupHook {
    SockAddr,
    Skb(CgroupSkbAttachType),
}

/// Why enforcement could not be set up or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnforceError {
    #[error("prevention needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN): run with sudo")]
    NotRoot,
    #[error("kernel BTF (/sys/kernel/btf/vmlinux) is unreadable: {0}")]
    Btf(#[source] aya::BtfError),
    #[error("loading bpf/enforce.bpf.c: {0}")]
    Object(#[source] Box<aya::EbpfError>),
    #[error("BPF program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error("pinning {}: {source}", path.display())]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot pin BPF state under {}: {reason}", dir.display())]
    Bpffs { dir: PathBuf, reason: String },
    #[error("no exec hook could be attached: {0}")]
    NoExecHook(String),
    #[error("{what} {value:?} is {len} bytes; the kernel matches at most {max}")]
    TooLong {
        what: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    #[error(
        "{count} port rules apply to {prefix}; the kernel holds at most {max} per address range"
    )]
    TooManyPortRules {
        prefix: String,
        count: usize,
        max: usize,
    },
    #[error("invalid link name {0:?} (letters, digits, '.', '_' and '-' only)")]
    BadKey(String),
    #[error("mesh redirect {from} -> {to}: {reason}")]
    BadRedirect {
        from: SocketAddr,
        to: SocketAddr,
        reason: &'static str,
    },
}

impl EnforceError {
    fn map(map: &'static str, source: MapError) -> Self {
        EnforceError::Map {
            map,
            source: Box::new(source),
        }
    }

    fn program(program: &'static str, source: ProgramError) -> Self {
        EnforceError::Program {
            program,
            source: Box::new(source),
        }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        EnforceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What a policy decides. Ordered: when several rules match, the greater verdict wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Allow,
    /// Allowed, and reported as what a deny would have stopped.
    Audit,
    Deny,
}

impl Verdict {
    fn abi(self) -> u8 {
        match self {
            Verdict::Allow => RE_ALLOW,
            Verdict::Audit => RE_AUDIT,
            Verdict::Deny => RE_DENY,
        }
    }

    fn from_abi(v: u8) -> Option<Verdict> {
        match v {
            RE_ALLOW => Some(Verdict::Allow),
            RE_AUDIT => Some(Verdict::Audit),
            RE_DENY => Some(Verdict::Deny),
            _ => None,
        }
    }

    /// `allow`, `audit` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Audit => "audit",
            Verdict::Deny => "deny",
        }
    }
}

/// What applies to one cgroup (one container).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The policy whose rules apply (the first field of every rule key).
    pub policy: u32,
    /// Execs are checked.
    pub exec: bool,
    /// The policy has name, path or file (hash) rules; lookups of a kind it lacks are skipped.
    pub exec_names: bool,
    pub exec_paths: bool,
    pub exec_files: bool,
    pub exec_default: Verdict,
    /// Outbound connects and datagrams are checked.
    pub egress: bool,
    pub egress_default: Verdict,
    /// Inbound connections and datagrams are checked.
    pub ingress: bool,
    pub ingress_default: Verdict,
    /// Cut off: only loopback and the isolation allow-list pass, established connections included.
    pub isolated: bool,
    /// Denials are reported, not enforced.
    pub audit_only: bool,
}

impl Target {
    /// A target that checks nothing (the starting point for isolation of an unselected container).
    pub fn none() -> Target {
        Target {
            policy: 0,
            exec: false,
            exec_names: false,
            exec_paths: false,
            exec_files: false,
            exec_default: Verdict::Allow,
            egress: false,
            egress_default: Verdict::Allow,
            ingress: false,
            ingress_default: Verdict::Allow,
            isolated: false,
            audit_only: false,
        }
    }

    /// Nothing is checked and nothing is isolated: the entry can be removed.
    pub fn is_inert(&self) -> bool {
        !self.exec && !self.egress && !self.ingress && !self.isolated
    }

    fn abi(&self) -> ReTarget {
        let mut flags = 0;
        for (on, bit) in [
            (self.exec, RE_F_EXEC),
            (self.exec_names, RE_F_EXEC_NAMES),
            (self.exec_paths, RE_F_EXEC_PATHS),
            (self.exec_files, RE_F_EXEC_FILES),
            (self.egress, RE_F_EGRESS),
            (self.ingress, RE_F_INGRESS),
            (self.isolated, RE_F_ISOLATED),
            (self.audit_only, RE_F_AUDIT_ONLY),
        ] {
            if on {
                flags |= bit;
            }
        }
        ReTarget {
            policy: self.policy,
            flags,
            exec_default: self.exec_default.abi(),
            egress_default: self.egress_default.abi(),
            ingress_default: self.ingress_default.abi(),
            pad: [0; 5],
        }
    }

    fn from_abi(t: &ReTarget) -> Target {
        let has = |bit| t.flags & bit != 0;
        Target {
            policy: t.policy,
            exec: has(RE_F_EXEC),
            exec_names: has(RE_F_EXEC_NAMES),
            exec_paths: has(RE_F_EXEC_PATHS),
            exec_files: has(RE_F_EXEC_FILES),
            exec_default: Verdict::from_abi(t.exec_default).unwrap_or(Verdict::Allow),
            egress: has(RE_F_EGRESS),
            egress_default: Verdict::from_abi(t.egress_default).unwrap_or(Verdict::Allow),
            ingress: has(RE_F_INGRESS),
            ingress_default: Verdict::from_abi(t.ingress_default).unwrap_or(Verdict::Allow),
            isolated: has(RE_F_ISOLATED),
            audit_only: has(RE_F_AUDIT_ONLY),
        }
    }
}

/// The identity of a file as the exec hook sees it: the superblock's device (kernel encoding,
/// `major << 20 | minor`), the inode number, and the inode's change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
}

impl FileId {
    /// From `stat` of the file as the container sees it (through `/proc/<pid>/root`): on
    /// overlayfs the device is the overlay mount's and the inode the one the kernel reports
    /// for the overlay inode.
    pub fn from_metadata(m: &fs::Metadata) -> FileId {
        FileId {
            dev: kernel_dev(m.dev()),
            ino: m.ino(),
            ctime_sec: m.ctime(),
            ctime_nsec: u32::try_from(m.ctime_nsec()).unwrap_or(0),
        }
    }
}

/// A user-space `dev_t` (glibc encoding) in the kernel's internal encoding.
fn kernel_dev(dev: u64) -> u64 {
    let major = libc::major(dev) as u64;
    let minor = libc::minor(dev) as u64;
    (major << 20) | minor
}

/// Which way traffic goes, seen from the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }
}

/// An address prefix (CIDR). `len` is at most 32 for IPv4 and 128 for IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl std::fmt::Display for NetPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// One port rule of an address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRule {
    /// Inclusive; `(0, 65535)` is every port.
    pub ports: (u16, u16),
    /// IP protocol number (6 TCP, 17 UDP); `None`: any.
    pub proto: Option<u8>,
    pub verdict: Verdict,
    pub rule_id: u16,
}

/// The hook that enforces exec policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecHook {
    /// `lsm/bprm_check_security`: the exec fails with EPERM.
    Lsm,
    /// `tp_btf/sched_process_exec` + bpf_send_signal(SIGKILL) before the first instruction.
    TpBtf,
    /// `raw_tp/sched_process_exec`, the same with probe reads.
    RawTp,
}

impl ExecHook {
    /// `lsm`, `tp_btf` or `raw_tp` (also the pin name suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecHook::Lsm => "lsm",
            ExecHook::TpBtf => "tp_btf",
            ExecHook::RawTp => "raw_tp",
        }
    }

    const ALL: [ExecHook; 3] = [ExecHook::Lsm, ExecHook::TpBtf, ExecHook::RawTp];
}

/// Counters since the maps were created (all CPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnforceStats {
    pub exec_checked: u64,
    pub exec_denied: u64,
    pub exec_audited: u64,
    pub net_checked: u64,
    pub net_denied: u64,
    pub net_audited: u64,
    /// Reports the ring buffer had no room for.
    pub events_lost: u64,
    /// TCP connects rewritten to a mesh proxy listener ([`Enforcer::set_mesh_redirect`]).
    pub mesh_redirected: u64,
}

/// The pinned enforcement state, opened for reading and writing.
pub struct Enforcer {
    dir: PathBuf,
    targets: HashMap<MapData, u64, ReTarget>,
    names: LpmTrie<MapData, ReNameKey, ReVerdict>,
    paths: LpmTrie<MapData, RePathKey, ReVerdict>,
    files: HashMap<MapData, ReFileKey, ReFileVal>,
    seen: HashMap<MapData, ReSeenKey, u8>,
    net: LpmTrie<MapData, ReNetKey, ReNetVal>,
    iso: LpmTrie<MapData, ReIsoKey, u8>,
    stats: PerCpuArray<MapData, u64>,
    redirect: HashMap<MapData, ReRedirKey, ReRedirVal>,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn open_map(dir: &Path, name: &'static str) -> Result<Map, EnforceError> {
    let data =
        MapData::from_pin(dir.join("maps").join(name)).map_err(|e| EnforceError::map(name, e))?;
    Map::from_map_data(data).map_err(|e| EnforceError::map(name, e))
}

macro_rules! typed_map {
    ($dir:expr, $name:literal, $ty:ident) => {
        $ty::try_from(open_map($dir, $name)?).map_err(|e| EnforceError::map($name, e))?
    };
}

impl Enforcer {
    /// Opens the state pinned under `dir`, loading and pinning the maps and cgroup programs
    /// first when they are not there yet. Attaches nothing.
    pub fn open(dir: &Path) -> Result<Enforcer, EnforceError> {
        if unsafe { libc::geteuid() } != 0 {
            return Err(EnforceError::NotRoot);
        }
        install(dir)?;
        Ok(Enforcer {
            dir: dir.to_path_buf(),
            targets: typed_map!(dir, "RE_TARGETS", HashMap),
            names: typed_map!(dir, "RE_EXEC_NAMES", LpmTrie),
            paths: typed_map!(dir, "RE_EXEC_PATHS", LpmTrie),
            files: typed_map!(dir, "RE_EXEC_FILES", HashMap),
            seen: typed_map!(dir, "RE_EXEC_SEEN", HashMap),
            net: typed_map!(dir, "RE_NET_RULES", LpmTrie),
            iso: typed_map!(dir, "RE_ISOLATE_ALLOW", LpmTrie),
            stats: typed_map!(dir, "RE_STATS", PerCpuArray),
            redirect: typed_map!(dir, "RE_MESH_REDIRECT", HashMap),
        })
    }

    /// The state is pinned under `dir`.
    pub fn is_installed(dir: &Path) -> bool {
        dir.join("maps").join("RE_TARGETS").exists()
    }

    /// Detaches everything and removes every map and program: the pin directory goes away.
    pub fn remove_all(dir: &Path) -> Result<(), EnforceError> {
        if !dir.exists() {
            return Ok(());
        }
        // bpffs has no recursive removal; links first so programs detach before the maps go.
        let links = dir.join("links");
        if let Ok(rd) = fs::read_dir(&links) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    remove_dir_pins(&p)?;
                } else {
                    fs::remove_file(&p).map_err(|e| EnforceError::io(&p, e))?;
                }
            }
        }
        for sub in ["links", "prog", "maps"] {
            let p = dir.join(sub);
            if p.exists() {
                remove_dir_pins(&p)?;
            }
        }
        fs::remove_dir(dir).map_err(|e| EnforceError::io(dir, e))
    }

    /// The pin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The exec hook currently attached (pinned), if any.
    pub fn exec_hook(&self) -> Option<ExecHook> {
        ExecHook::ALL
            .into_iter()
            .find(|h| self.exec_link_path(*h).exists())
    }

    fn exec_link_path(&self, h: ExecHook) -> PathBuf {
        self.dir.join("links").join(format!("exec-{}", h.as_str()))
    }

    /// Attaches (and pins) the exec hook unless one is attached: BPF-LSM when `bpf` is an active
    /// LSM and the kernel loads LSM programs, otherwise tp_btf, otherwise raw_tp. Returns the
    /// hook in use. Every failed attempt is in the error when none works.
    pub fn ensure_exec_hook(&mut self) -> Result<ExecHook, EnforceError> {
        if let Some(h) = self.exec_hook() {
            return Ok(h);
        }
        let btf = Btf::from_sys_fs().map_err(EnforceError::Btf)?;
        let mut failures = Vec::new();
        for hook in ExecHook::ALL {
            if hook == ExecHook::Lsm && !bpf_lsm_active() {
                failures
                    .push("lsm: `bpf` is not an active LSM (lsm= kernel parameter)".to_string());
                continue;
            }
            match self.attach_exec(hook, &btf) {
                Ok(()) => return Ok(hook),
                Err(e) => failures.push(format!("{}: {}", hook.as_str(), error_chain(&e))),
            }
        }
        Err(EnforceError::NoExecHook(failures.join("; ")))
    }

    fn attach_exec(&mut self, hook: ExecHook, btf: &Btf) -> Result<(), EnforceError> {
        let mut ebpf = load_object(&self.dir, btf)?;
        let path = self.exec_link_path(hook);
        let link: FdLink = match hook {
            ExecHook::Lsm => {
                const NAME: &str = "enforce_exec_lsm";
                let p: &mut Lsm = program(&mut ebpf, NAME)?;
                p.load("bprm_check_security", btf)
                    .map_err(|e| EnforceError::program(NAME, e))?;
                let id = p.attach().map_err(|e| EnforceError::program(NAME, e))?;
                p.take_link(id)
                    .map_err(|e| EnforceError::program(NAME, e))?
                    .into()
            }
            ExecHook::TpBtf => {
                const NAME: &str = "enforce_exec_btf";
                let p: &mut BtfTracePoint = program(&mut ebpf, NAME)?;
                p.load("sched_process_exec", btf)
                    .map_err(|e| EnforceError::program(NAME, e))?;
                let id = p.attach().map_err(|e| EnforceError::program(NAME, e))?;
                p.take_link(id)
                    .map_err(|e| EnforceError::program(NAME, e))?
                    .into()
            }
            ExecHook::RawTp => {
                const NAME: &str = "enforce_exec_raw";
                let p: &mut RawTracePoint = program(&mut ebpf, NAME)?;
                p.load().map_err(|e| EnforceError::program(NAME, e))?;
                let id = p
                    .attach("sched_process_exec")
                    .map_err(|e| EnforceError::program(NAME, e))?;
                p.take_link(id)
                    .map_err(|e| EnforceError::program(NAME, e))?
                    .into()
            }
        };
        link.pin(&path)
            .map_err(|source| EnforceError::Pin { path, source })?;
        Ok(())
    }

    /// Detaches the exec hook. Returns whether one was attached.
    pub fn remove_exec_hook(&mut self) -> Result<bool, EnforceError> {
        let mut any = false;
        for h in ExecHook::ALL {
            let p = self.exec_link_path(h);
            if p.exists() {
                fs::remove_file(&p).map_err(|e| EnforceError::io(&p, e))?;
                any = true;
            }
        }
        Ok(any)
    }

    /// Attaches the six cgroup programs to the cgroup v2 directory `cgroup` and pins the links
    /// under `links/<key>/`. Returns false when `key` was attached already (nothing changes).
    /// On error nothing stays attached.
    pub fn attach_cgroup(&mut self, key: &str, cgroup: &Path) -> Result<bool, EnforceError> {
        let ldir = self.link_dir(key)?;
        if ldir.exists()
            && CGROUP_PROGRAMS
                .iter()
                .all(|(name, _)| ldir.join(name).exists())
        {
            return Ok(false);
        }
        let cg = fs::File::open(cgroup).map_err(|e| EnforceError::io(cgroup, e))?;
        fs::create_dir_all(&ldir).map_err(|e| EnforceError::io(&ldir, e))?;
        let r = (|| {
            for (name, hook) in CGROUP_PROGRAMS {
                let pin = ldir.join(name);
                if pin.exists() {
                    continue;
                }
                let prog_pin = self.dir.join("prog").join(name);
                let link = attach_one(name, hook, &prog_pin, &cg)?;
                link.pin(&pin)
                    .map_err(|source| EnforceError::Pin { path: pin, source })?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            let _ = remove_dir_pins(&ldir);
            return Err(e);
        }
        Ok(true)
    }

    /// Detaches what [`Enforcer::attach_cgroup`] attached under `key`. Returns whether anything was.
    pub fn detach_cgroup(&mut self, key: &str) -> Result<bool, EnforceError> {
        let ldir = self.link_dir(key)?;
        if !ldir.exists() {
            return Ok(false);
        }
        remove_dir_pins(&ldir)?;
        Ok(true)
    }

    /// The keys that have cgroup programs attached.
    pub fn attached_cgroups(&self) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.dir.join("links"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    fn link_dir(&self, key: &str) -> Result<PathBuf, EnforceError> {
        let ok = !key.is_empty()
            && !key.starts_with('.')
            && !key.starts_with("exec-")
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if !ok {
            return Err(EnforceError::BadKey(key.to_string()));
        }
        Ok(self.dir.join("links").join(key))
    }

    /// Sets what applies to the cgroup with id `cgroup_id` (see [`cgroup_id`]).
    pub fn set_target(&mut self, cgroup_id: u64, t: &Target) -> Result<(), EnforceError> {
        self.targets
            .insert(&cgroup_id, &t.abi(), 0)
            .map_err(|e| EnforceError::map("RE_TARGETS", e))
    }

    /// Stops checking anything for `cgroup_id`. Returns whether it had an entry.
    pub fn remove_target(&mut self, cgroup_id: u64) -> Result<bool, EnforceError> {
        match self.targets.remove(&cgroup_id) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(EnforceError::map("RE_TARGETS", e)),
        }
    }

    /// The target of `cgroup_id`, if it has one.
    pub fn target(&self, cgroup_id: u64) -> Option<Target> {
        self.targets
            .get(&cgroup_id, 0)
            .ok()
            .map(|t| Target::from_abi(&t))
    }

    /// Every cgroup id with a target.
    pub fn targets(&self) -> Vec<(u64, Target)> {
        self.targets
            .iter()
            .flatten()
            .map(|(k, v)| (k, Target::from_abi(&v)))
            .collect()
    }

    /// Adds an exec name rule: `name` exactly, or every name that starts with it (`prefix`).
    ///
    /// A name matches the executable file's own name (symlinks resolved) and, on the
    /// tracepoint hooks, the name it was executed as (the task's `comm`, which the kernel cuts
    /// to 15 bytes: a longer rule name is matched there by its first 15 bytes).
    pub fn put_exec_name(
        &mut self,
        policy: u32,
        name: &str,
        prefix: bool,
        verdict: Verdict,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        let b = name.as_bytes();
        // Kind byte, name, and for an exact name its NUL.
        let max = RE_NAME_LEN - 1 - usize::from(!prefix);
        if b.len() > max {
            return Err(EnforceError::TooLong {
                what: "exec name",
                value: name.to_string(),
                len: b.len(),
                max,
            });
        }
        let comm = &b[..b.len().min(15)];
        for (kind, text) in [(RE_NAME_FILE, b), (RE_NAME_COMM, comm)] {
            let mut k = ReNameKey {
                policy_be: policy.to_be(),
                name: [0; RE_NAME_LEN],
            };
            k.name[0] = kind;
            k.name[1..=text.len()].copy_from_slice(text);
            let bits = 32 + 8 + 8 * (text.len() + usize::from(!prefix));
            self.names
                .insert(&Key::new(bits as u32, k), &verdict_val(verdict, rule_id), 0)
                .map_err(|e| EnforceError::map("RE_EXEC_NAMES", e))?;
        }
        Ok(())
    }

    /// Adds an exec path rule: `path` exactly, or every path that starts with it (`prefix`).
    pub fn put_exec_path(
        &mut self,
        policy: u32,
        path: &str,
        prefix: bool,
        verdict: Verdict,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        let b = path.as_bytes();
        let max = if prefix { RE_PATH_LEN } else { RE_PATH_LEN - 1 };
        if b.len() > max {
            return Err(EnforceError::TooLong {
                what: "exec path",
                value: path.to_string(),
                len: b.len(),
                max,
            });
        }
        let mut k = RePathKey {
            policy_be: policy.to_be(),
            path: [0; RE_PATH_LEN],
        };
        k.path[..b.len()].copy_from_slice(b);
        let bits = 32 + 8 * (b.len() + usize::from(!prefix));
        self.paths
            .insert(&Key::new(bits as u32, k), &verdict_val(verdict, rule_id), 0)
            .map_err(|e| EnforceError::map("RE_EXEC_PATHS", e))
    }

    /// Records the verdict for a file a hash rule matched (`Some`), or that the file was
    /// hashed and matched no rule (`None`).
    pub fn put_exec_file(
        &mut self,
        policy: u32,
        id: FileId,
        verdict: Option<Verdict>,
        rule_id: u32,
    ) -> Result<(), EnforceError> {
        let k = ReFileKey {
            dev: id.dev,
            ino: id.ino,
            policy,
            pad: 0,
        };
        let v = ReFileVal {
            ctime_sec: id.ctime_sec,
            ctime_nsec: id.ctime_nsec,
            rule_id,
            action: verdict.map_or(RE_NONE, Verdict::abi),
            pad: [0; 7],
        };
        self.files
            .insert(&k, &v, 0)
            .map_err(|e| EnforceError::map("RE_EXEC_FILES", e))?;
        self.mark_exec_seen(policy, id)
    }

    /// Marks a file as hashed, so that its execs are not reported as unknown.
    pub fn mark_exec_seen(&mut self, policy: u32, id: FileId) -> Result<(), EnforceError> {
        let k = ReSeenKey {
            dev: id.dev,
            ino: id.ino,
            ctime_sec: id.ctime_sec,
            ctime_nsec: id.ctime_nsec,
            policy,
        };
        self.seen
            .insert(&k, &1, 0)
            .map_err(|e| EnforceError::map("RE_EXEC_SEEN", e))
    }

    /// Sets the port rules of `prefix` in `dir` for `policy`, replacing what was there. The
    /// kernel uses only the longest matching prefix, so `rules` must already include the rules
    /// of every shorter prefix that contains this one. An IPv4 prefix is also stored as its
    /// IPv4-mapped IPv6 form (`::ffff:a.b.c.d`), which dual-stack sockets use.
    pub fn put_net(
        &mut self,
        policy: u32,
        dir: Direction,
        prefix: NetPrefix,
        rules: &[PortRule],
    ) -> Result<(), EnforceError> {
        if rules.len() > RE_NET_MAX {
            return Err(EnforceError::TooManyPortRules {
                prefix: prefix.to_string(),
                count: rules.len(),
                max: RE_NET_MAX,
            });
        }
        let mut v = ReNetVal {
            count: rules.len() as u32,
            pad: 0,
            r: [RePortRule::default_zeroed(); RE_NET_MAX],
        };
        for (slot, r) in v.r.iter_mut().zip(rules) {
            *slot = RePortRule {
                port_lo: r.ports.0,
                port_hi: r.ports.1,
                proto: r.proto.unwrap_or(0),
                action: r.verdict.abi(),
                rule_id: r.rule_id,
            };
        }
        for key in net_keys(policy, dir, prefix) {
            self.net
                .insert(&key, &v, 0)
                .map_err(|e| EnforceError::map("RE_NET_RULES", e))?;
        }
        Ok(())
    }

    /// Removes every rule of `policy` (exec names, paths, files and network). Returns how many
    /// entries went.
    pub fn remove_policy(&mut self, policy: u32) -> Result<usize, EnforceError> {
        let be = policy.to_be();
        let mut n = 0;
        let keys: Vec<_> = self
            .names
            .keys()
            .flatten()
            .filter(|k| k.data().policy_be == be)
            .collect();
        for k in keys {
            self.names
                .remove(&k)
                .map_err(|e| EnforceError::map("RE_EXEC_NAMES", e))?;
            n += 1;
        }
        let keys: Vec<_> = self
            .paths
            .keys()
            .flatten()
            .filter(|k| k.data().policy_be == be)
            .collect();
        for k in keys {
            self.paths
                .remove(&k)
                .map_err(|e| EnforceError::map("RE_EXEC_PATHS", e))?;
            n += 1;
        }
        let keys: Vec<_> = self
            .net
            .keys()
            .flatten()
            .filter(|k| k.data().policy_be == be)
            .collect();
        for k in keys {
            self.net
                .remove(&k)
                .map_err(|e| EnforceError::map("RE_NET_RULES", e))?;
            n += 1;
        }
        let keys: Vec<_> = self
            .files
            .keys()
            .flatten()
            .filter(|k| k.policy == policy)
            .collect();
        for k in keys {
            self.files
                .remove(&k)
                .map_err(|e| EnforceError::map("RE_EXEC_FILES", e))?;
            n += 1;
        }
        let keys: Vec<_> = self
            .seen
            .keys()
            .flatten()
            .filter(|k| k.policy == policy)
            .collect();
        for k in keys {
            // An LRU map may have evicted it meanwhile.
            let _ = self.seen.remove(&k);
        }
        Ok(n)
    }

    /// The policy ids that have rules in the maps.
    pub fn policies_in_maps(&self) -> HashSet<u32> {
        let mut out = HashSet::new();
        out.extend(
            self.names
                .keys()
                .flatten()
                .map(|k| u32::from_be(k.data().policy_be)),
        );
        out.extend(
            self.paths
                .keys()
                .flatten()
                .map(|k| u32::from_be(k.data().policy_be)),
        );
        out.extend(
            self.net
                .keys()
                .flatten()
                .map(|k| u32::from_be(k.data().policy_be)),
        );
        out.extend(self.files.keys().flatten().map(|k| k.policy));
        out
    }

    /// Replaces the isolation allow-list of `cgroup_id`.
    pub fn set_isolate_allow(
        &mut self,
        cgroup_id: u64,
        allow: &[NetPrefix],
    ) -> Result<(), EnforceError> {
        self.clear_isolate_allow(cgroup_id)?;
        for p in allow {
            for key in iso_keys(cgroup_id, *p) {
                self.iso
                    .insert(&key, &1, 0)
                    .map_err(|e| EnforceError::map("RE_ISOLATE_ALLOW", e))?;
            }
        }
        Ok(())
    }

    /// Removes the isolation allow-list of `cgroup_id`.
    pub fn clear_isolate_allow(&mut self, cgroup_id: u64) -> Result<(), EnforceError> {
        let hi = ((cgroup_id >> 32) as u32).to_be();
        let lo = (cgroup_id as u32).to_be();
        let keys: Vec<_> = self
            .iso
            .keys()
            .flatten()
            .filter(|k| {
                let d = k.data();
                d.cgroup_hi_be == hi && d.cgroup_lo_be == lo
            })
            .collect();
        for k in keys {
            self.iso
                .remove(&k)
                .map_err(|e| EnforceError::map("RE_ISOLATE_ALLOW", e))?;
        }
        Ok(())
    }

    /// Counters of the programs.
    pub fn stats(&self) -> EnforceStats {
        let get =
            |idx: u32| -> u64 { self.stats.get(&idx, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        EnforceStats {
            exec_checked: get(RE_ST_EXEC_CHECKED),
            exec_denied: get(RE_ST_EXEC_DENIED),
            exec_audited: get(RE_ST_EXEC_AUDITED),
            net_checked: get(RE_ST_NET_CHECKED),
            net_denied: get(RE_ST_NET_DENIED),
            net_audited: get(RE_ST_NET_AUDITED),
            events_lost: get(RE_ST_EVENTS_LOST),
            mesh_redirected: get(RE_ST_MESH_REDIRECTED),
        }
    }

    /// Transparent mesh redirection: from now on a TCP `connect()` by a task of cgroup
    /// `cgroup_id` (or of a cgroup below it) to `from` goes to `to` (the local mesh proxy's
    /// listener for that service) instead. Takes effect only where the cgroup programs are
    /// attached ([`Enforcer::attach_cgroup`]), and only after the network policy of that cgroup
    /// allowed `from`: a denied destination stays refused. Both must be the same family and
    /// neither a port 0 nor an unspecified address.
    pub fn set_mesh_redirect(
        &mut self,
        cgroup_id: u64,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<(), EnforceError> {
        let bad = |reason| EnforceError::BadRedirect { from, to, reason };
        if from.is_ipv4() != to.is_ipv4() {
            return Err(bad("the kernel cannot change a socket's address family"));
        }
        if from.port() == 0
            || to.port() == 0
            || from.ip().is_unspecified()
            || to.ip().is_unspecified()
        {
            return Err(bad("port 0 and unspecified addresses are not destinations"));
        }
        let (_, addr) = family_addr(to.ip());
        let v = ReRedirVal {
            addr,
            port: to.port().to_be(),
            pad: [0; 3],
        };
        self.redirect
            .insert(&redir_key(cgroup_id, from), &v, 0)
            .map_err(|e| EnforceError::map("RE_MESH_REDIRECT", e))
    }

    /// Removes one redirection. Returns whether it existed.
    pub fn remove_mesh_redirect(
        &mut self,
        cgroup_id: u64,
        from: SocketAddr,
    ) -> Result<bool, EnforceError> {
        match self.redirect.remove(&redir_key(cgroup_id, from)) {
            Ok(()) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(e) => Err(EnforceError::map("RE_MESH_REDIRECT", e)),
        }
    }

    /// Every redirection: (cgroup id, original destination, proxy listener).
    pub fn mesh_redirects(&self) -> Vec<(u64, SocketAddr, SocketAddr)> {
        self.redirect
            .iter()
            .flatten()
            .map(|(k, v)| {
                let ip = |a: [u8; 16]| -> IpAddr {
                    if k.family == 4 {
                        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
                    } else {
                        IpAddr::V6(Ipv6Addr::from(a))
                    }
                };
                (
                    k.cgroup_id,
                    SocketAddr::new(ip(k.addr), u16::from_be(k.port)),
                    SocketAddr::new(ip(v.addr), u16::from_be(v.port)),
                )
            })
            .collect()
    }
}

/// (family 4 or 6, the address in 16 bytes: IPv4 in the first four).
fn family_addr(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (6, a.octets()),
    }
}

fn redir_key(cgroup_id: u64, from: SocketAddr) -> ReRedirKey {
    let (family, addr) = family_addr(from.ip());
    ReRedirKey {
        cgroup_id,
        family,
        pad: 0,
        port: from.port().to_be(),
        pad2: 0,
        addr,
    }
}

impl RePortRule {
    const fn default_zeroed() -> RePortRule {
        RePortRule {
            port_lo: 0,
            port_hi: 0,
            proto: 0,
            action: 0,
            rule_id: 0,
        }
    }
}

fn verdict_val(v: Verdict, rule_id: u32) -> ReVerdict {
    ReVerdict {
        rule_id,
        action: v.abi(),
        pad: [0; 3],
    }
}

/// (family, 16 address bytes, prefix length in address bits) of a prefix, plus the IPv4-mapped
/// form of an IPv4 prefix.
fn prefix_forms(p: NetPrefix) -> Vec<(u8, [u8; 16], u32)> {
    match p.addr {
        IpAddr::V4(a) => {
            let len = u32::from(p.len.min(32));
            let masked = mask_v4(a, len);
            let mut v4 = [0u8; 16];
            v4[..4].copy_from_slice(&masked.octets());
            let mapped = masked.to_ipv6_mapped().octets();
            vec![(4, v4, len), (6, mapped, 96 + len)]
        }
        IpAddr::V6(a) => {
            let len = u32::from(p.len.min(128));
            vec![(6, mask_v6(a, len).octets(), len)]
        }
    }
}

fn mask_v4(a: Ipv4Addr, len: u32) -> Ipv4Addr {
    let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ipv4Addr::from(u32::from(a) & m)
}

fn mask_v6(a: Ipv6Addr, len: u32) -> Ipv6Addr {
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    Ipv6Addr::from(u128::from(a) & m)
}

fn net_keys(policy: u32, dir: Direction, p: NetPrefix) -> Vec<Key<ReNetKey>> {
    prefix_forms(p)
        .into_iter()
        .map(|(family, addr, len)| {
            Key::new(
                64 + len,
                ReNetKey {
                    policy_be: policy.to_be(),
                    dir: u8::from(dir == Direction::Ingress),
                    family,
                    pad: 0,
                    addr,
                },
            )
        })
        .collect()
}

fn iso_keys(cgroup_id: u64, p: NetPrefix) -> Vec<Key<ReIsoKey>> {
    prefix_forms(p)
        .into_iter()
        .map(|(family, addr, len)| {
            Key::new(
                96 + len,
                ReIsoKey {
                    cgroup_hi_be: ((cgroup_id >> 32) as u32).to_be(),
                    cgroup_lo_be: (cgroup_id as u32).to_be(),
                    family,
                    pad: [0; 3],
                    addr,
                },
            )
        })
        .collect()
}

/// The cgroup v2 id of a cgroup directory (its inode number on cgroupfs).
pub fn cgroup_id(cgroup_dir: &Path) -> Result<u64, EnforceError> {
    fs::metadata(cgroup_dir)
        .map(|m| m.ino())
        .map_err(|e| EnforceError::io(cgroup_dir, e))
}

/// `bpf` is in the active LSM list (securityfs).
pub fn bpf_lsm_active() -> bool {
    fs::read_to_string("/sys/kernel/security/lsm")
        .map(|l| l.trim().split(',').any(|m| m == "bpf"))
        .unwrap_or(false)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        // Verifier logs are long; the first line says what failed.
        let first = t.lines().next().unwrap_or_default();
        if !s.contains(first) {
            s.push_str(": ");
            s.push_str(first);
        }
        cur = c.source();
    }
    s
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, EnforceError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| EnforceError::program(name, ProgramError::NotLoaded))?
        .try_into()
        .map_err(|e| EnforceError::program(name, e))
}

fn load_object(dir: &Path, btf: &Btf) -> Result<Ebpf, EnforceError> {
    EbpfLoader::new()
        .btf(btf)
        .default_map_pin_directory(dir.join("maps"))
        .load(ENFORCE_OBJ)
        .map_err(|e| EnforceError::Object(Box::new(e)))
}

/// Creates the pin directories, the maps and the cgroup programs unless they exist.
fn install(dir: &Path) -> Result<(), EnforceError> {
    let prog_dir = dir.join("prog");
    if CGROUP_PROGRAMS
        .iter()
        .all(|(n, _)| prog_dir.join(n).exists())
        && Enforcer::is_installed(dir)
    {
        return Ok(());
    }
    bpffs::ensure(dir)?;
    for sub in ["maps", "prog", "links"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|e| EnforceError::io(&p, e))?;
    }
    let btf = Btf::from_sys_fs().map_err(EnforceError::Btf)?;
    let mut ebpf = load_object(dir, &btf)?;
    for (name, hook) in CGROUP_PROGRAMS {
        let pin = prog_dir.join(name);
        if pin.exists() {
            continue;
        }
        match hook {
            CgroupHook::SockAddr => {
                let p: &mut CgroupSockAddr = program(&mut ebpf, name)?;
                p.load().map_err(|e| EnforceError::program(name, e))?;
                p.pin(&pin)
                    .map_err(|source| EnforceError::Pin { path: pin, source })?;
            }
            CgroupHook::Skb(_) => {
                let p: &mut CgroupSkb = program(&mut ebpf, name)?;
                p.load().map_err(|e| EnforceError::program(name, e))?;
                p.pin(&pin)
                    .map_err(|source| EnforceError::Pin { path: pin, source })?;
            }
        }
    }
    Ok(())
}

/// Attaches one pinned cgroup program to `cg` and returns its link.
fn attach_one(
    name: &'static str,
    hook: CgroupHook,
    prog_pin: &Path,
    cg: &fs::File,
) -> Result<FdLink, EnforceError> {
    let link: Result<FdLink, ProgramError> = match hook {
        CgroupHook::SockAddr => {
            let attach_type = match name {
                "enforce_connect4" => aya::programs::CgroupSockAddrAttachType::Connect4,
                "enforce_connect6" => aya::programs::CgroupSockAddrAttachType::Connect6,
                "enforce_sendmsg4" => aya::programs::CgroupSockAddrAttachType::UDPSendMsg4,
                _ => aya::programs::CgroupSockAddrAttachType::UDPSendMsg6,
            };
            (|| {
                let mut p = CgroupSockAddr::from_pin(prog_pin, attach_type)?;
                let id = p.attach(cg.as_fd(), CgroupAttachMode::Single)?;
                let link = p.take_link(id)?;
                FdLink::try_from(link).map_err(|_| ProgramError::AlreadyAttached)
            })()
        }
        CgroupHook::Skb(kind) => (|| {
            let mut p = CgroupSkb::from_pin(prog_pin, kind)?;
            let id = p.attach(cg.as_fd(), kind, CgroupAttachMode::Single)?;
            let link = p.take_link(id)?;
            FdLink::try_from(link).map_err(|_| ProgramError::AlreadyAttached)
        })(),
    };
    link.map_err(|e| EnforceError::program(name, e))
}

/// Removes every pin in `dir`, then `dir`.
fn remove_dir_pins(dir: &Path) -> Result<(), EnforceError> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                remove_dir_pins(&p)?;
            } else {
                fs::remove_file(&p).map_err(|e| EnforceError::io(&p, e))?;
            }
        }
    }
    fs::remove_dir(dir).map_err(|e| EnforceError::io(dir, e))
}

/// A pinned link, for callers that want to check one exists.
pub fn link_is_pinned(path: &Path) -> bool {
    PinnedLink::from_pin(path).is_ok()
}

/// What kind of report an [`EnforceEvent`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnforceEventKind {
    /// An exec was denied (killed or refused) or, with [`Verdict::Audit`], would have been.
    Exec,
    /// An exec of a file that no hash rule knows, in a policy with hash rules: user space
    /// should hash it (the exec was allowed, or denied by the default of an allow-list).
    ExecUnknown,
    /// A connection or datagram was refused or, with [`Verdict::Audit`], would have been.
    Net,
}

/// Which program decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// bpf_send_signal(SIGKILL) from tp_btf/sched_process_exec.
    ExecTpBtf,
    /// bpf_send_signal(SIGKILL) from raw_tp/sched_process_exec.
    ExecRawTp,
    /// EPERM from lsm/bprm_check_security.
    ExecLsm,
    Connect4,
    Connect6,
    Sendmsg4,
    Sendmsg6,
    SkbIngress,
    SkbEgress,
    Unknown(u8),
}

impl Mechanism {
    fn from_abi(m: u8) -> Mechanism {
        match m {
            RE_MECH_TP_BTF => Mechanism::ExecTpBtf,
            RE_MECH_RAW_TP => Mechanism::ExecRawTp,
            RE_MECH_LSM => Mechanism::ExecLsm,
            RE_MECH_CONNECT4 => Mechanism::Connect4,
            RE_MECH_CONNECT6 => Mechanism::Connect6,
            RE_MECH_SENDMSG4 => Mechanism::Sendmsg4,
            RE_MECH_SENDMSG6 => Mechanism::Sendmsg6,
            RE_MECH_SKB_INGRESS => Mechanism::SkbIngress,
            RE_MECH_SKB_EGRESS => Mechanism::SkbEgress,
            other => Mechanism::Unknown(other),
        }
    }

    /// A stable name for events and docs (`bpf_send_signal@tp_btf/sched_process_exec`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::ExecTpBtf => "bpf_send_signal@tp_btf/sched_process_exec",
            Mechanism::ExecRawTp => "bpf_send_signal@raw_tp/sched_process_exec",
            Mechanism::ExecLsm => "bpf_lsm/bprm_check_security",
            Mechanism::Connect4 => "cgroup/connect4",
            Mechanism::Connect6 => "cgroup/connect6",
            Mechanism::Sendmsg4 => "cgroup/sendmsg4",
            Mechanism::Sendmsg6 => "cgroup/sendmsg6",
            Mechanism::SkbIngress => "cgroup_skb/ingress",
            Mechanism::SkbEgress => "cgroup_skb/egress",
            Mechanism::Unknown(_) => "unknown",
        }
    }
}

/// What decided a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No rule matched: the policy's default.
    Default,
    /// The rule `rule_id` matched.
    Rule,
    /// The container is isolated.
    Isolated,
    /// The file changed after it was hashed, so its allow rule no longer vouches for it.
    Changed,
}

/// The network facts of a [`EnforceEventKind::Net`] report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetFacts {
    pub direction: Direction,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// The container's end (unknown for connects: the address is not bound yet).
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
}

/// One report from the programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforceEvent {
    pub kind: EnforceEventKind,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The cgroup whose target applied.
    pub cgroup_id: u64,
    pub policy: u32,
    /// 0: the policy's default decided.
    pub rule_id: u32,
    /// [`Verdict::Deny`]: enforced; [`Verdict::Audit`]: reported only.
    pub verdict: Verdict,
    pub mechanism: Mechanism,
    pub reason: Reason,
    /// Host pid (tgid), tid, parent and uid of the task; 0 for packets that have no task.
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    /// Exec: the name it was executed as (the task's comm, at most 15 bytes); on the LSM hook
    /// the path given to execve.
    pub name: String,
    /// Exec: the executable file's own name.
    pub file_name: String,
    /// Exec: the executable's path in the container, when the policy has path rules.
    pub path: Option<String>,
    /// Exec: the executable's identity.
    pub file: Option<FileId>,
    pub net: Option<NetFacts>,
}

/// The reader of the programs' reports. Only one reader should exist at a time (the ring
/// buffer has one consumer position): the agent, or `rampart policy apply --watch`.
pub struct EnforceEvents {
    ring: RingBuf<MapData>,
    boot_to_wall_ns: i128,
}

impl std::fmt::Debug for EnforceEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnforceEvents").finish_non_exhaustive()
    }
}

impl EnforceEvents {
    /// Opens the pinned ring buffer under `dir`.
    pub fn open(dir: &Path) -> Result<EnforceEvents, EnforceError> {
        let ring: RingBuf<MapData> = typed_map!(dir, "RE_EVENTS", RingBuf);
        Ok(EnforceEvents {
            ring,
            boot_to_wall_ns: boot_to_wall_offset(),
        })
    }

    /// Waits up to `timeout` for reports; returns whether some may be ready.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the ring buffer's fd, which `self.ring` keeps open.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// Appends every report waiting to `out`; returns how many.
    pub fn drain(&mut self, out: &mut Vec<EnforceEvent>) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if let Some(ev) = decode(&item, self.boot_to_wall_ns) {
                out.push(ev);
                n += 1;
            }
        }
        n
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn ip_of(family: u16, a: &[u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        let v6 = Ipv6Addr::from(*a);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

fn decode(data: &[u8], boot_to_wall_ns: i128) -> Option<EnforceEvent> {
    if data.len() < std::mem::size_of::<ReEvent>() {
        return None;
    }
    let e: ReEvent = bytemuck::pod_read_unaligned(&data[..std::mem::size_of::<ReEvent>()]);
    let kind = match e.kind {
        RE_EV_EXEC => EnforceEventKind::Exec,
        RE_EV_EXEC_UNKNOWN => EnforceEventKind::ExecUnknown,
        RE_EV_NET => EnforceEventKind::Net,
        _ => return None,
    };
    let time_ns = u64::try_from(i128::from(e.ktime_ns) + boot_to_wall_ns).unwrap_or(0);
    let is_exec = kind != EnforceEventKind::Net;
    let net = (!is_exec).then(|| {
        let local_ip = ip_of(e.family, &e.laddr);
        NetFacts {
            direction: if e.dir == 1 {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            proto: e.proto as u8,
            local: (!local_ip.is_unspecified()).then(|| SocketAddr::new(local_ip, e.lport)),
            remote: SocketAddr::new(ip_of(e.family, &e.raddr), e.rport),
        }
    });
    Some(EnforceEvent {
        kind,
        time_ns,
        cgroup_id: e.cgroup_id,
        policy: e.policy,
        rule_id: e.rule_id,
        verdict: Verdict::from_abi(e.action).unwrap_or(Verdict::Allow),
        mechanism: Mechanism::from_abi(e.mechanism),
        reason: match e.reason {
            RE_WHY_RULE => Reason::Rule,
            RE_WHY_ISOLATED => Reason::Isolated,
            RE_WHY_CHANGED => Reason::Changed,
            RE_WHY_DEFAULT => Reason::Default,
            _ => Reason::Default,
        },
        pid: e.pid,
        tid: e.tid,
        ppid: e.ppid,
        uid: e.uid,
        comm: cstr(&e.comm),
        name: cstr(&e.name),
        file_name: cstr(&e.file_name),
        path: (e.path_len > 0).then(|| cstr(&e.path)),
        file: is_exec.then_some(FileId {
            dev: e.dev,
            ino: e.ino,
            ctime_sec: e.ctime_sec,
            ctime_nsec: e.ctime_nsec,
        }),
        net,
    })
}

/// CLOCK_REALTIME - CLOCK_BOOTTIME, in nanoseconds.
fn boot_to_wall_offset() -> i128 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_BOOTTIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_prefixes_are_masked_and_also_stored_mapped() {
        let forms = prefix_forms(NetPrefix {
            addr: "10.1.2.3"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            len: 16,
        });
        assert_eq!(forms.len(), 2);
        assert_eq!(forms[0].0, 4);
        assert_eq!(&forms[0].1[..4], &[10, 1, 0, 0]);
        assert_eq!(forms[0].2, 16);
        assert_eq!(forms[1].0, 6);
        assert_eq!(forms[1].2, 112);
        assert_eq!(&forms[1].1[10..], &[0xff, 0xff, 10, 1, 0, 0]);
    }

    #[test]
    fn user_dev_t_converts_to_kernel_encoding() {
        // glibc makedev(8, 1) = 0x801; kernel MKDEV(8, 1) = 8 << 20 | 1.
        assert_eq!(kernel_dev(0x801), (8 << 20) | 1);
        // A large minor (overlay anonymous devices are 0:N).
        let d = libc::makedev(0, 300);
        assert_eq!(kernel_dev(d), 300);
    }

    #[test]
    fn verdicts_order_deny_over_audit_over_allow() {
        assert!(Verdict::Deny > Verdict::Audit && Verdict::Audit > Verdict::Allow);
        let t = Target {
            policy: 7,
            exec: true,
            exec_names: true,
            exec_default: Verdict::Deny,
            ..Target::none()
        };
        assert_eq!(Target::from_abi(&t.abi()), t);
    }
}
