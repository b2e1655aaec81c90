//! Kernel and machine facts, each measured: read from /proc, /sys or securityfs, asked of the
//! CPU (CPUID), or tried (creating a user namespace, asking for the Landlock ABI). Nothing is
//! inferred from the kernel version.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::cgroupfs::{Mounts, Served, CONTROLLERS};

/// Where the audit reads the machine from (roots replaceable for tests).
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            proc: PathBuf::from("/proc"),
            sys: PathBuf::from("/sys"),
            etc: PathBuf::from("/etc"),
        }
    }
}

pub(crate) fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// What the machine runs on.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Virtualization {
    /// `kvm`, `xen`, `vmware`, `hyper-v`, `qemu`, `bhyve`, `parallels`, `openvz`, `lxc`,
    /// `docker`, `podman`, `other-hypervisor`, `none`.
    pub kind: String,
    /// True for a container-based VPS (OpenVZ, LXC) or a container: no own kernel.
    pub container: bool,
    /// What the answer rests on.
    pub evidence: Vec<String>,
}

/// The hypervisor vendor from CPUID leaf 0x40000000, if the hypervisor bit is set.
fn cpuid_hypervisor() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // CPUID is available on every x86_64 CPU and has no side effects.
        let leaf1 = __cpuid(1);
        if leaf1.ecx & (1 << 31) == 0 {
            return None;
        }
        // Leaf 0x40000000 is reserved for hypervisors and harmless to query.
        let h = __cpuid(0x4000_0000);
        let mut sig = Vec::with_capacity(12);
        for r in [h.ebx, h.ecx, h.edx] {
            sig.extend_from_slice(&r.to_le_bytes());
        }
        Some(
            String::from_utf8_lossy(&sig)
                .trim_end_matches('\0')
                .to_string(),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Detects the virtualisation of this machine.
pub fn virtualization(roots: &Roots) -> Virtualization {
    let mut evidence = Vec::new();
    // Containers first: a container on a VM still has no kernel of its own.
    let vz = roots.proc.join("vz").exists();
    let bc = roots.proc.join("bc").exists();
    if vz && !bc {
        evidence.push("/proc/vz exists without /proc/bc (an OpenVZ/Virtuozzo container)".into());
        return Virtualization {
            kind: "openvz".into(),
            container: true,
            evidence,
        };
    }
    // The initial PID namespace has a fixed inode (PROC_PID_INIT_INO): a process in it is not
    // in a container, whatever files an image left behind (/.dockerenv in a VM image).
    let pidns = fs::read_link(roots.proc.join("self/ns/pid"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    let init_pidns = pidns == "pid:[4026531836]";
    let env1 = fs::read(roots.proc.join("1/environ")).unwrap_or_default();
    let container_env = env1
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("container=").map(str::to_string));
    let mountinfo = fs::read_to_string(roots.proc.join("self/mountinfo")).unwrap_or_default();
    if init_pidns {
        evidence.push("this process is in the initial PID namespace (not a container)".into());
    } else if container_env.as_deref() == Some("lxc") || mountinfo.contains("lxcfs") {
        evidence.push(if container_env.is_some() {
            "PID 1 has container=lxc".into()
        } else {
            "lxcfs is mounted over /proc files".into()
        });
        return Virtualization {
            kind: "lxc".into(),
            container: true,
            evidence,
        };
    }
    if !init_pidns
        && (Path::new("/.dockerenv").exists() || container_env.as_deref() == Some("docker"))
    {
        evidence.push("/.dockerenv exists".into());
        return Virtualization {
            kind: "docker".into(),
            container: true,
            evidence,
        };
    }
    if !init_pidns
        && (Path::new("/run/.containerenv").exists() || container_env.as_deref() == Some("podman"))
    {
        evidence.push("/run/.containerenv exists".into());
        return Virtualization {
            kind: "podman".into(),
            container: true,
            evidence,
        };
    }
    let dmi =
        |f: &str| read_trim(&roots.sys.join("class/dmi/id").join(f)).filter(|s| !s.is_empty());
    if let Some(v) = dmi("sys_vendor") {
        evidence.push(format!(
            "DMI vendor {v:?}, product {:?}",
            dmi("product_name").unwrap_or_default()
        ));
    }
    if let Some(t) = read_trim(&roots.sys.join("hypervisor/type")) {
        evidence.push(format!("/sys/hypervisor/type = {t}"));
        if t == "xen" {
            return Virtualization {
                kind: "xen".into(),
                container: false,
                evidence,
            };
        }
    }
    match cpuid_hypervisor() {
        Some(sig) => {
            evidence.push(format!(
                "CPUID hypervisor bit set, vendor signature {sig:?}"
            ));
            let kind = match sig.as_str() {
                "KVMKVMKVM" => "kvm",
                "Microsoft Hv" => "hyper-v",
                "VMwareVMware" => "vmware",
                "XenVMMXenVMM" => "xen",
                "TCGTCGTCGTCG" => "qemu",
                "bhyve bhyve" | "bhyve bhyve " => "bhyve",
                " lrpepyh  vr" | "prl hyperv" => "parallels",
                "ACRNACRNACRN" => "acrn",
                _ => "other-hypervisor",
            };
            Virtualization {
                kind: kind.into(),
                container: false,
                evidence,
            }
        }
        None => {
            evidence.push("CPUID hypervisor bit clear".into());
            Virtualization {
                kind: "none".into(),
                container: false,
                evidence,
            }
        }
    }
}

/// Why the host cannot do something the audit probed for (what failed, or why it was not
/// tried), in words for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// User-namespace facts.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserNamespaces {
    /// `user.max_user_namespaces`.
    pub max: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian and Ubuntu kernels only).
    pub unprivileged_clone: Option<u64>,
    /// `kernel.apparmor_restrict_unprivileged_userns` (Ubuntu 23.10+).
    pub apparmor_restrict: Option<u64>,
    /// Root could create one (tried): `Ok` or the error.
    pub root: Result<(), Unavailable>,
    /// uid 65534 could create one (tried).
    pub unprivileged: Result<(), Unavailable>,
}

