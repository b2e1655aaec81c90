//! Seccomp profiles in Docker's format: learned from recorded syscalls, merged, and the
//! allow-all learning profile.
//!
//! # Profile format
//! A learned profile is what `docker run --security-opt seccomp=FILE` takes (moby
//! `profiles/seccomp`, which runc turns into an OCI `linux.seccomp` section):
//! `defaultAction: SCMP_ACT_ERRNO` with `defaultErrnoRet: 1` (EPERM) for everything not listed,
//! `archMap` with `SCMP_ARCH_X86_64` and its `SCMP_ARCH_X86` and `SCMP_ARCH_X32`
//! sub-architectures exactly as Docker's default profile lists them, and one
//! `SCMP_ACT_ALLOW` rule naming the syscalls the workload made. Names come from the kernel's
//! syscall tables of the ABI each call was made through (x86_64, i386 for 32-bit compat calls,
//! x32); libseccomp resolves each name for every listed architecture, so a name allowed is
//! allowed through each ABI.
//!
//! Docker ignores fields it does not know; the learned rule's `comment` says where the list
//! came from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rampart_kernel::SyscallAbi;
use serde::{Deserialize, Serialize};

use crate::error::AuditError;

/// `SCMP_ACT_ALLOW`.
pub const ALLOW: &str = "SCMP_ACT_ALLOW";
/// `SCMP_ACT_ERRNO`.
pub const ERRNO: &str = "SCMP_ACT_ERRNO";
/// EPERM, the errno a refused syscall returns.
pub const EPERM: u32 = 1;

/// A Docker seccomp profile (the subset of moby's `types.Seccomp` Rampart reads and writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

/// One `archMap` entry: the native architecture and the ones it can also run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

/// One rule of `syscalls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<serde_json::Value>,
}

/// Docker's `archMap` entry for this machine's architecture.
pub fn native_arch_map() -> Vec<ArchMap> {
    if cfg!(target_arch = "aarch64") {
        vec![ArchMap {
            architecture: "SCMP_ARCH_AARCH64".into(),
            sub_architectures: vec!["SCMP_ARCH_ARM".into()],
        }]
    } else {
        vec![ArchMap {
            architecture: "SCMP_ARCH_X86_64".into(),
            sub_architectures: vec!["SCMP_ARCH_X86".into(), "SCMP_ARCH_X32".into()],
        }]
    }
}

/// x32-only syscall numbers (512 and up, without the x32 bit; asm/unistd_x32.h).
const X32_ONLY: [(u32, &str); 36] = [
    (512, "rt_sigaction"),
    (513, "rt_sigreturn"),
    (514, "ioctl"),
    (515, "readv"),
    (516, "writev"),
    (517, "recvfrom"),
    (518, "sendmsg"),
    (519, "recvmsg"),
    (520, "execve"),
    (521, "ptrace"),
    (522, "rt_sigpending"),
    (523, "rt_sigtimedwait"),
    (524, "rt_sigqueueinfo"),
    (525, "sigaltstack"),
    (526, "timer_create"),
    (527, "mq_notify"),
    (528, "kexec_load"),
    (529, "waitid"),
    (530, "set_robust_list"),
    (531, "get_robust_list"),
    (532, "vmsplice"),
    (533, "move_pages"),
    (534, "preadv"),
    (535, "pwritev"),
    (536, "rt_tgsigqueueinfo"),
    (537, "recvmmsg"),
    (538, "sendmmsg"),
    (539, "process_vm_readv"),
    (540, "process_vm_writev"),
    (541, "setsockopt"),
    (542, "getsockopt"),
    (543, "io_setup"),
    (544, "io_submit"),
    (545, "execveat"),
    (546, "preadv2"),
    (547, "pwritev2"),
];

/// The name of syscall `nr` of `abi` on this machine, from the kernel's syscall tables.
pub fn syscall_name(abi: SyscallAbi, nr: u32) -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        match abi {
            SyscallAbi::Native => syscalls::x86_64::Sysno::new(nr as usize).map(|s| s.name()),
            SyscallAbi::Ia32 => syscalls::x86::Sysno::new(nr as usize).map(|s| s.name()),
            SyscallAbi::X32 => X32_ONLY
                .iter()
                .find(|(n, _)| *n == nr)
                .map(|(_, name)| *name)
                .or_else(|| {
                    (nr < 512)
                        .then(|| syscalls::x86_64::Sysno::new(nr as usize).map(|s| s.name()))
                        .flatten()
                }),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        match abi {
            SyscallAbi::Native => syscalls::Sysno::new(nr as usize).map(|s| s.name()),
            SyscallAbi::Ia32 | SyscallAbi::X32 => {
                let _ = X32_ONLY;
                None
            }
        }
    }
}

