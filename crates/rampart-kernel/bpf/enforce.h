/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The ABI between bpf/enforce.bpf.c and user space: constants, map keys and values, the event
 * record. The one source of truth: src/enforce/abi.rs mirrors it, and the test
 * `enforce::abi::tests::rust_mirrors_match_the_c_header` compiles this header with the host C
 * compiler and compares every size, field offset and constant with the Rust side.
 *
 * Needs the __u8..__s64 types: vmlinux.h in the BPF program, <linux/types.h> elsewhere.
 */
#ifndef RAMPART_ENFORCE_H
#define RAMPART_ENFORCE_H


#define RE_ABI_VERSION 2

/* Verdicts, ordered by severity: a larger one wins when several rules match. */
#define RE_NONE 0
#define RE_ALLOW 1
#define RE_AUDIT 2 /* allowed, but reported as a would-be denial */
#define RE_DENY 3

/* struct re_target.flags */
#define RE_F_EXEC 1          /* exec rules or a non-allow exec default */
#define RE_F_EXEC_NAMES 2    /* the policy has name rules */
#define RE_F_EXEC_PATHS 4    /* ... path rules (the path walk is needed) */
#define RE_F_EXEC_FILES 8    /* ... hash rules resolved to files */
#define RE_F_EGRESS 16       /* egress rules or a non-allow egress default */
#define RE_F_INGRESS 32      /* ingress rules or a non-allow ingress default */
#define RE_F_ISOLATED 64     /* cut off: only loopback and ISOLATE_ALLOW */
#define RE_F_AUDIT_ONLY 128  /* report denials, enforce none (policy rollout) */

/* struct re_event.type */
#define RE_EV_EXEC 1         /* an exec was denied (or audited) */
#define RE_EV_EXEC_UNKNOWN 2 /* exec of a file with no known hash, in a policy with hash rules */
#define RE_EV_NET 3          /* a connection or datagram was denied (or audited) */

/* struct re_event.mechanism */
#define RE_MECH_TP_BTF 1     /* bpf_send_signal(SIGKILL) from tp_btf/sched_process_exec */
#define RE_MECH_RAW_TP 2     /* the same from raw_tp/sched_process_exec */
#define RE_MECH_LSM 3        /* -EPERM from lsm/bprm_check_security */
#define RE_MECH_CONNECT4 4
#define RE_MECH_CONNECT6 5
#define RE_MECH_SENDMSG4 6
#define RE_MECH_SENDMSG6 7
#define RE_MECH_SKB_INGRESS 8
#define RE_MECH_SKB_EGRESS 9

/* struct re_event.reason: what decided */
#define RE_WHY_DEFAULT 0     /* no rule matched: the policy's default */
#define RE_WHY_RULE 1        /* rule_id matched */
#define RE_WHY_ISOLATED 2    /* the container is isolated */
#define RE_WHY_CHANGED 3     /* the file changed since it was hashed (allow rule not trusted) */

/* STATS indexes */
#define RE_ST_EXEC_DENIED 0
#define RE_ST_EXEC_AUDITED 1
#define RE_ST_NET_DENIED 2
#define RE_ST_NET_AUDITED 3
#define RE_ST_EVENTS_LOST 4
#define RE_ST_EXEC_CHECKED 5
#define RE_ST_NET_CHECKED 6
#define RE_ST_MESH_REDIRECTED 7 /* connects rewritten to the mesh proxy (RE_MESH_REDIRECT) */
#define RE_ST_MAX 8

#define RE_NAME_LEN 60 /* kind byte + name + NUL */
#define RE_NAME_FILE 'f'
#define RE_NAME_COMM 'c'
#define RE_PATH_LEN 252
#define RE_NET_MAX 24
#define RE_MAX_LEVEL 8

/* What applies to one cgroup (a container). */
struct re_target {
	__u32 policy;          /* policy id: the first field of every rule key */
	__u32 flags;           /* RE_F_* */
	__u8 exec_default;     /* RE_ALLOW, RE_AUDIT or RE_DENY */
	__u8 egress_default;
	__u8 ingress_default;
	__u8 pad[5];
};
_Static_assert(sizeof(struct re_target) == 16, "re_target size");

struct re_verdict {
	__u32 rule_id;         /* user space's rule number, reported in events */
	__u8 action;           /* RE_ALLOW / RE_DENY */
	__u8 pad[3];
};
_Static_assert(sizeof(struct re_verdict) == 8, "re_verdict size");

/* LPM key of EXEC_NAMES: policy (big-endian), the kind of name (RE_NAME_*), then the name; an
 * exact name includes its NUL. */
struct re_name_key {
	__u32 prefixlen;
	__u32 policy_be;
	char name[RE_NAME_LEN];
};
_Static_assert(sizeof(struct re_name_key) == 68, "re_name_key size");

struct re_path_key {
	__u32 prefixlen;
	__u32 policy_be;
	char path[RE_PATH_LEN];
};
_Static_assert(sizeof(struct re_path_key) == 260, "re_path_key size");