fn true_binary() -> PathBuf {
    ["/bin/true", "/usr/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("/bin/true"))
}

/// Tries unshare(CLONE_NEWUSER) in a child, as root or as `uid`.
fn try_userns(as_uid: Option<u32>) -> Result<(), String> {
    let mut cmd = Command::new(true_binary());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(uid) = as_uid {
        cmd.uid(uid).gid(uid);
    }
    // SAFETY: unshare is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(mut child) => {
            let _ = child.wait();
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn sysctl_u64(roots: &Roots, name: &str) -> Option<u64> {
    read_trim(&roots.proc.join("sys").join(name.replace('.', "/"))).and_then(|v| v.parse().ok())
}

/// Measures user-namespace support, trying to create namespaces when running as root.
pub fn user_namespaces(roots: &Roots, root: bool) -> UserNamespaces {
    let (r, u) = if root {
        (
            try_userns(None).map_err(Unavailable),
            try_userns(Some(65534)).map_err(Unavailable),
        )
    } else {
        let e = Err(Unavailable(
            "not tried: the audit does not run as root".to_string(),
        ));
        (e.clone(), e)
    };
    UserNamespaces {
        max: sysctl_u64(roots, "user.max_user_namespaces"),
        unprivileged_clone: sysctl_u64(roots, "kernel.unprivileged_userns_clone"),
        apparmor_restrict: sysctl_u64(roots, "kernel.apparmor_restrict_unprivileged_userns"),
        root: r,
        unprivileged: u,
    }
}

/// Seccomp support.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SeccompSupport {
    /// CONFIG_SECCOMP (the `Seccomp:` line of /proc/self/status).
    pub seccomp: bool,
    /// CONFIG_SECCOMP_FILTER (/proc/sys/kernel/seccomp/actions_avail).
    pub filter: bool,
    pub actions: Vec<String>,
}

pub fn seccomp(roots: &Roots) -> SeccompSupport {
    let status = fs::read_to_string(roots.proc.join("self/status")).unwrap_or_default();
    let actions = read_trim(&roots.proc.join("sys/kernel/seccomp/actions_avail"));
    SeccompSupport {
        seccomp: status.lines().any(|l| l.starts_with("Seccomp:")),
        filter: actions.is_some(),
        actions: actions
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    }
}

/// AppArmor and SELinux state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MacState {
    /// `/sys/module/apparmor/parameters/enabled` is `Y`.
    pub apparmor_enabled: bool,
    /// Profiles loaded, by mode (securityfs `apparmor/profiles`), when readable.
    pub apparmor_profiles: Option<BTreeMap<String, usize>>,
    /// SELinux: `Some(true)` enforcing, `Some(false)` permissive, `None` not enabled.
    pub selinux_enforcing: Option<bool>,
}

