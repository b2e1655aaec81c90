//! Capability probing: which BPF program types and helpers this kernel actually accepts.
//!
//! VPS kernels differ: lockdown refuses fentry and LSM programs on some, kprobes are missing on
//! others, OpenVZ/LXC guests allow no BPF at all. Nothing here is inferred from the kernel
//! version; every answer comes from loading (and, where attaching is what can fail, attaching
//! and detaching) a minimal program from `bpf/probe.bpf.c`.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use aya::programs::{
    BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, FEntry,
    KProbe, Lsm, RawTracePoint, TracePoint,
};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::cgroup::{cgroup_layout, CgroupLayout};

static PROBE_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe.bpf.o"));

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Works,
    /// Refused or missing, with the kernel's answer.
    Missing(String),
}

impl Probe {
    pub fn works(&self) -> bool {
        matches!(self, Probe::Works)
    }

    fn from<T, E: std::error::Error + 'static>(r: Result<T, E>) -> Probe {
        match r {
            Ok(_) => Probe::Works,
            Err(e) => Probe::Missing(short_reason(&e)),
        }
    }
}

/// The errno-level reason from an aya error chain, without the verifier log.
fn short_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.raw_os_error() {
                Some(libc::EPERM) => "refused (EPERM: kernel lockdown or missing privilege)".into(),
                Some(libc::EINVAL) => "not supported by this kernel (EINVAL)".into(),
                Some(libc::ENOENT) => "hook not found (ENOENT)".into(),
                Some(libc::EOPNOTSUPP) => "not supported (EOPNOTSUPP)".into(),
                _ => io.to_string(),
            };
        }
        cur = err.source();
    }
    let text = e.to_string();
    text.split(". Verifier output")
        .next()
        .unwrap_or(&text)
        .to_string()
}

/// What this host can do for Rampart.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub kernel_release: String,
    pub root: bool,
    pub btf: bool,
    pub lockdown: Option<String>,
    /// Active LSMs (from securityfs), when readable.
    pub lsms: Option<Vec<String>>,
    pub cgroups: CgroupLayout,
    pub ring_buffer: Probe,
    pub tp_btf: Probe,
    pub raw_tracepoint: Probe,
    pub tracepoint: Probe,
    pub kprobe: Probe,
    pub fentry: Probe,
    pub lsm_program: Probe,
    pub cgroup_connect: Probe,
    pub cgroup_skb: Probe,
    pub send_signal: Probe,
}

