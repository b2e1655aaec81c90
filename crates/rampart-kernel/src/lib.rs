//! Everything Rampart loads into the kernel.
//!
//! * [`Sensor`]: the BPF programs of `bpf/rampart.bpf.c` (exec, fork, exit, ~40 syscalls, DNS),
//!   their loader and the ring-buffer reader that produces [`rampart_event::SensorEvent`]s.
//! * [`Capabilities`]: what this kernel accepts, probed by loading minimal programs.
//! * [`ProcConnector`]: the fallback for hosts where BPF cannot load (exec, fork and exit from
//!   the netlink proc connector, details from /proc).
//!
//! The C header `bpf/rampart.h` is the ABI with the programs; `abi` mirrors it.

mod abi;
#[cfg(test)]
mod abi_check;
mod cgroup;
mod decode;
pub mod enforce;
mod error;
mod probe;
mod procconn;
mod sensor;
mod syscall_recorder;
mod syscalls;

pub use cgroup::{cgroup_layout, CgroupLayout};
pub use decode::join as join_path;
pub use error::KernelError;
pub use probe::{Capabilities, Probe};
pub use procconn::ProcConnector;
pub use sensor::{SensitiveNames, Sensor, SensorConfig, SensorCounters, SensorPrograms};
pub use syscall_recorder::{
    CapabilityCount, CgroupHierarchy, CgroupRef, RecorderError, SyscallAbi, SyscallCount,
    SyscallRecorder, WatchScope,
};
pub use syscalls::REPORTED_SYSCALLS;

/// Paths whose reads are reported by default (`sensitive_paths` in the agent configuration).
///
/// The last component of each is a literal name on purpose: the kernel filters read-only opens
/// by file name with one hash lookup; a pattern in the last component (`id_*`) makes it check
/// the directory name of every open as well, which costs about 100 ns per open.
pub const DEFAULT_SENSITIVE_PATHS: [&str; 33] = [
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/security/opasswd",
    "/root/.ssh/id_rsa",
    "/root/.ssh/id_ecdsa",
    "/root/.ssh/id_ed25519",
    "/root/.ssh/id_dsa",
    "/root/.ssh/authorized_keys",
    "/home/*/.ssh/id_rsa",
    "/home/*/.ssh/id_ecdsa",
    "/home/*/.ssh/id_ed25519",
    "/home/*/.ssh/id_dsa",
    "/home/*/.ssh/authorized_keys",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/proc/*/mem",
    "/proc/kcore",
    "/dev/mem",
    "/dev/kmem",
    "/root/.aws/credentials",
    "/home/*/.aws/credentials",
    "/root/.docker/config.json",
    "/home/*/.docker/config.json",
    "/root/.kube/config",
    "/etc/kubernetes/admin.conf",
    "/proc/sys/kernel/core_pattern",
    "/sys/fs/cgroup/*/release_agent",
    "/sys/fs/cgroup/release_agent",
];