pub fn mac(roots: &Roots) -> MacState {
    let apparmor_enabled =
        read_trim(&roots.sys.join("module/apparmor/parameters/enabled")).is_some_and(|v| v == "Y");
    let apparmor_profiles = fs::read_to_string(roots.sys.join("kernel/security/apparmor/profiles"))
        .ok()
        .map(|t| {
            let mut m = BTreeMap::new();
            for l in t.lines() {
                if let Some(mode) = l.rsplit_once(" (").map(|(_, m)| m.trim_end_matches(')')) {
                    *m.entry(mode.to_string()).or_insert(0) += 1;
                }
            }
            m
        });
    let selinux_enforcing = read_trim(&roots.sys.join("fs/selinux/enforce")).map(|v| v == "1");
    MacState {
        apparmor_enabled,
        apparmor_profiles,
        selinux_enforcing,
    }
}

/// Why Landlock is unavailable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LandlockUnavailable {
    #[error("built in but not enabled (add landlock to the lsm= kernel parameter)")]
    NotEnabled,
    #[error("not built into this kernel (ENOSYS)")]
    NotBuilt,
    #[error("{0}")]
    Os(std::io::Error),
}

/// Landlock: the ABI version, or why it is unavailable.
pub fn landlock() -> Result<i64, LandlockUnavailable> {
    #[cfg(target_os = "linux")]
    {
        const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
        // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the call only
        // returns the ABI version; it creates nothing.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        if r >= 0 {
            return Ok(r);
        }
        let e = std::io::Error::last_os_error();
        Err(match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => LandlockUnavailable::NotEnabled,
            Some(libc::ENOSYS) => LandlockUnavailable::NotBuilt,
            _ => LandlockUnavailable::Os(e),
        })
    }
}

/// One cgroup controller: which hierarchy serves it, and whether the kernel has it enabled.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Controller {
    pub name: String,
    /// `v1 /sys/fs/cgroup/memory`, `v2 /sys/fs/cgroup`, or `missing`.
    pub hierarchy: String,
    pub usable: bool,
    /// The `enabled` column of /proc/cgroups (v1 names), when present.
    pub kernel_enabled: Option<bool>,
}

pub fn controllers(roots: &Roots, mounts: &Mounts) -> Vec<Controller> {
    let table = fs::read_to_string(roots.proc.join("cgroups")).unwrap_or_default();
    CONTROLLERS
        .iter()
        .map(|&c| {
            let v1 = if c == "io" { "blkio" } else { c };
            let kernel_enabled = table
                .lines()
                .filter(|l| !l.starts_with('#'))
                .find(|l| l.split_whitespace().next() == Some(v1))
                .and_then(|l| l.split_whitespace().nth(3))
                .map(|e| e == "1");
            let (hierarchy, usable) = match mounts.serving(c) {
                Some(Served::V1(p)) => (format!("v1 {}", p.display()), true),
                Some(Served::V2(p)) => (format!("v2 {}", p.display()), true),
                None => ("missing".to_string(), false),
            };
            Controller {
                name: c.to_string(),
                hierarchy,
                usable: usable && kernel_enabled != Some(false),
                kernel_enabled,
            }
        })
        .collect()
}