/// Syscalls every learned profile allows, recorded or not: the runtime and the kernel make them
/// at moments set by signals and scheduling, not by the workload, so a recording sees them only
/// by luck, and a profile without them fails some starts and `docker exec`s at random (more
/// often on a loaded machine).
///
/// runc installs the container's filter in `runc init`, a Go program, and then still runs Go
/// code on that thread until it `execve`s the entrypoint (with Docker's default
/// `no-new-privileges=false`, before it even waits for `docker start`). Go's scheduler preempts
/// a goroutine that ran for 10 ms with a signal (SIGURG), so when `runc init` is descheduled
/// at the wrong moment its thread takes a signal under the filter; returning from the handler
/// is `rt_sigreturn`, and with that refused runc init dies of SIGSEGV (the container exits 139
/// right after `docker run -d` succeeded, or `docker exec` fails with 139). Seen on the busybox
/// httpd test: `rt_sigreturn` under the filter in 1 of 11 learnings, and 5 of 60 loaded
/// starts and 2 of 100 loaded `docker exec`s killed by a profile learned without it. The other
/// names are the rest of what the Go runtime may do on that thread depending on timing: lock
/// and sleep (`futex`, `nanosleep`, `sched_yield`), heap growth and return
/// (`mmap`, `munmap`, `madvise`), preempting other threads when it starts a garbage collection
/// (`getpid`, `tgkill`), and `restart_syscall`, which the kernel issues itself to resume a
/// sleep a signal interrupted. All are in Docker's default profile.
pub const RUNTIME_TIMING: [&str; 10] = [
    "futex",
    "getpid",
    "madvise",
    "mmap",
    "munmap",
    "nanosleep",
    "restart_syscall",
    "rt_sigreturn",
    "sched_yield",
    "tgkill",
];

/// The allow-all profile to learn under: it allows every syscall (so the recorder sees them
/// all, as with `seccomp=unconfined`), but the runtime installs it as a real filter, which marks
/// the moment the container's own profile would start to apply. Learning under it gives the
/// tightest learned profile.
pub fn learning_profile() -> SeccompProfile {
    SeccompProfile {
        default_action: ALLOW.into(),
        default_errno_ret: None,
        arch_map: native_arch_map(),
        architectures: Vec::new(),
        syscalls: Vec::new(),
    }
}

/// A default-deny profile allowing exactly `names`.
pub fn allow_list(names: &BTreeSet<String>, comment: impl Into<String>) -> SeccompProfile {
    SeccompProfile {
        default_action: ERRNO.into(),
        default_errno_ret: Some(EPERM),
        arch_map: native_arch_map(),
        architectures: Vec::new(),
        syscalls: vec![SyscallRule {
            names: names.iter().cloned().collect(),
            name: None,
            action: ALLOW.into(),
            errno_ret: None,
            args: Vec::new(),
            comment: Some(comment.into()),
            includes: None,
            excludes: None,
        }],
    }
}

