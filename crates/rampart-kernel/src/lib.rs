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
mod cgroup;
mod decode;
mod error;
mod probe;
mod procconn;
mod sensor;
mod syscalls;

pub use cgroup::{cgroup_layout, CgroupLayout};
pub use decode::join as join_path;
pub use error::KernelError;
pub use probe::{Capabilities, Probe};
pub use procconn::ProcConnector;
pub use sensor::{SensitiveNames, Sensor, SensorConfig, SensorCounters};
pub use syscalls::REPORTED_SYSCALLS;

/// Paths whose reads are reported by default (`sensitive_paths` in the agent configuration).
pub const DEFAULT_SENSITIVE_PATHS: [&str; 16] = [
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/security/opasswd",
    "/root/.ssh/*",
    "/home/*/.ssh/*",
    "/etc/ssh/ssh_host_*_key",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/proc/*/mem",
    "/proc/kcore",
    "/dev/mem",
    "/root/.aws/credentials",
    "/root/.docker/config.json",
    "/proc/sys/kernel/core_pattern",
    "/sys/fs/cgroup/*/release_agent",
];
