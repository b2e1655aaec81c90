//! `rampart audit host`: what this machine can and cannot do for container isolation, measured.
//!
//! The audit reads /proc, /sys, securityfs (mounted read-only for the audit when it is not
//! mounted, and unmounted afterwards), the sysctls, /etc/docker/daemon.json, dockerd's command
//! line and sockets, and `docker info`; it loads BPF programs to learn which types this kernel
//! accepts ([`rampart_kernel::Capabilities::probe`]) and starts the syscall recorder once to
//! learn whether seccomp learning works. It ends with the matrix of Rampart's protections on
//! this host and what to change to get the missing ones.

pub mod daemon;
pub mod kernel;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_event::{ComplianceResource, ResourceKind, Severity};
use rampart_kernel::{Capabilities, Probe, SyscallRecorder};
use serde::Serialize;

use crate::cgroupfs::Mounts;
use crate::check::*;
use daemon::{DaemonConfig, DaemonFacts};
pub use kernel::Unavailable;
use kernel::{Controller, MacState, Roots, SeccompSupport, UserNamespaces, Virtualization};

/// Everything measured about the host.
#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub hostname: String,
    pub os: Option<String>,
    pub kernel: String,
    pub root: bool,
    pub virtualization: Virtualization,
    pub user_namespaces: UserNamespaces,
    pub seccomp: SeccompSupport,
    pub mac: MacState,
    /// Active LSMs (securityfs `lsm`), when readable.
    pub lsms: Option<Vec<String>>,
    pub lockdown: Option<String>,
    /// Landlock ABI version, or why not.
    pub landlock: Result<i64, Unavailable>,
    /// `v1`, `v2`, `hybrid` or `none`.
    pub cgroup_mode: String,
    pub controllers: Vec<Controller>,
    pub btf: bool,
    /// BPF program types and helpers: `yes` or `no: <kernel's answer>`.
    pub bpf: BTreeMap<String, String>,
    /// The syscall recorder loaded and attached (seccomp learning), or why not.
    pub syscall_recorder: Result<(), Unavailable>,
    /// Capability checks can be recorded, or why not.
    pub capability_recorder: Result<(), Unavailable>,
    pub sysctls: BTreeMap<String, Option<String>>,
    /// What the audit did about securityfs.
    pub securityfs: String,
}

/// One Rampart protection and whether this host can have it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Protection {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
    /// What to change to get it, when missing.
    pub change: Option<String>,
}

/// The host part of a report: facts, the daemon configuration and the protections matrix.
#[derive(Debug, Clone)]
pub struct HostReport {
    pub facts: HostFacts,
    pub daemon: DaemonConfig,
    pub daemon_facts: DaemonFacts,
    pub matrix: Vec<Protection>,
}

/// Options of the host audit.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub roots: Roots,
    /// daemon.json to read.
    pub daemon_json: PathBuf,
    /// Load BPF programs to probe the kernel (needs root).
    pub probe_bpf: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            roots: Roots::default(),
            daemon_json: PathBuf::from(daemon::DAEMON_JSON),
            probe_bpf: true,
        }
    }
}

fn mark(p: &Probe) -> String {
    match p {
        Probe::Works => "yes".into(),
        Probe::Missing(why) => format!("no: {why}"),
    }
}

