//! The BPF sensor: loads `bpf/rampart.bpf.c`, attaches it, and turns its ring buffer into a
//! stream of [`SensorEvent`]s on a bounded channel.
//!
//! Loss is never silent: records the kernel could not queue (ring buffer full) are counted per
//! CPU in the COUNTERS map, records that did not decode and events still waiting for room in
//! the channel when the sensor stops are counted here; [`Sensor::counters`] reports all of
//! them. A full channel does not drop: the reader waits, and the records wait in the ring
//! buffer, so the ring buffer (not the channel) is the sensor's buffer for bursts.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{
    BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, RawTracePoint,
};
use aya::{Btf, Ebpf, EbpfLoader};
use rampart_event::{Device, SensorEvent};

use crate::abi::{
    NameKey, RpConfig, RP_CNT_DROPS, RP_CNT_EVENTS, RP_CNT_FILTERED, RP_CNT_TRUNCATED,
};
use crate::cgroup::{cgroup_layout, CgroupLayout};
use crate::decode::Decoder;
use crate::error::KernelError;

/// The tracing programs as tp_btf with the open filter's loads made direct by the
/// `bpf_rdonly_cast` kfunc, as tp_btf with those loads through `bpf_probe_read_kernel`, and as
/// raw tracepoints for kernels that refuse tp_btf; one source, see `bpf/rampart.bpf.c`.
static SENSOR_KFUNC: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rampart_kfunc.bpf.o"));
static SENSOR_BTF: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rampart_btf.bpf.o"));
static SENSOR_RAW: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rampart_raw.bpf.o"));

/// The sensitive files whose read-only opens are reported. The kernel matches on names: a file
/// is reported when its own name is in `names`, or the name of its directory is in `dirs`;
/// user space then applies the exact path patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveNames {
    pub names: Vec<String>,
    pub dirs: Vec<String>,
}

impl SensitiveNames {
    /// Derives the kernel-side names from path patterns (`/etc/shadow`, `/root/.ssh/*`,
    /// `/proc/*/mem`): a literal last component goes to `names`; a pattern in the last
    /// component puts the literal directory name before it in `dirs`.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> SensitiveNames {
        let mut out = SensitiveNames {
            names: Vec::new(),
            dirs: Vec::new(),
        };
        for p in patterns {
            let mut parts = p.as_ref().rsplit('/').filter(|c| !c.is_empty());
            let Some(last) = parts.next() else { continue };
            let is_glob = |s: &str| s.contains(['*', '?', '[']);
            if !is_glob(last) {
                out.names.push(last.to_string());
            } else if let Some(dir) = parts.next().filter(|d| !is_glob(d)) {
                out.dirs.push(dir.to_string());
            }
        }
        out.names.sort();
        out.names.dedup();
        out.dirs.sort();
        out.dirs.dedup();
        out
    }
}

/// How the sensor is set up.
#[derive(Debug, Clone)]
pub struct SensorConfig {
    /// Report only tasks outside the host's mount namespace.
    pub containers_only: bool,
    pub file_events: bool,
    pub net_events: bool,
    /// DNS queries and answers (cgroup_skb on the unified cgroup hierarchy).
    pub dns: bool,
    /// Mining protocols in outbound TCP payloads (`net.payload`; cgroup_skb egress on the
    /// unified cgroup hierarchy, the same programs as `dns`).
    pub payload: bool,
    /// Ring buffer size in bytes (a power of two, at least one page).
    pub ring_buffer_bytes: u32,
    /// The kernel wakes the reader early when this many bytes wait.
    pub wakeup_bytes: u64,
    /// The reader polls at least this often (bounds the latency without wakeups).
    pub poll_interval: Duration,
    pub sensitive: SensitiveNames,
    /// Which build of the tracing programs to load. `Auto` tries them from the fastest down;
    /// the others load that one or fail (tests, and the benchmark's comparisons).
    pub programs: SensorPrograms,
}

