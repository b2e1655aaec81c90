//! Rust mirrors of `bpf/rampart.h`, the ABI between the BPF programs and user space.
//!
//! Every struct here is `#[repr(C)]` with the exact field order, types and padding of its C
//! twin; the `const` assertions below and the `_Static_assert`s in the header pin the sizes, so a
//! change on one side that is not made on the other fails the build, and the test
//! `rust_mirrors_match_the_c_header` compiles the header and checks every field offset and
//! constant too.

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
pub const RP_SOCKET: u32 = 27;
pub const RP_PAYLOAD: u32 = 28;
pub const RP_IO_URING: u32 = 29;

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
    /// `RP_PAYLOAD`: bytes of payload in the segment (`len` were captured).
    pub seg_len: u32,
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
    pub payload_events: u32,
    pub dns_events: u32,
    pub name_filter: [u64; 4],
    pub dir_filter: [u64; 4],
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
const _: () = assert!(std::mem::size_of::<RpConfig>() == 120);
const _: () = assert!(std::mem::size_of::<NameKey>() == 32);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi_check::{check, layout};

    #[test]
    fn rust_mirrors_match_the_c_header() {
        let layouts = vec![
            layout!("rp_str", RpStr, 0, { "off" => off, "len" => len }),
            layout!("rp_header", RpHeader, 0, {
                "ktime_ns" => ktime_ns, "cgroup_id" => cgroup_id, "cgroup_v1_id" => cgroup_v1_id,
                "ret" => ret, "type" => kind, "size" => size, "pid" => pid, "tid" => tid,
                "ppid" => ppid, "uid" => uid, "gid" => gid, "syscall" => syscall,
                "mntns" => mntns, "pad" => pad, "comm" => comm,
            }),
            layout!("rp_fdinfo", RpFdInfo, 0, { "mode" => mode, "family" => family, "rdev" => rdev }),
            layout!("rp_exec", RpExec, 0, {
                "h" => h, "euid" => euid, "egid" => egid, "loginuid" => loginuid, "tty" => tty,
                "cap_effective" => cap_effective, "cap_permitted" => cap_permitted,
                "start_ns" => start_ns, "exe_nlink" => exe_nlink,
                "args_truncated" => args_truncated, "vpid" => vpid, "args_len" => args_len,
                "stdin_info" => stdin_info, "stdout_info" => stdout_info,
                "filename" => filename, "exe" => exe, "args" => args, "cwd" => cwd,
            }),
            layout!("rp_sys", RpSys, 0, { "h" => h, "a" => a, "s" => s, "pad" => pad }),
            layout!("rp_net", RpNet, 0, {
                "h" => h, "family" => family, "sock_type" => sock_type, "protocol" => protocol,
                "lport" => lport, "rport" => rport, "pad0" => pad0, "fd" => fd,
                "laddr" => laddr, "raddr" => raddr, "unix_path" => unix_path, "pad1" => pad1,
            }),
            layout!("rp_dns", RpDns, 0, {
                "h" => h, "family" => family, "ingress" => ingress, "sport" => sport,
                "dport" => dport, "saddr" => saddr, "daddr" => daddr, "len" => len,
                "seg_len" => seg_len,
            }),
            layout!("rp_config", RpConfig, 0, {
                "self_tgid" => self_tgid, "containers_only" => containers_only,
                "host_mntns" => host_mntns, "v1_subsys" => v1_subsys,
                "wakeup_bytes" => wakeup_bytes, "file_events" => file_events,
                "net_events" => net_events, "name_len_mask" => name_len_mask,
                "dir_len_mask" => dir_len_mask, "payload_events" => payload_events,
                "dns_events" => dns_events, "name_filter" => name_filter,
                "dir_filter" => dir_filter,
            }),
        ];
        let constants: Vec<(&'static str, i64)> = [
            ("RP_EXEC", RP_EXEC),
            ("RP_FORK", RP_FORK),
            ("RP_EXIT", RP_EXIT),
            ("RP_OPEN", RP_OPEN),
            ("RP_UNLINK", RP_UNLINK),
            ("RP_RENAME", RP_RENAME),
            ("RP_CHMOD", RP_CHMOD),
            ("RP_CHOWN", RP_CHOWN),
            ("RP_MOUNT", RP_MOUNT),
            ("RP_UMOUNT", RP_UMOUNT),
            ("RP_PIVOT_ROOT", RP_PIVOT_ROOT),
            ("RP_MEMFD", RP_MEMFD),
            ("RP_CONNECT", RP_CONNECT),
            ("RP_ACCEPT", RP_ACCEPT),
            ("RP_BIND", RP_BIND),
            ("RP_LISTEN", RP_LISTEN),
            ("RP_SETUID", RP_SETUID),
            ("RP_SETGID", RP_SETGID),
            ("RP_CAPSET", RP_CAPSET),
            ("RP_PTRACE", RP_PTRACE),
            ("RP_UNSHARE", RP_UNSHARE),
            ("RP_SETNS", RP_SETNS),
            ("RP_MODULE", RP_MODULE),
            ("RP_BPF", RP_BPF),
            ("RP_KILL", RP_KILL),
            ("RP_DNS", RP_DNS),
            ("RP_SOCKET", RP_SOCKET),
            ("RP_PAYLOAD", RP_PAYLOAD),
            ("RP_IO_URING", RP_IO_URING),
            ("RP_CNT_EVENTS", RP_CNT_EVENTS),
            ("RP_CNT_DROPS", RP_CNT_DROPS),
            ("RP_CNT_FILTERED", RP_CNT_FILTERED),
            ("RP_CNT_TRUNCATED", RP_CNT_TRUNCATED),
        ]
        .into_iter()
        .map(|(n, v)| (n, i64::from(v)))
        .chain(
            // The name filter's bit, computed by the header's macro and by user space.
            [
                ("RP_NAME_BIT(6, 's', 'w')", &b"shadow"[..]),
                ("RP_NAME_BIT(10, 'i', '9')", b"id_ed25519"),
                ("RP_NAME_BIT(31, 255, 255)", &[255u8; 31]),
            ]
            .map(|(n, name)| {
                let bit = crate::sensor::name_bit(name).expect("a filterable name");
                (n, i64::from(bit))
            }),
        )
        .collect();
        check("rampart.h", &layouts, &constants);
    }
}