/// Measures the kernel side (everything but Docker). Mounts securityfs read-only for the
/// duration when needed and possible.
pub fn measure(opts: &HostOptions) -> (HostFacts, Option<Capabilities>) {
    let roots = &opts.roots;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut securityfs = "mounted".to_string();
    let mut mounted_here = false;
    if !kernel::securityfs_mounted(roots) {
        if root {
            match kernel::mount_securityfs() {
                Ok(()) => {
                    mounted_here = true;
                    securityfs = "was not mounted: mounted read-only at /sys/kernel/security for this audit, unmounted afterwards".into();
                }
                Err(e) => {
                    securityfs = format!("not mounted, and mounting it read-only failed: {e}")
                }
            }
        } else {
            securityfs =
                "not mounted (mounting it needs root): LSM list and lockdown unknown".into();
        }
    }
    let caps = (opts.probe_bpf && root).then(Capabilities::probe);
    let (syscall_recorder, capability_recorder) = if opts.probe_bpf && root {
        match SyscallRecorder::start() {
            Ok(r) => (
                Ok(()),
                r.capability_recording()
                    .map_err(|e| Unavailable(e.to_string())),
            ),
            Err(e) => (
                Err(Unavailable(e.to_string())),
                Err(Unavailable("the syscall recorder does not load".into())),
            ),
        }
    } else {
        let why = if root {
            "not probed (--no-bpf)"
        } else {
            "not probed: needs root"
        };
        (Err(Unavailable(why.into())), Err(Unavailable(why.into())))
    };
    let lsms = caps.as_ref().and_then(|c| c.lsms.clone()).or_else(|| {
        kernel::read_trim(&roots.sys.join("kernel/security/lsm"))
            .map(|l| l.split(',').map(str::to_string).collect())
    });
    let lockdown = caps.as_ref().and_then(|c| c.lockdown.clone()).or_else(|| {
        kernel::read_trim(&roots.sys.join("kernel/security/lockdown")).map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
                .unwrap_or(l)
        })
    });
    let mac = kernel::mac(roots);
    if mounted_here {
        if let Err(e) = kernel::unmount_securityfs() {
            securityfs.push_str(&format!(" (unmounting failed: {e})"));
        }
    }
    let mounts = Mounts::current();
    let layout = rampart_kernel::cgroup_layout();
    let mut bpf = BTreeMap::new();
    if let Some(c) = &caps {
        for (k, p) in [
            ("ring buffer", &c.ring_buffer),
            ("tp_btf", &c.tp_btf),
            ("raw tracepoint", &c.raw_tracepoint),
            ("tracepoint", &c.tracepoint),
            ("kprobe", &c.kprobe),
            ("fentry", &c.fentry),
            ("BPF-LSM program", &c.lsm_program),
            ("cgroup connect4/6", &c.cgroup_connect),
            ("cgroup_skb", &c.cgroup_skb),
            ("bpf_send_signal", &c.send_signal),
        ] {
            bpf.insert(k.to_string(), mark(p));
        }
    }
    let os = fs::read_to_string(roots.etc.join("os-release"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
    let facts = HostFacts {
        hostname: kernel::read_trim(&roots.proc.join("sys/kernel/hostname"))
            .unwrap_or_else(|| "localhost".into()),
        os,
        kernel: kernel::read_trim(&roots.proc.join("sys/kernel/osrelease")).unwrap_or_default(),
        root,
        virtualization: kernel::virtualization(roots),
        user_namespaces: kernel::user_namespaces(roots, root),
        seccomp: kernel::seccomp(roots),
        mac,
        lsms,
        lockdown,
        // A fact of the report (serialised as the reason), not an error to act on.
        landlock: kernel::landlock().map_err(|e| Unavailable(e.to_string())),
        cgroup_mode: layout.mode().to_string(),
        controllers: kernel::controllers(roots, &mounts),
        btf: roots.sys.join("kernel/btf/vmlinux").exists(),
        bpf,
        syscall_recorder,
        capability_recorder,
        sysctls: kernel::sysctls(roots),
        securityfs,
    };
    (facts, caps)
}

fn sysctl_num(f: &HostFacts, name: &str) -> Option<i64> {
    f.sysctls
        .get(name)
        .cloned()
        .flatten()
        .and_then(|v| v.parse().ok())
}

fn sysctl_ev(f: &HostFacts, name: &str) -> String {
    match f.sysctls.get(name).cloned().flatten() {
        Some(v) => format!("{name} = {v}"),
        None => format!("{name} does not exist on this kernel"),
    }
}

/// Kernel-level checks (Rampart's own ids).
pub fn kernel_checks(f: &HostFacts) -> Vec<Outcome> {
    let mut out = Vec::new();
    out.push(H_SECCOMP.check(
        f.seccomp.filter,
        if f.seccomp.filter {
            format!(
                "seccomp filter actions available: {}",
                f.seccomp.actions.join(" ")
            )
        } else if f.seccomp.seccomp {
            "seccomp strict mode only (no /proc/sys/kernel/seccomp/actions_avail)".into()
        } else {
            "no seccomp support (no Seccomp: line in /proc/self/status)".into()
        },
    ));
    let un = &f.user_namespaces;
    let userns_ok = un.max.is_some_and(|m| m > 0) && un.root.is_ok();
    out.push(H_USERNS.check(
        userns_ok,
        format!(
            "user.max_user_namespaces = {}; creating one as root: {}",
            un.max.map_or("missing".into(), |m| m.to_string()),
            match &un.root {
                Ok(()) => "works".to_string(),
                Err(e) => format!("fails ({e})"),
            }
        ),
    ));
    out.push(match &un.unprivileged {
        Ok(()) => H_USERNS_UNPRIV.fail(format!(
            "uid 65534 created a user namespace (kernel.unprivileged_userns_clone = {})",
            un.unprivileged_clone
                .map_or("n/a".into(), |v| v.to_string())
        )),
        Err(e) if e.0.starts_with("not tried") => H_USERNS_UNPRIV.warn(e.0.clone()),
        Err(e) => H_USERNS_UNPRIV.pass(format!("uid 65534 cannot create a user namespace: {e}")),
    });
    let lsm_list = f.lsms.clone().unwrap_or_default();
    let mac_on = f.mac.apparmor_enabled || f.mac.selinux_enforcing.is_some();
    out.push(H_LSM.check(
        mac_on,
        format!(
            "AppArmor {}; SELinux {}; active LSMs: {}",
            if f.mac.apparmor_enabled {
                format!(
                    "enabled ({} profiles)",
                    f.mac
                        .apparmor_profiles
                        .as_ref()
                        .map_or("?".into(), |m| m.values().sum::<usize>().to_string())
                )
            } else {
                "not enabled".into()
            },
            match f.mac.selinux_enforcing {
                Some(true) => "enforcing",
                Some(false) => "permissive",
                None => "not enabled",
            },
            if lsm_list.is_empty() {
                "unknown".into()
            } else {
                lsm_list.join(",")
            }
        ),
    ));
    out.push(match f.lockdown.as_deref() {
        Some("integrity") => H_LOCKDOWN.pass("lockdown: integrity"),
        Some("confidentiality") => H_LOCKDOWN
            .warn("lockdown: confidentiality (strongest, but it also stops BPF programs from reading kernel memory, which Rampart's sensor needs)"),
        Some(m) => H_LOCKDOWN.fail(format!("lockdown: {m}")),
        None => H_LOCKDOWN.warn(format!("lockdown mode unknown: securityfs {}", f.securityfs)),
    });
    let missing: Vec<&str> = f
        .controllers
        .iter()
        .filter(|c| !c.usable)
        .map(|c| c.name.as_str())
        .collect();
    let ev = f
        .controllers
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c.name,
                if c.usable {
                    c.hierarchy.as_str()
                } else {
                    "missing"
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    out.push(if missing.is_empty() {
        H_CGROUPS.pass(format!("cgroup {}: {ev}", f.cgroup_mode))
    } else {
        let o = H_CGROUPS.fail(format!("cgroup {}: {ev}", f.cgroup_mode));
        if missing.iter().any(|m| *m == "memory" || *m == "pids") {
            o
        } else {
            o.with_severity(Severity::Medium)
        }
    });
    let bpfd = sysctl_num(f, "kernel.unprivileged_bpf_disabled");
    out.push(H_BPF_UNPRIV.check(
        bpfd.is_some_and(|v| v >= 1),
        sysctl_ev(f, "kernel.unprivileged_bpf_disabled"),
    ));
    out.push(match sysctl_num(f, "kernel.yama.ptrace_scope") {
        Some(v) => H_PTRACE.check(v >= 1, sysctl_ev(f, "kernel.yama.ptrace_scope")),
        None => {
            H_PTRACE.fail("kernel.yama.ptrace_scope does not exist: the Yama LSM is not active")
        }
    });
    out.push(H_KPTR.check(
        sysctl_num(f, "kernel.kptr_restrict").is_some_and(|v| v >= 1),
        sysctl_ev(f, "kernel.kptr_restrict"),
    ));
    out.push(H_DMESG.check(
        sysctl_num(f, "kernel.dmesg_restrict") == Some(1),
        sysctl_ev(f, "kernel.dmesg_restrict"),
    ));
    out.push(H_BTF.check(
        f.btf,
        if f.btf {
            "/sys/kernel/btf/vmlinux exists"
        } else {
            "no /sys/kernel/btf/vmlinux"
        },
    ));
    out
}

/// IP forwarding, judged with whether Docker is present.
fn ip_forward_check(f: &HostFacts, docker: bool) -> Outcome {
    let fwd = sysctl_num(f, "net.ipv4.ip_forward");
    match (fwd, docker) {
        (Some(1), true) => {
            H_IP_FORWARD.pass("net.ipv4.ip_forward = 1, required by Docker's bridge networking")
        }
        (Some(1), false) => H_IP_FORWARD
            .warn("net.ipv4.ip_forward = 1 but no Docker daemon answered: the host routes packets"),
        (Some(v), _) => H_IP_FORWARD.pass(format!("net.ipv4.ip_forward = {v}")),
        (None, _) => H_IP_FORWARD.not_applicable("net.ipv4.ip_forward unreadable"),
    }
}

/// The mount point holding `path` (longest prefix in `mountinfo`), with its filesystem type.
fn mount_of(mountinfo: &str, path: &str) -> Option<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mp = left.split(' ').nth(4)?.to_string();
            let fstype = right.split(' ').next()?.to_string();
            let inside = path == mp
                || mp == "/"
                || path.starts_with(&format!("{}/", mp.trim_end_matches('/')));
            inside.then_some((mp, fstype))
        })
        .max_by_key(|(mp, _)| mp.len())
}