/// The builds of the tracing programs, fastest first (see `bpf/rampart.bpf.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SensorPrograms {
    /// The first of the three below that the kernel accepts.
    #[default]
    Auto,
    /// tp_btf, the open filter reading through `bpf_rdonly_cast` (6.17+ kernels).
    TpBtfKfunc,
    /// tp_btf, the open filter reading through `bpf_probe_read_kernel`.
    TpBtf,
    /// Raw tracepoints: every kernel read through `bpf_probe_read_kernel`.
    Raw,
}

impl SensorPrograms {
    /// The name `Sensor::programs` reports and the agent logs.
    pub fn name(self) -> &'static str {
        match self {
            SensorPrograms::Auto => "auto",
            SensorPrograms::TpBtfKfunc => "tp_btf+kfunc",
            SensorPrograms::TpBtf => "tp_btf",
            SensorPrograms::Raw => "raw_tracepoint",
        }
    }

    /// Every build by name, in the order `Auto` tries them (after `auto` itself).
    pub const ALL: [SensorPrograms; 4] = [
        SensorPrograms::Auto,
        SensorPrograms::TpBtfKfunc,
        SensorPrograms::TpBtf,
        SensorPrograms::Raw,
    ];

    /// The build named `name` (one of the names [`SensorPrograms::name`] gives).
    pub fn from_name(name: &str) -> Option<SensorPrograms> {
        SensorPrograms::ALL.into_iter().find(|p| p.name() == name)
    }

    fn object(self) -> Option<(&'static [u8], HookKind)> {
        match self {
            SensorPrograms::Auto => None,
            SensorPrograms::TpBtfKfunc => Some((SENSOR_KFUNC, HookKind::TpBtf)),
            SensorPrograms::TpBtf => Some((SENSOR_BTF, HookKind::TpBtf)),
            SensorPrograms::Raw => Some((SENSOR_RAW, HookKind::Raw)),
        }
    }
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            containers_only: false,
            file_events: true,
            net_events: true,
            dns: true,
            payload: true,
            ring_buffer_bytes: 16 << 20,
            wakeup_bytes: 256 << 10,
            poll_interval: Duration::from_millis(10),
            sensitive: SensitiveNames::from_patterns(&crate::DEFAULT_SENSITIVE_PATHS),
            programs: SensorPrograms::Auto,
        }
    }
}

/// Counts since the sensor started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SensorCounters {
    /// Records the kernel queued.
    pub events: u64,
    /// Records the kernel could not queue (ring buffer full), per CPU.
    pub drops_per_cpu: Vec<u64>,
    /// Opens filtered in the kernel (read-only and not sensitive).
    pub filtered: u64,
    /// Records whose strings were cut to the sensor's bounds.
    pub truncated: u64,
    /// Decoded events the consumer's channel still had no room for when the sensor stopped.
    pub userspace_drops: u64,
    /// Records that did not decode.
    pub malformed: u64,
}

impl SensorCounters {
    /// Every loss, kernel and user space.
    pub fn drops_total(&self) -> u64 {
        self.drops_per_cpu.iter().sum::<u64>() + self.userspace_drops + self.malformed
    }
}

#[derive(Debug, Default)]
struct ReaderStats {
    userspace_drops: AtomicU64,
    malformed: AtomicU64,
}

/// A loaded and attached sensor. Dropping it (or [`Sensor::stop`]) stops the reader and
/// detaches every program.
pub struct Sensor {
    ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
    stats: Arc<ReaderStats>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    hooks: Vec<(&'static str, &'static str)>,
    programs: SensorPrograms,
    dns_attached: bool,
    layout: CgroupLayout,
}

impl std::fmt::Debug for Sensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensor")
            .field("hooks", &self.hooks)
            .field("dns_attached", &self.dns_attached)
            .finish_non_exhaustive()
    }
}