impl SeccompProfile {
    /// Reads a profile file; errors name the file, line and column.
    pub fn load(path: &Path) -> Result<SeccompProfile, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuditError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| AuditError::json(path, &e))
    }

    /// Writes the profile as indented JSON.
    pub fn save(&self, path: &Path) -> Result<(), AuditError> {
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| AuditError::json(path, &e))?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| AuditError::io(path, e))
    }

    /// The syscalls the profile allows unconditionally, if it is a plain default-deny
    /// allow-list (every rule `SCMP_ACT_ALLOW` without argument conditions, includes or
    /// excludes). `Err` says which rule makes it something else.
    pub fn allowed(&self) -> Result<BTreeSet<String>, NotAllowList> {
        self.allowed_reason().map_err(NotAllowList)
    }

    fn allowed_reason(&self) -> Result<BTreeSet<String>, String> {
        if self.default_action == ALLOW || self.default_action == "SCMP_ACT_LOG" {
            return Err(format!(
                "defaultAction is {}: the profile allows everything, it is not an allow-list",
                self.default_action
            ));
        }
        let mut out = BTreeSet::new();
        for (i, r) in self.syscalls.iter().enumerate() {
            if r.action != ALLOW {
                return Err(format!(
                    "syscalls[{i}] has action {} (only {ALLOW} rules can be merged)",
                    r.action
                ));
            }
            if !r.args.is_empty() || r.includes.is_some() || r.excludes.is_some() {
                return Err(format!(
                    "syscalls[{i}] ({}) has argument conditions, includes or excludes, which a \
                     merge cannot combine",
                    r.names
                        .first()
                        .or(r.name.as_ref())
                        .map_or("?", String::as_str)
                ));
            }
            out.extend(r.names.iter().cloned());
            out.extend(r.name.iter().cloned());
        }
        Ok(out)
    }

    /// True when this profile allows every syscall (an allow-all learning profile).
    pub fn allows_everything(&self) -> bool {
        (self.default_action == ALLOW || self.default_action == "SCMP_ACT_LOG")
            && self
                .syscalls
                .iter()
                .all(|r| r.action == ALLOW || r.action == "SCMP_ACT_LOG")
    }
}

/// [`merge`] of the profiles in the files `paths`, plus `extra` (a profile not in a file,
/// named by its label); errors name the file.
pub fn merge_files(
    paths: &[std::path::PathBuf],
    extra: Option<(&Path, &SeccompProfile)>,
) -> Result<SeccompProfile, AuditError> {
    let loaded: Vec<(&Path, SeccompProfile)> = paths
        .iter()
        .map(|p| SeccompProfile::load(p).map(|sp| (p.as_path(), sp)))
        .collect::<Result<_, _>>()?;
    let mut refs: Vec<(&Path, &SeccompProfile)> = loaded.iter().map(|(p, s)| (*p, s)).collect();
    refs.extend(extra);
    merge(&refs)
}

/// The union of several default-deny allow-list profiles (learned from several recordings of
/// one workload). Every input must be a plain allow-list; the error names the file and rule
/// that is not.
pub fn merge(profiles: &[(&Path, &SeccompProfile)]) -> Result<SeccompProfile, AuditError> {
    let mut names = BTreeSet::new();
    let mut sources = Vec::new();
    for (path, p) in profiles {
        let allowed = p
            .allowed()
            .map_err(|NotAllowList(reason)| AuditError::Profile {
                path: path.to_path_buf(),
                reason,
            })?;
        names.extend(allowed);
        sources.push(path.display().to_string());
    }
    Ok(allow_list(
        &names,
        format!(
            "merged by rampart from {} ({} syscalls)",
            sources.join(", "),
            names.len()
        ),
    ))
}

/// Syscall names and counts of a recording, with the numbers no table knew.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedSyscalls {
    /// Name -> how often it was called.
    pub names: BTreeMap<String, u64>,
    /// (ABI, number) pairs without a name in this build's tables (syscalls newer than the
    /// table); they cannot be put into a profile by name.
    pub unknown: Vec<(String, u32, u64)>,
}

impl NamedSyscalls {
    /// Names the counts of one recording.
    pub fn from_counts(counts: impl IntoIterator<Item = (SyscallAbi, u32, u64)>) -> NamedSyscalls {
        let mut out = NamedSyscalls::default();
        for (abi, nr, count) in counts {
            match syscall_name(abi, nr) {
                Some(n) => *out.names.entry(n.to_string()).or_default() += count,
                None => out.unknown.push((format!("{abi:?}"), nr, count)),
            }
        }
        out
    }
}