impl Capabilities {
    /// Runs every probe. Without root, BPF probes report "needs root" instead of running.
    pub fn probe() -> Capabilities {
        let root = unsafe { libc::geteuid() } == 0;
        let btf_path = Path::new("/sys/kernel/btf/vmlinux");
        let mut caps = Capabilities {
            kernel_release: kernel_release(),
            root,
            btf: btf_path.exists(),
            lockdown: read_trim("/sys/kernel/security/lockdown").map(|l| {
                // "none [integrity] confidentiality": the bracketed one is active.
                l.split_whitespace()
                    .find(|w| w.starts_with('['))
                    .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
                    .unwrap_or(l)
            }),
            lsms: read_trim("/sys/kernel/security/lsm")
                .map(|l| l.split(',').map(str::to_string).collect()),
            cgroups: cgroup_layout(),
            ring_buffer: Probe::Missing("not probed".into()),
            tp_btf: Probe::Missing("not probed".into()),
            raw_tracepoint: Probe::Missing("not probed".into()),
            tracepoint: Probe::Missing("not probed".into()),
            kprobe: Probe::Missing("not probed".into()),
            fentry: Probe::Missing("not probed".into()),
            lsm_program: Probe::Missing("not probed".into()),
            cgroup_connect: Probe::Missing("not probed".into()),
            cgroup_skb: Probe::Missing("not probed".into()),
            send_signal: Probe::Missing("not probed".into()),
        };
        if !root {
            let no = Probe::Missing("needs root".into());
            caps.ring_buffer = no.clone();
            caps.tp_btf = no.clone();
            caps.raw_tracepoint = no.clone();
            caps.tracepoint = no.clone();
            caps.kprobe = no.clone();
            caps.fentry = no.clone();
            caps.lsm_program = no.clone();
            caps.cgroup_connect = no.clone();
            caps.cgroup_skb = no.clone();
            caps.send_signal = no;
            return caps;
        }
        caps.ring_buffer = match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
            Ok(true) => Probe::Works,
            Ok(false) => {
                Probe::Missing("ring buffer maps not supported (kernel older than 5.8)".into())
            }
            Err(e) => Probe::Missing(short_reason(&e)),
        };
        let btf = Btf::from_sys_fs().ok();
        let mut loader = EbpfLoader::new();
        if let Some(btf) = btf.as_ref() {
            loader.btf(btf);
        }
        let mut ebpf = match loader.load(PROBE_OBJ) {
            Ok(e) => e,
            Err(e) => {
                let no = Probe::Missing(format!("BPF object does not load: {}", short_reason(&e)));
                caps.tp_btf = no.clone();
                caps.raw_tracepoint = no.clone();
                caps.tracepoint = no.clone();
                caps.kprobe = no.clone();
                caps.fentry = no.clone();
                caps.lsm_program = no.clone();
                caps.cgroup_connect = no.clone();
                caps.cgroup_skb = no.clone();
                caps.send_signal = no;
                return caps;
            }
        };
        caps.tp_btf = match &btf {
            Some(btf) => probe_tp_btf(&mut ebpf, btf),
            None => Probe::Missing("no kernel BTF".into()),
        };
        caps.raw_tracepoint = probe_raw_tp(&mut ebpf, "probe_raw_tp");
        caps.send_signal = probe_raw_tp(&mut ebpf, "probe_send_signal");
        caps.tracepoint = probe_tracepoint(&mut ebpf);
        caps.kprobe = probe_kprobe(&mut ebpf);
        caps.fentry = match &btf {
            Some(btf) => probe_fentry(&mut ebpf, btf),
            None => Probe::Missing("no kernel BTF".into()),
        };
        caps.lsm_program = match &btf {
            Some(btf) => probe_lsm(&mut ebpf, btf),
            None => Probe::Missing("no kernel BTF".into()),
        };
        let probe_cgroup = ProbeCgroup::create(&caps.cgroups);
        caps.cgroup_connect = probe_connect(&mut ebpf, probe_cgroup.as_ref());
        caps.cgroup_skb = probe_skb(&mut ebpf, probe_cgroup.as_ref());
        caps
    }

    /// BPF-LSM enforcement is possible: LSM programs load and `bpf` is an active LSM.
    pub fn bpf_lsm(&self) -> bool {
        self.lsm_program.works()
            && self
                .lsms
                .as_ref()
                .is_some_and(|l| l.iter().any(|m| m == "bpf"))
    }

    /// The event source the sensor will use.
    pub fn mechanism(&self) -> &'static str {
        if self.ring_buffer.works() && self.tp_btf.works() {
            "ebpf (tp_btf)"
        } else if self.ring_buffer.works() && self.raw_tracepoint.works() {
            "ebpf (raw_tracepoint)"
        } else {
            "proc-connector fallback"
        }
    }

    /// One screen: what was probed, and what Rampart can therefore do on this host.
    pub fn report(&self) -> String {
        CapabilityReport(self).to_string()
    }
}

struct CapabilityReport<'a>(&'a Capabilities);

