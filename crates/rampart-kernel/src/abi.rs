//! Rust mirrors of `bpf/rampart.h`, the ABI between the BPF programs and user space.
//!
//! Every struct here is `#[repr(C)]` with the exact field order, types and padding of its C
//! twin; the `const` assertions below and the `_Static_assert`s in the header pin the sizes, so a
//! change on one side that is not made on the other fails the build.

use bytemuck::{Pod, Zeroable};

pub const RP_EXEC: u32 = 1;
pub const RP_FORK: u32 = 2;
pub const RP_EXIT: u32 = 3;
pub const RP_OPEN: u32 = 4;
pub const RP_UNLINK: u32 = 5;
pub const RP_RENAME: u32 = 6;
pub const RP_CHMOD: u32 = 7;
pub const RP_CHOWN: u32 = 8;
pub const RP_MOUNT: u32 = 9;
pub const RP_UMOUNT: u32 = 10;
pub const RP_PIVOT_ROOT: u32 = 11;
pub const RP_MEMFD: u32 = 12;
pub const RP_CONNECT: u32 = 13;
pub const RP_ACCEPT: u32 = 14;
pub const RP_BIND: u32 = 15;
pub const RP_LISTEN: u32 = 16;
pub const RP_SETUID: u32 = 17;
pub const RP_SETGID: u32 = 18;
pub const RP_CAPSET: u32 = 19;
pub const RP_PTRACE: u32 = 20;
pub const RP_UNSHARE: u32 = 21;
pub const RP_SETNS: u32 = 22;
pub const RP_MODULE: u32 = 23;
pub const RP_BPF: u32 = 24;
pub const RP_KILL: u32 = 25;
pub const RP_DNS: u32 = 26;

pub const RP_CNT_EVENTS: u32 = 0;
pub const RP_CNT_DROPS: u32 = 1;
pub const RP_CNT_FILTERED: u32 = 2;
pub const RP_CNT_TRUNCATED: u32 = 3;

/// `struct rp_str`: a string inside a record.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RpStr {
    pub off: u16,
    pub len: u16,
}

/// `struct rp_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RpHeader {
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub cgroup_v1_id: u64,
    pub ret: i64,
    pub kind: u32,
    pub size: u32,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub syscall: u32,
    pub mntns: u32,
    pub pad: u32,
    pub comm: [u8; 16],
}

/// `struct rp_fdinfo`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RpFdInfo {
    pub mode: u16,
    pub family: u16,
    pub rdev: u32,
}

/// `struct rp_exec`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RpExec {
    pub h: RpHeader,
    pub euid: u32,
    pub egid: u32,
    pub loginuid: u32,
    pub tty: u32,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub start_ns: u64,
    pub exe_nlink: u32,
    pub args_truncated: u32,
    pub vpid: u32,
    pub args_len: u32,
    pub stdin_info: RpFdInfo,
    pub stdout_info: RpFdInfo,
    pub filename: RpStr,
    pub exe: RpStr,
    pub args: RpStr,
    pub cwd: RpStr,
}

/// `struct rp_sys`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RpSys {
    pub h: RpHeader,
    pub a: [u64; 6],
    pub s: [RpStr; 3],
    pub pad: u32,
}

/// `struct rp_net`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RpNet {
    pub h: RpHeader,
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    pub lport: u16,
    pub rport: u16,
    /// 1 when `unix_path` is in the abstract namespace.
    pub pad0: u16,
    pub fd: i32,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    pub unix_path: RpStr,
    pub pad1: u32,
}

/// `struct rp_dns`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RpDns {
    pub h: RpHeader,
    pub family: u16,
    pub ingress: u16,
    pub sport: u16,
    pub dport: u16,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub len: u32,
    pub pad: u32,
}

/// `struct rp_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct RpConfig {
    pub self_tgid: u32,
    pub containers_only: u32,
    pub host_mntns: u32,
    pub v1_subsys: u32,
    pub wakeup_bytes: u64,
    pub file_events: u32,
    pub net_events: u32,
    pub name_len_mask: u64,
    pub dir_len_mask: u64,
}

// SAFETY: RpConfig is #[repr(C)], made only of integers, without padding (asserted below).
unsafe impl aya::Pod for RpConfig {}

/// `struct name_key`: a key of SENSITIVE_NAMES.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct NameKey {
    pub name: [u8; 32],
}

// SAFETY: a plain byte array.
unsafe impl aya::Pod for NameKey {}

const _: () = assert!(std::mem::size_of::<RpHeader>() == 88);
const _: () = assert!(std::mem::size_of::<RpExec>() == 88 + 88);
const _: () = assert!(std::mem::size_of::<RpSys>() == 88 + 64);
const _: () = assert!(std::mem::size_of::<RpNet>() == 88 + 56);
const _: () = assert!(std::mem::size_of::<RpDns>() == 88 + 48);
const _: () = assert!(std::mem::size_of::<RpConfig>() == 48);
const _: () = assert!(std::mem::size_of::<NameKey>() == 32);