/// The sysctls the audit reports, by name.
pub const SYSCTLS: [&str; 12] = [
    "kernel.unprivileged_bpf_disabled",
    "user.max_user_namespaces",
    "kernel.unprivileged_userns_clone",
    "kernel.yama.ptrace_scope",
    "kernel.kptr_restrict",
    "kernel.dmesg_restrict",
    "net.ipv4.ip_forward",
    "kernel.perf_event_paranoid",
    "fs.protected_symlinks",
    "fs.protected_hardlinks",
    "fs.suid_dumpable",
    "kernel.randomize_va_space",
];

pub fn sysctls(roots: &Roots) -> BTreeMap<String, Option<String>> {
    SYSCTLS
        .iter()
        .map(|n| {
            (
                n.to_string(),
                read_trim(&roots.proc.join("sys").join(n.replace('.', "/"))),
            )
        })
        .collect()
}

/// Whether securityfs is mounted at /sys/kernel/security (per /proc/self/mountinfo).
pub fn securityfs_mounted(roots: &Roots) -> bool {
    fs::read_to_string(roots.proc.join("self/mountinfo"))
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.split_once(" - ")
                .is_some_and(|(_, r)| r.starts_with("securityfs "))
        })
}

/// Mounts securityfs read-only at /sys/kernel/security.
pub fn mount_securityfs() -> std::io::Result<()> {
    let target = c"/sys/kernel/security";
    let fstype = c"securityfs";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let r = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Unmounts what [`mount_securityfs`] mounted.
pub fn unmount_securityfs() -> std::io::Result<()> {
    // SAFETY: valid NUL-terminated path.
    let r = unsafe { libc::umount2(c"/sys/kernel/security".as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openvz_container_is_detected_from_proc() {
        let d = tempfile::tempdir().expect("tmp");
        fs::create_dir(d.path().join("vz")).expect("mkdir");
        let roots = Roots {
            proc: d.path().to_path_buf(),
            sys: d.path().join("sys"),
            etc: d.path().join("etc"),
        };
        let v = virtualization(&roots);
        assert_eq!(v.kind, "openvz");
        assert!(v.container);
        // An OpenVZ host node has /proc/bc too.
        fs::create_dir(d.path().join("bc")).expect("mkdir");
        assert_ne!(virtualization(&roots).kind, "openvz");
    }

    #[test]
    fn sysctls_and_controllers_from_a_fake_tree() {
        let d = tempfile::tempdir().expect("tmp");
        fs::create_dir_all(d.path().join("sys/kernel")).expect("mkdir");
        fs::write(d.path().join("sys/kernel/kptr_restrict"), "1\n").expect("w");
        fs::write(
            d.path().join("cgroups"),
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t4\t60\t0\npids\t8\t2\t1\n",
        )
        .expect("w");
        let roots = Roots {
            proc: d.path().to_path_buf(),
            sys: d.path().join("nosys"),
            etc: d.path().join("etc"),
        };
        let s = sysctls(&roots);
        assert_eq!(s["kernel.kptr_restrict"].as_deref(), Some("1"));
        assert_eq!(s["kernel.dmesg_restrict"], None);
        let mounts = Mounts::from_mountinfo(
            "1 0 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n2 0 0:2 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
        );
        let c = controllers(&roots, &mounts);
        let mem = c.iter().find(|c| c.name == "memory").expect("memory");
        assert!(!mem.usable, "disabled in /proc/cgroups");
        let pids = c.iter().find(|c| c.name == "pids").expect("pids");
        assert!(pids.usable);
        let io = c.iter().find(|c| c.name == "io").expect("io");
        assert_eq!(io.hierarchy, "missing");
    }

    #[test]
    fn landlock_answers_without_side_effects() {
        // Either an ABI version or a reason; never a panic.
        match landlock() {
            Ok(v) => assert!(v >= 1),
            Err(why) => assert!(!why.to_string().is_empty()),
        }
    }
}
