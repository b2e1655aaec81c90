//! Rust mirrors of `bpf/enforce.h`, the ABI of `bpf/enforce.bpf.c`: constants, map keys,
//! values and the event record. Each struct is `#[repr(C)]` with the C field order and padding.
//! The const assertions below pin the sizes at compile time; the test
//! `rust_mirrors_match_the_c_header` compiles the header with the host C compiler and checks
//! every size, every field offset and every constant against this file.

use bytemuck::{Pod, Zeroable};

pub const RE_NONE: u8 = 0;
pub const RE_ALLOW: u8 = 1;
pub const RE_AUDIT: u8 = 2;
pub const RE_DENY: u8 = 3;

pub const RE_F_EXEC: u32 = 1;
pub const RE_F_EXEC_NAMES: u32 = 2;
pub const RE_F_EXEC_PATHS: u32 = 4;
pub const RE_F_EXEC_FILES: u32 = 8;
pub const RE_F_EGRESS: u32 = 16;
pub const RE_F_INGRESS: u32 = 32;
pub const RE_F_ISOLATED: u32 = 64;
pub const RE_F_AUDIT_ONLY: u32 = 128;

pub const RE_EV_EXEC: u32 = 1;
pub const RE_EV_EXEC_UNKNOWN: u32 = 2;
pub const RE_EV_NET: u32 = 3;

pub const RE_MECH_TP_BTF: u8 = 1;
pub const RE_MECH_RAW_TP: u8 = 2;
pub const RE_MECH_LSM: u8 = 3;
pub const RE_MECH_CONNECT4: u8 = 4;
pub const RE_MECH_CONNECT6: u8 = 5;
pub const RE_MECH_SENDMSG4: u8 = 6;
pub const RE_MECH_SENDMSG6: u8 = 7;
pub const RE_MECH_SKB_INGRESS: u8 = 8;
pub const RE_MECH_SKB_EGRESS: u8 = 9;

pub const RE_WHY_DEFAULT: u8 = 0;
pub const RE_WHY_RULE: u8 = 1;
pub const RE_WHY_ISOLATED: u8 = 2;
pub const RE_WHY_CHANGED: u8 = 3;

pub const RE_ST_EXEC_DENIED: u32 = 0;
pub const RE_ST_EXEC_AUDITED: u32 = 1;
pub const RE_ST_NET_DENIED: u32 = 2;
pub const RE_ST_NET_AUDITED: u32 = 3;
pub const RE_ST_EVENTS_LOST: u32 = 4;
pub const RE_ST_EXEC_CHECKED: u32 = 5;
pub const RE_ST_NET_CHECKED: u32 = 6;
pub const RE_ST_MESH_REDIRECTED: u32 = 7;