struct re_file_key {
	__u64 dev;             /* kernel dev_t of the superblock: major << 20 | minor */
	__u64 ino;
	__u32 policy;
	__u32 pad;
};
_Static_assert(sizeof(struct re_file_key) == 24, "re_file_key size");

struct re_file_val {
	__s64 ctime_sec;       /* the inode's ctime when user space hashed it */
	__u32 ctime_nsec;
	__u32 rule_id;
	__u8 action;           /* RE_ALLOW / RE_DENY / RE_NONE (hashed, no rule) */
	__u8 pad[7];
};
_Static_assert(sizeof(struct re_file_val) == 24, "re_file_val size");

/* LPM key of NET_RULES: 64 fixed bits (policy, direction, family), then the address. */
struct re_net_key {
	__u32 prefixlen;
	__u32 policy_be;
	__u8 dir;              /* 0 egress, 1 ingress */
	__u8 family;           /* 4 or 6 */
	__u16 pad;
	__u8 addr[16];         /* IPv4 in the first 4 bytes */
};
_Static_assert(sizeof(struct re_net_key) == 28, "re_net_key size");

struct re_port_rule {
	__u16 port_lo;         /* host byte order; 0..65535 is every port */
	__u16 port_hi;
	__u8 proto;            /* 0 any, 6 TCP, 17 UDP */
	__u8 action;           /* RE_ALLOW / RE_DENY */
	__u16 rule_id;
};
_Static_assert(sizeof(struct re_port_rule) == 8, "re_port_rule size");

struct re_net_val {
	__u32 count;
	__u32 pad;
	struct re_port_rule r[RE_NET_MAX];
};
_Static_assert(sizeof(struct re_net_val) == 8 + 8 * RE_NET_MAX, "re_net_val size");

/* LPM key of ISOLATE_ALLOW: 96 fixed bits (cgroup id, family), then the address. The data of
 * an LPM key starts right after prefixlen, so every field here is 4-byte aligned from there. */
struct re_iso_key {
	__u32 prefixlen;
	__u32 cgroup_hi_be;
	__u32 cgroup_lo_be;
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};
_Static_assert(sizeof(struct re_iso_key) == 32, "re_iso_key size");

struct re_flow_key {
	__u64 cookie;          /* socket cookie */
	__u8 addr[16];         /* the peer */
	__u16 port;            /* the peer's port, host byte order */
	__u16 pad[3];
};
_Static_assert(sizeof(struct re_flow_key) == 32, "re_flow_key size");

/* RE_MESH_REDIRECT: a TCP connect from cgroup `cgroup_id` to (family, addr, port) is rewritten
 * to the mesh proxy's listener in the value. Only after the network policy allowed the original
 * destination: a denied connect is never redirected. */
struct re_redir_key {
	__u64 cgroup_id;
	__u8 family;           /* 4 or 6 */
	__u8 pad;
	__u16 port;            /* network byte order, as in bpf_sock_addr.user_port */
	__u32 pad2;
	__u8 addr[16];         /* IPv4 in the first 4 bytes, rest zero */
};
_Static_assert(sizeof(struct re_redir_key) == 32, "re_redir_key size");

struct re_redir_val {
	__u8 addr[16];         /* the proxy listener, same family as the key */
	__u16 port;            /* network byte order */
	__u16 pad[3];
};
_Static_assert(sizeof(struct re_redir_val) == 24, "re_redir_val size");

struct re_seen_key {
	__u64 dev;
	__u64 ino;
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 policy;
};
_Static_assert(sizeof(struct re_seen_key) == 32, "re_seen_key size");

struct re_event {
	__u64 ktime_ns;
	__u64 cgroup_id;       /* the cgroup whose TARGETS entry applied */
	__u32 type;            /* RE_EV_* */
	__u32 policy;
	__u32 rule_id;
	__u8 action;           /* RE_DENY (enforced) or RE_AUDIT (reported only) */
	__u8 mechanism;        /* RE_MECH_* */
	__u8 reason;           /* RE_WHY_* */
	__u8 dir;              /* net: 0 egress, 1 ingress */
	__u32 pid;             /* tgid; 0 when the packet has no task (ingress) */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u16 family;          /* net: 4 or 6 */
	__u16 proto;           /* net: 6 TCP, 17 UDP, ... */
	__u16 lport;           /* net: local port, host byte order */
	__u16 rport;           /* net: remote port */
	__u8 laddr[16];
	__u8 raddr[16];
	__u64 dev;             /* exec: the executable's device (kernel dev_t) and inode */
	__u64 ino;
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 path_len;        /* exec: bytes of `path` used (0: not computed) */
	char comm[16];
	char name[64];         /* exec: the name as executed (comm, <= 15 bytes); LSM: the path given */
	char file_name[64];    /* exec: the file's own name (symlinks resolved) */
	char path[256];        /* exec: the executable's path, NUL-terminated */
};
_Static_assert(sizeof(struct re_event) == 520, "re_event size");

#endif /* RAMPART_ENFORCE_H */