/// Why a profile is not a plain default-deny allow-list (the rule or default action that
/// makes it something else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAllowList(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_abi_table() {
        assert_eq!(syscall_name(SyscallAbi::Native, 0), Some("read"));
        assert_eq!(syscall_name(SyscallAbi::Native, 59), Some("execve"));
        assert_eq!(syscall_name(SyscallAbi::Native, 262), Some("newfstatat"));
        // i386: 5 is open, 11 execve, 140 _llseek.
        assert_eq!(syscall_name(SyscallAbi::Ia32, 5), Some("open"));
        assert_eq!(syscall_name(SyscallAbi::Ia32, 11), Some("execve"));
        assert_eq!(syscall_name(SyscallAbi::Ia32, 140), Some("_llseek"));
        assert_eq!(syscall_name(SyscallAbi::X32, 512), Some("rt_sigaction"));
        assert_eq!(syscall_name(SyscallAbi::X32, 0), Some("read"));
        assert_eq!(syscall_name(SyscallAbi::Native, 100_000), None);
    }

    /// The x32 table matches the kernel headers where they are installed (linux-libc-dev).
    #[test]
    fn x32_table_matches_the_installed_headers() {
        let Ok(h) = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_x32.h")
        else {
            testkit::skip(module_path!(), "asm/unistd_x32.h (Debian linux-libc-dev)");
            return;
        };
        let mut n = 0;
        for line in h.lines() {
            let Some(rest) = line.strip_prefix("#define __NR_") else {
                continue;
            };
            let mut parts = rest.splitn(2, ' ');
            let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Some(num) = value
                .trim()
                .strip_prefix("(__X32_SYSCALL_BIT + ")
                .and_then(|v| v.strip_suffix(')'))
                .and_then(|v| v.parse::<u32>().ok())
            else {
                continue;
            };
            if num >= 512 {
                assert_eq!(syscall_name(SyscallAbi::X32, num), Some(name), "{num}");
                n += 1;
            }
        }
        assert_eq!(n, X32_ONLY.len());
    }

    #[test]
    fn allow_list_is_docker_format_and_round_trips() {
        let names: BTreeSet<String> = ["read", "write", "exit_group"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = allow_list(&names, "test");
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(v["archMap"][0]["architecture"], "SCMP_ARCH_X86_64");
            assert_eq!(
                v["archMap"][0]["subArchitectures"],
                serde_json::json!(["SCMP_ARCH_X86", "SCMP_ARCH_X32"])
            );
        }
        assert_eq!(v["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
        assert_eq!(
            v["syscalls"][0]["names"],
            serde_json::json!(["exit_group", "read", "write"])
        );
        assert!(
            v.get("architectures").is_none(),
            "archMap and architectures are exclusive"
        );
        let back: SeccompProfile = serde_json::from_value(v).expect("parse");
        assert_eq!(back, p);
        assert_eq!(back.allowed().expect("allow-list"), names);
    }

    #[test]
    fn merge_is_the_union_and_refuses_conditional_rules() {
        let a = allow_list(&["read".to_string()].into(), "a");
        let b = allow_list(&["write".to_string(), "read".to_string()].into(), "b");
        let m = merge(&[(Path::new("a.json"), &a), (Path::new("b.json"), &b)]).expect("merge");
        assert_eq!(
            m.allowed().expect("list"),
            ["read".to_string(), "write".to_string()].into()
        );
        let mut c = b.clone();
        c.syscalls.push(SyscallRule {
            names: vec!["personality".into()],
            name: None,
            action: ALLOW.into(),
            errno_ret: None,
            args: vec![serde_json::json!({"index": 0, "value": 0, "op": "SCMP_CMP_EQ"})],
            comment: None,
            includes: None,
            excludes: None,
        });
        let err = merge(&[(Path::new("c.json"), &c)]).expect_err("conditional");
        let text = err.to_string();
        assert!(
            text.contains("c.json") && text.contains("syscalls[1] (personality)"),
            "{text}"
        );
        let err = merge(&[(Path::new("l.json"), &learning_profile())]).expect_err("allow-all");
        assert!(err.to_string().contains("allows everything"));
    }

    #[test]
    fn malformed_profile_names_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("bad.json");
        std::fs::write(
            &p,
            "{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [}\n",
        )
        .expect("write");
        let e = SeccompProfile::load(&p).expect_err("bad");
        let text = e.to_string();
        assert!(text.contains("bad.json:3:"), "{text}");
    }

    #[test]
    fn unknown_numbers_are_kept_apart() {
        let n = NamedSyscalls::from_counts([
            (SyscallAbi::Native, 0, 3),
            (SyscallAbi::Native, 99_999, 1),
            (SyscallAbi::Ia32, 3, 2),
        ]);
        assert_eq!(n.names.get("read"), Some(&5));
        assert_eq!(n.unknown, vec![("Native".to_string(), 99_999, 1)]);
    }
}