/// (tracepoint, program name in both objects)
const HOOKS: [(&str, &str); 4] = [
    ("sys_exit", "rp_sys_exit"),
    ("sched_process_exec", "rp_exec"),
    ("sched_process_fork", "rp_fork"),
    ("sched_process_exit", "rp_exit"),
];

impl Sensor {
    /// Loads and attaches the programs and starts the reader thread, which sends every event
    /// to `tx` (events it cannot send without blocking are counted as user-space drops).
    pub fn start(
        config: &SensorConfig,
        device: Arc<Device>,
        instance: u64,
        tx: SyncSender<Box<SensorEvent>>,
    ) -> Result<Sensor, KernelError> {
        if unsafe { libc::geteuid() } != 0 {
            return Err(KernelError::NotRoot);
        }
        let btf = Btf::from_sys_fs().map_err(KernelError::Btf)?;
        let layout = cgroup_layout();
        let cfg = RpConfig {
            self_tgid: std::process::id(),
            containers_only: u32::from(config.containers_only),
            host_mntns: own_mntns(),
            v1_subsys: match (&layout.v1_pids, layout.pids_subsys_id) {
                (Some(_), Some(id)) => id,
                _ => u32::MAX,
            },
            wakeup_bytes: config.wakeup_bytes,
            file_events: u32::from(config.file_events),
            net_events: u32::from(config.net_events),
            name_len_mask: len_mask(&config.sensitive.names),
            dir_len_mask: len_mask(&config.sensitive.dirs),
            payload_events: u32::from(config.payload),
            dns_events: u32::from(config.dns),
            name_filter: name_filter(&config.sensitive.names),
            dir_filter: name_filter(&config.sensitive.dirs),
        };
        let choices: &[SensorPrograms] = match config.programs {
            SensorPrograms::Auto => &[
                SensorPrograms::TpBtfKfunc,
                SensorPrograms::TpBtf,
                SensorPrograms::Raw,
            ],
            _ => std::slice::from_ref(&config.programs),
        };
        let (mut ebpf, kind, programs) = load_first(choices, &btf, &cfg, config)?;
        // Process lifecycle first, so the process table never misses a parent whose children's
        // syscalls are already reported.
        let mut hooks = Vec::new();
        for &(hook, name) in HOOKS.iter().rev() {
            attach_tracing(&mut ebpf, hook, name, kind)?;
            hooks.push((hook, kind.name()));
        }
        hooks.reverse();

        // One pair of cgroup_skb programs serves DNS and TCP payloads; each part is switched
        // off in the kernel when not wanted (CFG.dns_events, CFG.payload_events).
        let mut dns_attached = false;
        if config.dns || config.payload {
            if let Some(root) = &layout.unified {
                match attach_dns(&mut ebpf, root) {
                    Ok(()) => dns_attached = true,
                    Err(e) => {
                        tracing::warn!("DNS and TCP payload (mining protocol) events are off: {e}")
                    }
                }
            } else {
                tracing::warn!(
                    "DNS and TCP payload (mining protocol) events are off: no cgroup v2 hierarchy to attach cgroup_skb to"
                );
            }
        }

        let counters = PerCpuArray::try_from(
            ebpf.take_map("COUNTERS")
                .ok_or_else(|| KernelError::map("COUNTERS", missing_map()))?,
        )
        .map_err(|e| KernelError::map("COUNTERS", e))?;
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or_else(|| KernelError::map("EVENTS", missing_map()))?,
        )
        .map_err(|e| KernelError::map("EVENTS", e))?;