/// Paths CIS 1.1.3-1.1.18 want audited, in check order.
fn audited_paths() -> [(&'static CheckDef, &'static str); 16] {
    [
        (&H_1_1_3, "/usr/bin/dockerd"),
        (&H_1_1_4, "/run/containerd"),
        (&H_1_1_5, "/var/lib/docker"),
        (&H_1_1_6, "/etc/docker"),
        (&H_1_1_7, "/lib/systemd/system/docker.service"),
        (&H_1_1_8, "/run/containerd/containerd.sock"),
        (&H_1_1_9, "/lib/systemd/system/docker.socket"),
        (&H_1_1_10, "/etc/default/docker"),
        (&H_1_1_11, "/etc/docker/daemon.json"),
        (&H_1_1_12, "/etc/containerd/config.toml"),
        (&H_1_1_13, "/etc/sysconfig/docker"),
        (&H_1_1_14, "/usr/bin/containerd"),
        (&H_1_1_15, "/usr/bin/containerd-shim"),
        (&H_1_1_16, "/usr/bin/containerd-shim-runc-v1"),
        (&H_1_1_17, "/usr/bin/containerd-shim-runc-v2"),
        (&H_1_1_18, "/usr/bin/runc"),
    ]
}

/// The loaded audit rules (`auditctl -l`), or why they could not be read.
fn audit_rules() -> Result<String, String> {
    let out = Command::new("auditctl")
        .arg("-l")
        .output()
        .map_err(|e| format!("auditctl not available ({e}): auditd is not installed"))?;
    if !out.status.success() {
        return Err(format!(
            "auditctl -l failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// CIS section 1 checks that can be measured.
pub fn section1_checks(roots: &Roots, docker_root: Option<&str>) -> Vec<Outcome> {
    let mut out = Vec::new();
    let root_dir = docker_root.unwrap_or("/var/lib/docker");
    let mountinfo = fs::read_to_string(roots.proc.join("self/mountinfo")).unwrap_or_default();
    out.push(match mount_of(&mountinfo, root_dir) {
        Some((mp, fs)) if mp != "/" => {
            H_1_1_1.pass(format!("{root_dir} is on its own mount {mp} ({fs})"))
        }
        Some((_, fs)) => H_1_1_1.fail(format!("{root_dir} is on the root filesystem ({fs})")),
        None => H_1_1_1.warn(format!("no mount found for {root_dir}")),
    });
    let group = fs::read_to_string(roots.etc.join("group")).unwrap_or_default();
    let members: Vec<String> = group
        .lines()
        .find(|l| l.starts_with("docker:"))
        .and_then(|l| l.rsplit(':').next())
        .map(|m| {
            m.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    out.push(if members.is_empty() {
        H_1_1_2.pass("the docker group has no members: only root can use the Docker socket")
    } else {
        H_1_1_2.warn(format!(
            "docker group members (each is root-equivalent): {}; confirm every one is trusted",
            members.join(", ")
        ))
    });
    let rules = audit_rules();
    for (def, path) in audited_paths() {
        if !Path::new(path).exists() {
            out.push(def.not_applicable(format!("{path} does not exist on this host")));
            continue;
        }
        out.push(match &rules {
            Err(why) => def.fail(format!("{path} is not audited: {why}")),
            Ok(r) => def.check(
                r.lines().any(|l| l.contains(path)),
                format!(
                    "loaded audit rules {} {path}",
                    if r.lines().any(|l| l.contains(path)) {
                        "watch"
                    } else {
                        "do not watch"
                    }
                ),
            ),
        });
    }
    out
}

/// The protections matrix.
pub fn matrix(f: &HostFacts, caps: Option<&Capabilities>) -> Vec<Protection> {
    let mut m = Vec::new();
    let Some(c) = caps else {
        m.push(Protection {
            name: "Rampart eBPF protections",
            available: false,
            detail: "not probed (needs root; --no-bpf skips it)".into(),
            change: Some("run `sudo rampart audit host`".into()),
        });
        return docker_rows(f, m);
    };
    let tracing = c.tp_btf.works() || c.raw_tracepoint.works();
    let v2 = c.cgroups.unified.is_some();
    let no_bpf_host = if f.virtualization.container {
        format!(
            "this is a {} container-based VPS without its own kernel: move to a KVM/Xen-based plan",
            f.virtualization.kind
        )
    } else {
        "load BPF as root on a kernel with BTF (5.8+)".into()
    };
    m.push(Protection {
        name: "detection (eBPF sensor)",
        available: c.ring_buffer.works() && tracing,
        detail: if c.ring_buffer.works() && tracing {
            c.mechanism().to_string()
        } else {
            format!(
                "proc-connector fallback only (exec/fork/exit): ring buffer {}, raw tracepoint {}",
                mark(&c.ring_buffer),
                mark(&c.raw_tracepoint)
            )
        },
        change: (!(c.ring_buffer.works() && tracing)).then(|| no_bpf_host.clone()),
    });
    m.push(Protection {
        name: "DNS visibility",
        available: c.cgroup_skb.works() && v2,
        detail: format!("cgroup_skb {}; cgroup v2 {}", mark(&c.cgroup_skb), if v2 { "mounted" } else { "not mounted" }),
        change: (!(c.cgroup_skb.works() && v2)).then(|| {
            if v2 { no_bpf_host.clone() } else { "mount the cgroup v2 hierarchy (systemd.unified_cgroup_hierarchy=1, or mount -t cgroup2 none /sys/fs/cgroup/unified)".into() }
        }),
    });
    m.push(Protection {
        name: "in-kernel kill",
        available: c.send_signal.works() && tracing,
        detail: format!("bpf_send_signal {}", mark(&c.send_signal)),
        change: (!(c.send_signal.works() && tracing)).then(|| no_bpf_host.clone()),
    });
    let seg = c.cgroup_connect.works() && c.cgroup_skb.works() && v2;
    m.push(Protection {
        name: "network segmentation",
        available: seg,
        detail: format!(
            "cgroup connect4/6 {}; cgroup_skb {}; cgroup v2 {}",
            mark(&c.cgroup_connect),
            mark(&c.cgroup_skb),
            if v2 { "yes" } else { "no" }
        ),
        change: (!seg).then(|| {
            if v2 {
                no_bpf_host.clone()
            } else {
                "mount the cgroup v2 hierarchy (systemd.unified_cgroup_hierarchy=1)".into()
            }
        }),
    });
    let lsm_active = f.lsms.as_ref().map(|l| l.iter().any(|x| x == "bpf"));
    m.push(Protection {
        name: "BPF-LSM enforcement",
        available: c.bpf_lsm(),
        detail: format!(
            "LSM program {}; bpf in active LSMs: {}",
            mark(&c.lsm_program),
            match lsm_active {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            }
        ),
        change: (!c.bpf_lsm()).then(|| match &c.lsm_program {
            Probe::Missing(why) if why.contains("EPERM") => "the kernel refuses LSM programs (EPERM): the provider's kernel or lockdown forbids them; on a kernel you control boot with CONFIG_BPF_LSM=y, bpf in lsm= and without lockdown=confidentiality".to_string(),
            Probe::Missing(why) => format!("LSM programs do not load ({why}): use a kernel built with CONFIG_BPF_LSM=y"),
            Probe::Works => format!(
                "add bpf to the lsm= kernel parameter (e.g. lsm={},bpf) and reboot",
                f.lsms.clone().unwrap_or_default().join(",")
            ),
        }),
    });
    m.push(Protection {
        name: "seccomp learning",
        available: f.syscall_recorder.is_ok() && f.seccomp.filter,
        detail: match (&f.syscall_recorder, f.seccomp.filter) {
            (Ok(()), true) => "syscall recorder loads and attaches (raw_tp/sys_enter); seccomp filters enforce the result".into(),
            (Ok(()), false) => "recorder works but the kernel cannot enforce seccomp filters".into(),
            (Err(e), _) => format!("syscall recorder: {e}"),
        },
        change: (!(f.syscall_recorder.is_ok() && f.seccomp.filter)).then(|| no_bpf_host.clone()),
    });
    m.push(Protection {
        name: "capability learning",
        available: f.capability_recorder.is_ok(),
        detail: match &f.capability_recorder {
            Ok(()) => "capability:cap_capable tracepoint attached".into(),
            Err(e) => e.0.clone(),
        },
        change: f.capability_recorder.is_err().then(|| "a kernel of 6.14 or later (capability:cap_capable tracepoint); until then `rampart harden` keeps Docker's default capability set".to_string()),
    });
    docker_rows(f, m)
}

fn docker_rows(f: &HostFacts, mut m: Vec<Protection>) -> Vec<Protection> {
    m.push(Protection {
        name: "Docker seccomp profiles",
        available: f.seccomp.filter,
        detail: if f.seccomp.filter {
            "kernel has seccomp filters".into()
        } else {
            "no seccomp filter support".into()
        },
        change: (!f.seccomp.filter).then(|| H_SECCOMP.remediation.to_string()),
    });
    let mac = f.mac.apparmor_enabled || f.mac.selinux_enforcing.is_some();
    m.push(Protection {
        name: "AppArmor/SELinux container profiles",
        available: mac,
        detail: if f.mac.apparmor_enabled {
            "AppArmor enabled".into()
        } else if f.mac.selinux_enforcing.is_some() {
            "SELinux enabled".into()
        } else {
            "neither AppArmor nor SELinux is enabled".into()
        },
        change: (!mac).then(|| H_LSM.remediation.to_string()),
    });
    let userns = f.user_namespaces.max.is_some_and(|v| v > 0) && f.user_namespaces.root.is_ok();
    m.push(Protection {
        name: "user-namespace remap",
        available: userns,
        detail: format!(
            "user.max_user_namespaces = {}",
            f.user_namespaces
                .max
                .map_or("missing".into(), |v| v.to_string())
        ),
        change: (!userns).then(|| H_USERNS.remediation.to_string()),
    });
    let limits = f.controllers.iter().all(|c| c.usable);
    m.push(Protection {
        name: "container resource limits",
        available: limits,
        detail: f
            .controllers
            .iter()
            .map(|c| format!("{} {}", c.name, if c.usable { "yes" } else { "no" }))
            .collect::<Vec<_>>()
            .join(", "),
        change: (!limits).then(|| H_CGROUPS.remediation.to_string()),
    });
    m
}

/// The resource that names this host.
pub fn host_resource(f: &HostFacts, roots: &Roots) -> ComplianceResource {
    let uid = kernel::read_trim(&roots.etc.join("machine-id"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| f.hostname.clone());
    ComplianceResource {
        kind: ResourceKind::Host,
        uid,
        name: f.hostname.clone(),
    }
}

/// The resource that names the daemon.
pub fn daemon_resource(f: &HostFacts, facts: &DaemonFacts) -> ComplianceResource {
    ComplianceResource {
        kind: ResourceKind::DockerDaemon,
        uid: facts
            .info
            .as_ref()
            .and_then(|i| i.id.clone())
            .unwrap_or_else(|| format!("dockerd@{}", f.hostname)),
        name: format!("dockerd on {}", f.hostname),
    }
}

/// Every host outcome: kernel, section 1 (when Docker is present), daemon sections 2 and 3.
pub fn host_outcomes(
    f: &HostFacts,
    roots: &Roots,
    cfg: &DaemonConfig,
    dfacts: &DaemonFacts,
) -> Vec<Outcome> {
    let docker = dfacts.info.is_some() || cfg.pid.is_some();
    let mut out = kernel_checks(f);
    out.push(ip_forward_check(f, docker));
    if docker {
        let root_dir = dfacts.info.as_ref().and_then(|i| i.docker_root_dir.clone());
        out.extend(section1_checks(roots, root_dir.as_deref()));
        out.extend(daemon::checks(cfg, dfacts));
    }
    out
}

impl HostReport {
    /// Measured facts, one screen.
    pub fn facts_table(&self) -> String {
        let f = &self.facts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Host {}: {}, kernel {}, {}{}",
            f.hostname,
            f.os.as_deref().unwrap_or("unknown OS"),
            f.kernel,
            f.virtualization.kind,
            if f.virtualization.container {
                " (container: no own kernel)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  virtualisation    {}",
            f.virtualization.evidence.join("; ")
        );
        let un = &f.user_namespaces;
        let _ = writeln!(
            s,
            "  user namespaces   max {}; root {}; unprivileged {}",
            un.max.map_or("missing".into(), |v| v.to_string()),
            match &un.root {
                Ok(()) => "can create".to_string(),
                Err(e) => format!("cannot ({e})"),
            },
            match &un.unprivileged {
                Ok(()) => "can create".to_string(),
                Err(e) => format!("cannot ({e})"),
            },
        );
        let _ = writeln!(
            s,
            "  seccomp           {}",
            if f.seccomp.filter {
                format!("filters ({})", f.seccomp.actions.join(" "))
            } else if f.seccomp.seccomp {
                "strict mode only".into()
            } else {
                "not supported".into()
            }
        );
        let _ = writeln!(
            s,
            "  LSMs              {}",
            f.lsms.as_ref().map_or("unknown".into(), |l| l.join(","))
        );
        let _ = writeln!(
            s,
            "  AppArmor/SELinux  AppArmor {}; SELinux {}",
            if f.mac.apparmor_enabled {
                "enabled"
            } else {
                "not enabled"
            },
            match f.mac.selinux_enforcing {
                Some(true) => "enforcing",
                Some(false) => "permissive",
                None => "not enabled",
            }
        );
        let _ = writeln!(
            s,
            "  lockdown          {}",
            f.lockdown.as_deref().unwrap_or("unknown")
        );
        let _ = writeln!(
            s,
            "  Landlock          {}",
            match &f.landlock {
                Ok(v) => format!("ABI {v}"),
                Err(e) => format!("unavailable: {e}"),
            }
        );
        let _ = writeln!(
            s,
            "  cgroups           {}; {}",
            f.cgroup_mode,
            f.controllers
                .iter()
                .map(|c| format!("{} {}", c.name, c.hierarchy))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "  BTF               {}",
            if f.btf { "yes" } else { "no" }
        );
        if !f.bpf.is_empty() {
            let _ = writeln!(
                s,
                "  BPF (loaded)      {}",
                f.bpf
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        let _ = writeln!(s, "  securityfs        {}", f.securityfs);
        let _ = writeln!(
            s,
            "  sysctls           {}",
            f.sysctls
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("-")))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if let Some(i) = &self.daemon_facts.info {
            let _ = writeln!(
                s,
                "  docker            {} storage {} cgroup driver {} root {} security {}",
                i.server_version.as_deref().unwrap_or("?"),
                i.driver.as_deref().unwrap_or("?"),
                i.cgroup_driver.map(|d| d.to_string()).unwrap_or_default(),
                i.docker_root_dir.as_deref().unwrap_or("?"),
                i.security_options.clone().unwrap_or_default().join(",")
            );
        } else {
            let _ = writeln!(s, "  docker            daemon not reachable");
        }
        s
    }

    /// The protections matrix and what to change.
    pub fn matrix_table(&self) -> String {
        let mut s = String::from("Protections on this host\n");
        for p in &self.matrix {
            let _ = writeln!(
                s,
                "  {:<38} {:<4} {}",
                p.name,
                if p.available { "yes" } else { "NO" },
                p.detail
            );
        }
        let changes: Vec<&Protection> = self.matrix.iter().filter(|p| p.change.is_some()).collect();
        if !changes.is_empty() {
            s.push_str("What to change\n");
            for p in changes {
                let _ = writeln!(
                    s,
                    "  {}: {}",
                    p.name,
                    p.change.as_deref().unwrap_or_default()
                );
            }
        }
        s
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "facts": self.facts,
            "daemon": {
                "config": self.daemon,
                "tcp_listeners": self.daemon_facts.tcp_listeners,
                "info": self.daemon_facts.info,
            },
            "protections": self.matrix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_of_picks_the_longest_prefix() {
        let mi = "\
1 0 8:1 / / rw - ext4 /dev/vda1 rw
2 1 8:2 / /var/lib/docker rw - xfs /dev/vdb rw
3 1 0:5 / /var rw - ext4 /dev/vda2 rw
";
        assert_eq!(
            mount_of(mi, "/var/lib/docker"),
            Some(("/var/lib/docker".into(), "xfs".into()))
        );
        assert_eq!(
            mount_of(mi, "/var/lib/other"),
            Some(("/var".into(), "ext4".into()))
        );
        assert_eq!(mount_of(mi, "/srv"), Some(("/".into(), "ext4".into())));
    }
}