impl fmt::Display for CapabilityReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let mark = |p: &Probe| match p {
            Probe::Works => "yes".to_string(),
            Probe::Missing(why) => format!("no: {why}"),
        };
        writeln!(f, "Rampart capability report")?;
        writeln!(f, "  kernel            {}", c.kernel_release)?;
        writeln!(
            f,
            "  running as root   {}",
            if c.root { "yes" } else { "no" }
        )?;
        writeln!(
            f,
            "  kernel BTF        {}",
            if c.btf { "yes" } else { "no" }
        )?;
        writeln!(
            f,
            "  lockdown          {}",
            c.lockdown
                .as_deref()
                .unwrap_or("unknown (securityfs not mounted)")
        )?;
        writeln!(
            f,
            "  active LSMs       {}",
            c.lsms
                .as_ref()
                .map_or("unknown (securityfs not mounted)".to_string(), |l| l
                    .join(","))
        )?;
        writeln!(f, "  cgroups           {}", c.cgroups)?;
        writeln!(f, "BPF")?;
        writeln!(f, "  ring buffer       {}", mark(&c.ring_buffer))?;
        writeln!(f, "  tp_btf            {}", mark(&c.tp_btf))?;
        writeln!(f, "  raw tracepoint    {}", mark(&c.raw_tracepoint))?;
        writeln!(f, "  tracepoint        {}", mark(&c.tracepoint))?;
        writeln!(f, "  kprobe            {}", mark(&c.kprobe))?;
        writeln!(f, "  fentry            {}", mark(&c.fentry))?;
        writeln!(f, "  BPF-LSM program   {}", mark(&c.lsm_program))?;
        writeln!(f, "  cgroup connect4/6 {}", mark(&c.cgroup_connect))?;
        writeln!(f, "  cgroup_skb        {}", mark(&c.cgroup_skb))?;
        writeln!(f, "  bpf_send_signal   {}", mark(&c.send_signal))?;
        writeln!(f, "Protections on this host")?;
        let tracing = c.tp_btf.works() || c.raw_tracepoint.works();
        let detect = if c.ring_buffer.works() && tracing {
            format!("yes, {}", c.mechanism())
        } else {
            "partial: proc connector + /proc (exec/fork/exit only; no file, network, privilege or DNS events)".into()
        };
        writeln!(f, "  detection         {detect}")?;
        writeln!(
            f,
            "  DNS visibility    {}",
            if c.cgroup_skb.works() && c.cgroups.unified.is_some() {
                "yes (cgroup_skb on the unified hierarchy)".to_string()
            } else {
                "no: needs cgroup_skb programs and a cgroup v2 mount".to_string()
            }
        )?;
        writeln!(
            f,
            "  in-kernel kill    {}",
            if c.send_signal.works() && tracing {
                "yes (bpf_send_signal at exec)"
            } else {
                "no: bpf_send_signal is refused"
            }
        )?;
        writeln!(
            f,
            "  net segmentation  {}",
            if c.cgroup_connect.works() && c.cgroup_skb.works() && c.cgroups.unified.is_some() {
                "yes (cgroup connect4/6 + cgroup_skb per container)".to_string()
            } else {
                "no: needs cgroup BPF programs on a cgroup v2 hierarchy".to_string()
            }
        )?;
        writeln!(
            f,
            "  BPF-LSM deny      {}",
            if c.bpf_lsm() {
                "yes".to_string()
            } else if c.lsm_program.works() {
                "no: add `bpf` to the lsm= kernel parameter".to_string()
            } else {
                format!("no: {}", mark(&c.lsm_program).trim_start_matches("no: "))
            }
        )?;
        write!(
            f,
            "  seccomp learning  {}",
            if tracing && c.ring_buffer.works() {
                "yes (from the sensor's syscall events)"
            } else {
                "no: needs the BPF sensor"
            }
        )
    }
}

fn probe_tp_btf(ebpf: &mut Ebpf, btf: &Btf) -> Probe {
    let Some(p) = ebpf.program_mut("probe_tp_btf") else {
        return Probe::Missing("probe program missing".into());
    };
    let p: Result<&mut BtfTracePoint, _> = p.try_into();
    Probe::from(p.and_then(|p| {
        p.load("sched_process_exec", btf)?;
        let id = p.attach()?;
        p.detach(id)
    }))
}

fn probe_raw_tp(ebpf: &mut Ebpf, name: &str) -> Probe {
    let Some(p) = ebpf.program_mut(name) else {
        return Probe::Missing("probe program missing".into());
    };
    let p: Result<&mut RawTracePoint, _> = p.try_into();
    Probe::from(p.and_then(|p| {
        p.load()?;
        let id = p.attach("sched_process_exec")?;
        p.detach(id)
    }))
}