        let stats = Arc::new(ReaderStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stats = stats.clone();
            let stop = stop.clone();
            let poll = config.poll_interval;
            let decoder = Decoder::new(device, instance);
            std::thread::Builder::new()
                .name("rampart-ringbuf".into())
                .spawn(move || read_loop(ring, decoder, tx, stats, stop, poll))
                .map_err(|e| KernelError::Io {
                    path: PathBuf::from("thread rampart-ringbuf"),
                    source: e,
                })?
        };
        Ok(Sensor {
            ebpf,
            counters,
            stats,
            stop,
            reader: Some(reader),
            hooks,
            programs,
            dns_attached,
            layout,
        })
    }

    /// Each hook and the program type that serves it (`tp_btf` or `raw_tracepoint`).
    pub fn hooks(&self) -> &[(&'static str, &'static str)] {
        &self.hooks
    }

    /// The build of the tracing programs that loaded (never `Auto`).
    pub fn programs(&self) -> SensorPrograms {
        self.programs
    }

    /// DNS capture is attached.
    pub fn dns_attached(&self) -> bool {
        self.dns_attached
    }

    /// The cgroup layout the sensor saw at start.
    pub fn cgroup_layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// `ebpf (<build>)`: `ebpf (tp_btf+kfunc)`, `ebpf (tp_btf)` or `ebpf (raw_tracepoint)`.
    pub fn mechanism(&self) -> String {
        format!("ebpf ({})", self.programs.name())
    }

    /// Counts since start.
    pub fn counters(&self) -> SensorCounters {
        let sum = |idx: u32| -> (u64, Vec<u64>) {
            match self.counters.get(&idx, 0) {
                Ok(v) => (v.iter().sum(), v.iter().copied().collect()),
                Err(_) => (0, Vec::new()),
            }
        };
        SensorCounters {
            events: sum(RP_CNT_EVENTS).0,
            drops_per_cpu: sum(RP_CNT_DROPS).1,
            filtered: sum(RP_CNT_FILTERED).0,
            truncated: sum(RP_CNT_TRUNCATED).0,
            userspace_drops: self.stats.userspace_drops.load(Ordering::Relaxed),
            malformed: self.stats.malformed.load(Ordering::Relaxed),
        }
    }

    /// Stops the reader and detaches every program.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        // Dropping `ebpf` detaches the links; programs are unloaded with their last fd.
        let _ = &self.ebpf;
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn missing_map() -> aya::maps::MapError {
    aya::maps::MapError::InvalidName {
        name: "missing".into(),
    }
}

/// Bit n set when some name is n bytes long (names of 32 bytes or more are matched in user
/// space only, see [`name_key`]).
fn len_mask(names: &[String]) -> u64 {
    names
        .iter()
        .map(String::len)
        .filter(|&l| l > 0 && l < 32)
        .fold(0, |m, l| m | (1u64 << l))
}

/// The bit of `name` in the kernel's 256-bit name filters (`RP_NAME_BIT` in `bpf/rampart.h`:
/// length, first and last byte), for names the kernel can match (1 to 31 bytes).
pub(crate) fn name_bit(name: &[u8]) -> Option<u32> {
    let (&c0, &cl) = (name.first()?, name.last()?);
    if name.len() >= 32 {
        return None;
    }
    Some((name.len() as u32 * 31 + u32::from(c0) * 7 + u32::from(cl)) & 255)
}

/// `rp_config.name_filter` / `dir_filter` for `names`.
fn name_filter(names: &[String]) -> [u64; 4] {
    let mut f = [0u64; 4];
    for bit in names.iter().filter_map(|n| name_bit(n.as_bytes())) {
        f[(bit >> 6) as usize] |= 1 << (bit & 63);
    }
    f
}

fn name_key(name: &str) -> Option<NameKey> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= 32 {
        tracing::warn!(
            "sensitive name {name:?} is longer than 31 bytes: matched in user space only"
        );
        return None;
    }
    let mut key = NameKey { name: [0; 32] };
    key.name[..b.len()].copy_from_slice(b);
    Some(key)
}

/// How one hook is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HookKind {
    TpBtf,
    Raw,
}