pub const RE_NAME_LEN: usize = 60;
pub const RE_NAME_FILE: u8 = b'f';
pub const RE_NAME_COMM: u8 = b'c';
pub const RE_PATH_LEN: usize = 252;
pub const RE_NET_MAX: usize = 24;

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct ReTarget {
    pub policy: u32,
    pub flags: u32,
    pub exec_default: u8,
    pub egress_default: u8,
    pub ingress_default: u8,
    pub pad: [u8; 5],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct ReVerdict {
    pub rule_id: u32,
    pub action: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ReNameKey {
    pub policy_be: u32,
    pub name: [u8; RE_NAME_LEN],
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RePathKey {
    pub policy_be: u32,
    pub path: [u8; RE_PATH_LEN],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Hash)]
pub struct ReFileKey {
    pub dev: u64,
    pub ino: u64,
    pub policy: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ReFileVal {
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub rule_id: u32,
    pub action: u8,
    pub pad: [u8; 7],
}

/// The data part of the NET_RULES key (aya's `lpm_trie::Key` adds the prefix length).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ReNetKey {
    pub policy_be: u32,
    pub dir: u8,
    pub family: u8,
    pub pad: u16,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct RePortRule {
    pub port_lo: u16,
    pub port_hi: u16,
    pub proto: u8,
    pub action: u8,
    pub rule_id: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ReNetVal {
    pub count: u32,
    pub pad: u32,
    pub r: [RePortRule; RE_NET_MAX],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ReIsoKey {
    pub cgroup_hi_be: u32,
    pub cgroup_lo_be: u32,
    pub family: u8,
    pub pad: [u8; 3],
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Hash)]
pub struct ReRedirKey {
    pub cgroup_id: u64,
    pub family: u8,
    pub pad: u8,
    /// Network byte order.
    pub port: u16,
    pub pad2: u32,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct ReRedirVal {
    pub addr: [u8; 16],
    /// Network byte order.
    pub port: u16,
    pub pad: [u16; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq, Hash)]
pub struct ReSeenKey {
    pub dev: u64,
    pub ino: u64,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub policy: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct ReEvent {
    pub ktime_ns: u64,
    pub cgroup_id: u64,
    pub kind: u32,
    pub policy: u32,
    pub rule_id: u32,
    pub action: u8,
    pub mechanism: u8,
    pub reason: u8,
    pub dir: u8,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub family: u16,
    pub proto: u16,
    pub lport: u16,
    pub rport: u16,
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    pub dev: u64,
    pub ino: u64,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub path_len: u32,
    pub comm: [u8; 16],
    pub name: [u8; 64],
    pub file_name: [u8; 64],
    pub path: [u8; 256],
}

// Sizes of the C structs (the LPM keys without their leading `prefixlen`).
const _: () = assert!(std::mem::size_of::<ReTarget>() == 16);
const _: () = assert!(std::mem::size_of::<ReVerdict>() == 8);
const _: () = assert!(std::mem::size_of::<ReNameKey>() == 68 - 4);
const _: () = assert!(std::mem::size_of::<RePathKey>() == 260 - 4);
const _: () = assert!(std::mem::size_of::<ReFileKey>() == 24);
const _: () = assert!(std::mem::size_of::<ReFileVal>() == 24);
const _: () = assert!(std::mem::size_of::<ReNetKey>() == 28 - 4);
const _: () = assert!(std::mem::size_of::<RePortRule>() == 8);
const _: () = assert!(std::mem::size_of::<ReNetVal>() == 8 + 8 * RE_NET_MAX);
const _: () = assert!(std::mem::size_of::<ReIsoKey>() == 32 - 4);
const _: () = assert!(std::mem::size_of::<ReSeenKey>() == 32);
const _: () = assert!(std::mem::size_of::<ReRedirKey>() == 32);
const _: () = assert!(std::mem::size_of::<ReRedirVal>() == 24);
const _: () = assert!(std::mem::size_of::<ReEvent>() == 520);

// bytemuck derives Pod only for arrays of a few lengths; these two are written out. Both are a
// u32 followed by bytes, with sizes that are multiples of 4 (asserted above): no padding, every
// bit pattern valid.
// SAFETY: see above.
unsafe impl Zeroable for ReNameKey {}
// SAFETY: see above.
unsafe impl Pod for ReNameKey {}
// SAFETY: see above.
unsafe impl Zeroable for RePathKey {}
// SAFETY: see above.
unsafe impl Pod for RePathKey {}

// SAFETY: plain-old-data structs (bytemuck::Pod), as aya requires of map keys and values.
unsafe impl aya::Pod for ReTarget {}
unsafe impl aya::Pod for ReVerdict {}
unsafe impl aya::Pod for ReNameKey {}
unsafe impl aya::Pod for RePathKey {}
unsafe impl aya::Pod for ReFileKey {}
unsafe impl aya::Pod for ReFileVal {}
unsafe impl aya::Pod for ReNetKey {}
unsafe impl aya::Pod for ReNetVal {}
unsafe impl aya::Pod for ReIsoKey {}
unsafe impl aya::Pod for ReSeenKey {}
unsafe impl aya::Pod for ReRedirKey {}
unsafe impl aya::Pod for ReRedirVal {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi_check::{check, layout, Layout};

    // LPM keys lack the C `prefixlen` (aya's `Key` adds it): their shift is 4.
    fn layouts() -> Vec<Layout> {
        vec![
            layout!("re_target", ReTarget, 0, {
                "policy" => policy, "flags" => flags, "exec_default" => exec_default,
                "egress_default" => egress_default, "ingress_default" => ingress_default,
                "pad" => pad,
            }),
            layout!("re_verdict", ReVerdict, 0, {
                "rule_id" => rule_id, "action" => action, "pad" => pad,
            }),
            layout!("re_name_key", ReNameKey, 4, { "policy_be" => policy_be, "name" => name }),
            layout!("re_path_key", RePathKey, 4, { "policy_be" => policy_be, "path" => path }),
            layout!("re_file_key", ReFileKey, 0, {
                "dev" => dev, "ino" => ino, "policy" => policy, "pad" => pad,
            }),
            layout!("re_file_val", ReFileVal, 0, {
                "ctime_sec" => ctime_sec, "ctime_nsec" => ctime_nsec, "rule_id" => rule_id,
                "action" => action, "pad" => pad,
            }),
            layout!("re_net_key", ReNetKey, 4, {
                "policy_be" => policy_be, "dir" => dir, "family" => family, "pad" => pad,
                "addr" => addr,
            }),
            layout!("re_port_rule", RePortRule, 0, {
                "port_lo" => port_lo, "port_hi" => port_hi, "proto" => proto,
                "action" => action, "rule_id" => rule_id,
            }),
            layout!("re_net_val", ReNetVal, 0, { "count" => count, "pad" => pad, "r" => r }),
            layout!("re_iso_key", ReIsoKey, 4, {
                "cgroup_hi_be" => cgroup_hi_be, "cgroup_lo_be" => cgroup_lo_be,
                "family" => family, "pad" => pad, "addr" => addr,
            }),
            layout!("re_redir_key", ReRedirKey, 0, {
                "cgroup_id" => cgroup_id, "family" => family, "pad" => pad, "port" => port,
                "pad2" => pad2, "addr" => addr,
            }),
            layout!("re_redir_val", ReRedirVal, 0, { "addr" => addr, "port" => port, "pad" => pad }),
            layout!("re_seen_key", ReSeenKey, 0, {
                "dev" => dev, "ino" => ino, "ctime_sec" => ctime_sec,
                "ctime_nsec" => ctime_nsec, "policy" => policy,
            }),
            layout!("re_event", ReEvent, 0, {
                "ktime_ns" => ktime_ns, "cgroup_id" => cgroup_id, "type" => kind,
                "policy" => policy, "rule_id" => rule_id, "action" => action,
                "mechanism" => mechanism, "reason" => reason, "dir" => dir, "pid" => pid,
                "tid" => tid, "ppid" => ppid, "uid" => uid, "family" => family,
                "proto" => proto, "lport" => lport, "rport" => rport, "laddr" => laddr,
                "raddr" => raddr, "dev" => dev, "ino" => ino, "ctime_sec" => ctime_sec,
                "ctime_nsec" => ctime_nsec, "path_len" => path_len, "comm" => comm,
                "name" => name, "file_name" => file_name, "path" => path,
            }),
        ]
    }

    fn constants() -> Vec<(&'static str, i64)> {
        let mut v: Vec<(&'static str, i64)> = vec![
            ("RE_NONE", RE_NONE.into()),
            ("RE_ALLOW", RE_ALLOW.into()),
            ("RE_AUDIT", RE_AUDIT.into()),
            ("RE_DENY", RE_DENY.into()),
            ("RE_F_EXEC", RE_F_EXEC.into()),
            ("RE_F_EXEC_NAMES", RE_F_EXEC_NAMES.into()),
            ("RE_F_EXEC_PATHS", RE_F_EXEC_PATHS.into()),
            ("RE_F_EXEC_FILES", RE_F_EXEC_FILES.into()),
            ("RE_F_EGRESS", RE_F_EGRESS.into()),
            ("RE_F_INGRESS", RE_F_INGRESS.into()),
            ("RE_F_ISOLATED", RE_F_ISOLATED.into()),
            ("RE_F_AUDIT_ONLY", RE_F_AUDIT_ONLY.into()),
            ("RE_EV_EXEC", RE_EV_EXEC.into()),
            ("RE_EV_EXEC_UNKNOWN", RE_EV_EXEC_UNKNOWN.into()),
            ("RE_EV_NET", RE_EV_NET.into()),
            ("RE_MECH_TP_BTF", RE_MECH_TP_BTF.into()),
            ("RE_MECH_RAW_TP", RE_MECH_RAW_TP.into()),
            ("RE_MECH_LSM", RE_MECH_LSM.into()),
            ("RE_MECH_CONNECT4", RE_MECH_CONNECT4.into()),
            ("RE_MECH_CONNECT6", RE_MECH_CONNECT6.into()),
            ("RE_MECH_SENDMSG4", RE_MECH_SENDMSG4.into()),
            ("RE_MECH_SENDMSG6", RE_MECH_SENDMSG6.into()),
            ("RE_MECH_SKB_INGRESS", RE_MECH_SKB_INGRESS.into()),
            ("RE_MECH_SKB_EGRESS", RE_MECH_SKB_EGRESS.into()),
            ("RE_WHY_DEFAULT", RE_WHY_DEFAULT.into()),
            ("RE_WHY_RULE", RE_WHY_RULE.into()),
            ("RE_WHY_ISOLATED", RE_WHY_ISOLATED.into()),
            ("RE_WHY_CHANGED", RE_WHY_CHANGED.into()),
            ("RE_ST_EXEC_DENIED", RE_ST_EXEC_DENIED.into()),
            ("RE_ST_EXEC_AUDITED", RE_ST_EXEC_AUDITED.into()),
            ("RE_ST_NET_DENIED", RE_ST_NET_DENIED.into()),
            ("RE_ST_NET_AUDITED", RE_ST_NET_AUDITED.into()),
            ("RE_ST_EVENTS_LOST", RE_ST_EVENTS_LOST.into()),
            ("RE_ST_EXEC_CHECKED", RE_ST_EXEC_CHECKED.into()),
            ("RE_ST_NET_CHECKED", RE_ST_NET_CHECKED.into()),
            ("RE_ST_MESH_REDIRECTED", RE_ST_MESH_REDIRECTED.into()),
            ("RE_NAME_FILE", RE_NAME_FILE.into()),
            ("RE_NAME_COMM", RE_NAME_COMM.into()),
        ];
        for (n, x) in [
            ("RE_NAME_LEN", RE_NAME_LEN),
            ("RE_PATH_LEN", RE_PATH_LEN),
            ("RE_NET_MAX", RE_NET_MAX),
        ] {
            v.push((n, i64::try_from(x).unwrap_or(i64::MAX)));
        }
        v
    }

    /// The header is the source of truth: every size, offset and constant must be equal.
    #[test]
    fn rust_mirrors_match_the_c_header() {
        check("enforce.h", &layouts(), &constants());
    }
}