fn probe_tracepoint(ebpf: &mut Ebpf) -> Probe {
    let Some(p) = ebpf.program_mut("probe_tracepoint") else {
        return Probe::Missing("probe program missing".into());
    };
    let p: Result<&mut TracePoint, _> = p.try_into();
    Probe::from(p.and_then(|p| {
        p.load()?;
        let id = p.attach("syscalls", "sys_enter_execve")?;
        p.detach(id)
    }))
}

fn probe_kprobe(ebpf: &mut Ebpf) -> Probe {
    let Some(p) = ebpf.program_mut("probe_kprobe") else {
        return Probe::Missing("probe program missing".into());
    };
    let p: Result<&mut KProbe, _> = p.try_into();
    Probe::from(p.and_then(|p| {
        p.load()?;
        let id = p.attach("do_unlinkat", 0)?;
        p.detach(id)
    }))
}

fn probe_fentry(ebpf: &mut Ebpf, btf: &Btf) -> Probe {
    let Some(p) = ebpf.program_mut("probe_fentry") else {
        return Probe::Missing("probe program missing".into());
    };
    let p: Result<&mut FEntry, _> = p.try_into();
    Probe::from(p.and_then(|p| {
        p.load("do_unlinkat", btf)?;
        let id = p.attach()?;
        p.detach(id)
    }))
}

fn probe_lsm(ebpf: &mut Ebpf, btf: &Btf) -> Probe {
    let Some(p) = ebpf.program_mut("probe_lsm") else {
        return Probe::Missing("probe program missing".into());
    };
    let p: Result<&mut Lsm, _> = p.try_into();
    // Load only: attaching an LSM program that allows everything would still be an LSM hook
    // on the whole machine; whether `bpf` is an active LSM is read from securityfs.
    Probe::from(p.and_then(|p| p.load("bprm_check_security", btf)))
}

/// A throw-away child of the unified cgroup to attach cgroup probes to.
struct ProbeCgroup {
    path: PathBuf,
    file: fs::File,
}

impl ProbeCgroup {
    fn create(layout: &CgroupLayout) -> Option<ProbeCgroup> {
        let root = layout.unified.as_ref()?;
        let path = root.join(format!("rampart-probe-{}", std::process::id()));
        fs::create_dir(&path).ok()?;
        let file = fs::File::open(&path).ok()?;
        Some(ProbeCgroup { path, file })
    }
}

impl Drop for ProbeCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.path);
    }
}

fn probe_connect(ebpf: &mut Ebpf, cg: Option<&ProbeCgroup>) -> Probe {
    let Some(p) = ebpf.program_mut("probe_connect4") else {
        return Probe::Missing("probe program missing".into());
    };
    let p: Result<&mut CgroupSockAddr, _> = p.try_into();
    let p = match p {
        Ok(p) => p,
        Err(e) => return Probe::from::<(), _>(Err(e)),
    };
    if let Err(e) = p.load() {
        return Probe::from::<(), _>(Err(e));
    }
    match cg {
        Some(cg) => Probe::from(
            p.attach(&cg.file, CgroupAttachMode::Single)
                .and_then(|id| p.detach(id)),
        ),
        None => Probe::Missing("loads, but there is no cgroup v2 hierarchy to attach to".into()),
    }
}

fn probe_skb(ebpf: &mut Ebpf, cg: Option<&ProbeCgroup>) -> Probe {
    let Some(p) = ebpf.program_mut("probe_cgroup_skb") else {
        return Probe::Missing("probe program missing".into());
    };
    let p: Result<&mut CgroupSkb, _> = p.try_into();
    let p = match p {
        Ok(p) => p,
        Err(e) => return Probe::from::<(), _>(Err(e)),
    };
    if let Err(e) = p.load() {
        return Probe::from::<(), _>(Err(e));
    }
    match cg {
        Some(cg) => Probe::from(
            p.attach(
                &cg.file,
                CgroupSkbAttachType::Ingress,
                CgroupAttachMode::Single,
            )
            .and_then(|id| p.detach(id)),
        ),
        None => Probe::Missing("loads, but there is no cgroup v2 hierarchy to attach to".into()),
    }
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn kernel_release() -> String {
    read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}