impl HookKind {
    fn name(self) -> &'static str {
        match self {
            HookKind::TpBtf => "tp_btf",
            HookKind::Raw => "raw_tracepoint",
        }
    }
}

/// Loads the first build in `choices` the kernel accepts; the error is the last one's.
fn load_first(
    choices: &[SensorPrograms],
    btf: &Btf,
    cfg: &RpConfig,
    config: &SensorConfig,
) -> Result<(Ebpf, HookKind, SensorPrograms), KernelError> {
    let mut last = None;
    for &choice in choices {
        let Some((obj, kind)) = choice.object() else {
            continue;
        };
        match load_object(obj, kind, btf, cfg, config) {
            Ok(e) => return Ok((e, kind, choice)),
            Err(e) => {
                // The error carries the verifier's log: one line at info, the log at debug.
                tracing::info!(
                    "the {} build of the sensor programs does not load here",
                    choice.name()
                );
                tracing::debug!("{}: {e}", choice.name());
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(KernelError::NoPrograms))
}

/// Loads one variant of the sensor object: maps (with the configuration and the sensitive
/// names) and the four tracing programs (verification is the slow part; attaching comes after,
/// for all hooks at once, so the sensor starts seeing everything at nearly the same moment).
fn load_object(
    obj: &[u8],
    kind: HookKind,
    btf: &Btf,
    cfg: &RpConfig,
    config: &SensorConfig,
) -> Result<Ebpf, KernelError> {
    let mut ebpf = EbpfLoader::new()
        .btf(btf)
        .override_global("CFG", cfg, true)
        .map_max_entries("EVENTS", config.ring_buffer_bytes)
        .load(obj)
        .map_err(|e| KernelError::Object(Box::new(e)))?;
    {
        let map = ebpf
            .map_mut("SENSITIVE_NAMES")
            .ok_or_else(|| KernelError::map("SENSITIVE_NAMES", missing_map()))?;
        let mut names: HashMap<_, NameKey, u8> =
            HashMap::try_from(map).map_err(|e| KernelError::map("SENSITIVE_NAMES", e))?;
        let mut bits: std::collections::BTreeMap<&str, u8> = Default::default();
        for n in &config.sensitive.names {
            *bits.entry(n).or_default() |= 1;
        }
        for d in &config.sensitive.dirs {
            *bits.entry(d).or_default() |= 2;
        }
        for (name, v) in bits {
            if let Some(key) = name_key(name) {
                names
                    .insert(&key, &v, 0)
                    .map_err(|e| KernelError::map("SENSITIVE_NAMES", e))?;
            }
        }
    }
    for (hook, name) in HOOKS {
        let p = ebpf.program_mut(name).ok_or_else(|| {
            KernelError::program(name, hook, aya::programs::ProgramError::NotLoaded)
        })?;
        let r = match kind {
            HookKind::TpBtf => {
                let p: &mut BtfTracePoint = p
                    .try_into()
                    .map_err(|e| KernelError::program(name, hook, e))?;
                p.load(hook, btf)
            }
            HookKind::Raw => {
                let p: &mut RawTracePoint = p
                    .try_into()
                    .map_err(|e| KernelError::program(name, hook, e))?;
                p.load()
            }
        };
        r.map_err(|e| KernelError::program(name, hook, e))?;
    }
    Ok(ebpf)
}

fn attach_tracing(
    ebpf: &mut Ebpf,
    hook: &'static str,
    name: &'static str,
    kind: HookKind,
) -> Result<(), KernelError> {
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| KernelError::program(name, hook, aya::programs::ProgramError::NotLoaded))?;
    let r = match kind {
        HookKind::TpBtf => {
            let p: &mut BtfTracePoint = p
                .try_into()
                .map_err(|e| KernelError::program(name, hook, e))?;
            p.attach().map(|_| ())
        }
        HookKind::Raw => {
            let p: &mut RawTracePoint = p
                .try_into()
                .map_err(|e| KernelError::program(name, hook, e))?;
            p.attach(hook).map(|_| ())
        }
    };
    r.map_err(|e| KernelError::program(name, hook, e))
}

fn attach_dns(ebpf: &mut Ebpf, root: &std::path::Path) -> Result<(), KernelError> {
    let cg = std::fs::File::open(root).map_err(|e| KernelError::Io {
        path: root.to_path_buf(),
        source: e,
    })?;
    for (name, hook, kind) in [
        (
            "dns_egress",
            "cgroup_skb/egress",
            CgroupSkbAttachType::Egress,
        ),
        (
            "dns_ingress",
            "cgroup_skb/ingress",
            CgroupSkbAttachType::Ingress,
        ),
    ] {
        let p: &mut CgroupSkb = ebpf
            .program_mut(name)
            .ok_or_else(|| {
                KernelError::program(name, hook, aya::programs::ProgramError::NotLoaded)
            })?
            .try_into()
            .map_err(|e| KernelError::program(name, hook, e))?;
        p.load().map_err(|e| KernelError::program(name, hook, e))?;
        p.attach(&cg, kind, cgroup_attach_mode())
            .map_err(|e| KernelError::program(name, hook, e))?;
    }
    Ok(())
}

/// From 5.7 aya attaches cgroup programs with BPF links, which always coexist with other
/// programs and refuse the ALLOW_MULTI flag; before, `prog_attach` needs ALLOW_MULTI so that
/// runc and systemd can still attach theirs below ours.
pub(crate) fn cgroup_attach_mode() -> CgroupAttachMode {
    if aya::util::KernelVersion::current()
        .is_ok_and(|v| v >= aya::util::KernelVersion::new(5, 7, 0))
    {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    }
}

fn own_mntns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/mnt")
        .map(|m| m.ino() as u32)
        .unwrap_or(0)
}

/// How long the reader waits before trying a full channel again.
const FULL_BACKOFF: Duration = Duration::from_micros(200);

fn read_loop(
    mut ring: RingBuf<MapData>,
    mut decoder: Decoder,
    tx: SyncSender<Box<SensorEvent>>,
    stats: Arc<ReaderStats>,
    stop: Arc<AtomicBool>,
    poll: Duration,
) {
    let fd = ring.as_raw_fd();
    let timeout = i32::try_from(poll.as_millis()).unwrap_or(10).max(1);
    let mut malformed_seen = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the ring buffer's fd, which `ring` keeps open.
        unsafe { libc::poll(&mut pfd, 1, timeout) };
        while let Some(item) = ring.next() {
            let Some(ev) = decoder.decode(&item) else {
                continue;
            };
            drop(item);
            // A full channel holds the reader back instead of dropping: records then wait in
            // the ring buffer, which holds them in their compact kernel form (~200 bytes
            // against ~2 KiB decoded), and what the ring cannot take is counted per CPU by
            // the kernel. The consumer's channel can therefore stay small (issue 20: memory).
            // Only a stop while the channel is full drops, and counts, the event.
            let mut ev = Box::new(ev);
            loop {
                match tx.try_send(ev) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        if stop.load(Ordering::Relaxed) {
                            stats.userspace_drops.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        ev = back;
                        std::thread::sleep(FULL_BACKOFF);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
        }
        if decoder.malformed != malformed_seen {
            stats.malformed.store(decoder.malformed, Ordering::Relaxed);
            malformed_seen = decoder.malformed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_patterns_split_into_names_and_dirs() {
        let s = SensitiveNames::from_patterns(&[
            "/etc/shadow",
            "/root/.ssh/*",
            "/home/*/.ssh/id_*",
            "/proc/*/mem",
            "/var/run/docker.sock",
        ]);
        assert_eq!(s.names, vec!["docker.sock", "mem", "shadow"]);
        assert_eq!(s.dirs, vec![".ssh"]);
    }
}
