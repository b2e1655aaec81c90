/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The ABI between Rampart's BPF programs and user space: the records written to the EVENTS ring
 * buffer, the counters, and the load-time configuration.
 *
 * Rules of this file:
 *  - fixed-size little-endian integers only, no pointers, explicit padding;
 *  - every struct has a _Static_assert on its size, and `src/abi.rs` mirrors each struct with
 *    #[repr(C)] and asserts the same sizes: change both together;
 *  - a record starts with struct rp_header; `size` is the whole record, strings included;
 *  - strings are referenced by struct rp_str {off, len}: `off` counts from the record's first
 *    byte, `len` excludes the terminating NUL; len == 0 means absent.
 */
#ifndef RAMPART_H
#define RAMPART_H

#define RP_ABI_VERSION 1

/* Bounds on variable-length data (bytes, NUL included). */
#define RP_ARGS_MAX 4096      /* argv of an exec */
#define RP_PATH_MAX 4096      /* one path */
#define RP_NAME_MAX 256       /* one file name component or short string */
#ifndef RP_PATH_DEPTH
#define RP_PATH_DEPTH 32      /* path components walked up from a dentry (more does not verify in 1M insns) */
#endif
#define RP_DNS_MAX 512        /* DNS payload captured from one UDP datagram */
#define RP_PAYLOAD_MAX 512    /* TCP payload captured from one segment (RP_PAYLOAD) */

enum rp_type {
	RP_EXEC = 1,
	RP_FORK = 2,
	RP_EXIT = 3,
	RP_OPEN = 4,
	RP_UNLINK = 5,
	RP_RENAME = 6,
	RP_CHMOD = 7,
	RP_CHOWN = 8,
	RP_MOUNT = 9,
	RP_UMOUNT = 10,
	RP_PIVOT_ROOT = 11,
	RP_MEMFD = 12,
	RP_CONNECT = 13,
	RP_ACCEPT = 14,
	RP_BIND = 15,
	RP_LISTEN = 16,
	RP_SETUID = 17,
	RP_SETGID = 18,
	RP_CAPSET = 19,
	RP_PTRACE = 20,
	RP_UNSHARE = 21,
	RP_SETNS = 22,
	RP_MODULE = 23,
	RP_BPF = 24,
	RP_KILL = 25,
	RP_DNS = 26,
	RP_SOCKET = 27,        /* struct rp_sys: a[0] domain, a[1] type (with flags), a[2] protocol */
	RP_PAYLOAD = 28,       /* struct rp_dns layout, `len` bytes of TCP payload follow */
	RP_IO_URING = 29,      /* struct rp_sys: io_uring_setup: a[0] entries, a[1] IORING_SETUP_* flags
				* (0 when the params could not be read) */
};

/* Indexes of the per-CPU COUNTERS array. */
enum rp_counter {
	RP_CNT_EVENTS = 0,      /* records written to the ring buffer */
	RP_CNT_DROPS = 1,       /* records lost: ring buffer full */
	RP_CNT_FILTERED = 2,    /* opens filtered in the kernel (read-only, not sensitive) */
	RP_CNT_TRUNCATED = 3,   /* records whose strings were cut to the bounds above */
	RP_CNT_MAX = 4,
};

struct rp_str {
	__u16 off;
	__u16 len;
};

struct rp_header {
	__u64 ktime_ns;        /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;       /* cgroup v2 id of the task */
	__u64 cgroup_v1_id;    /* kernfs id of the task's cgroup in the watched v1 hierarchy, or 0 */
	__s64 ret;             /* syscall return value (0 when not a syscall) */
	__u32 type;            /* enum rp_type */
	__u32 size;            /* bytes of the whole record */
	__u32 pid;             /* tgid */
	__u32 tid;
	__u32 ppid;            /* real parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 syscall;         /* syscall number, 0xffffffff when not a syscall */
	__u32 mntns;           /* mount namespace inode number */
	__u32 pad;
	char comm[16];
};
_Static_assert(sizeof(struct rp_header) == 88, "rp_header size");

/* What an open file descriptor is: S_IFMT >> 12 of its inode, the socket family for a socket,
 * and the device number for a character device (a terminal). */
struct rp_fdinfo {
	__u16 mode;
	__u16 family;
	__u32 rdev;
};

struct rp_exec {
	struct rp_header h;
	__u32 euid;
	__u32 egid;
	__u32 loginuid;
	__u32 tty;             /* device number of the controlling terminal, 0 if none */
	__u64 cap_effective;
	__u64 cap_permitted;
	__u64 start_ns;        /* task start, boot-time ns */
	__u32 exe_nlink;       /* link count of the executable (0: deleted or memfd) */
	__u32 args_truncated;
	__u32 vpid;            /* pid in its own pid namespace */
	__u32 args_len;        /* bytes of argv (NUL-separated), also in `args` */
	struct rp_fdinfo stdin_info;
	struct rp_fdinfo stdout_info;
	struct rp_str filename;  /* as passed to execve */
	struct rp_str exe;       /* the executable's path from its dentry */
	struct rp_str args;      /* argv, NUL-separated */
	struct rp_str cwd;
};
_Static_assert(sizeof(struct rp_exec) == 88 + 88, "rp_exec size");

/* File, privilege and process-lifecycle records: up to six numeric arguments and three strings,
 * with a meaning per type documented in src/decode.rs. */
struct rp_sys {
	struct rp_header h;
	__u64 a[6];
	struct rp_str s[3];
	__u32 pad;
};
_Static_assert(sizeof(struct rp_sys) == 88 + 64, "rp_sys size");

struct rp_net {
	struct rp_header h;
	__u16 family;          /* AF_INET, AF_INET6, AF_UNIX */
	__u16 sock_type;       /* SOCK_STREAM, SOCK_DGRAM, ... */
	__u16 protocol;        /* IPPROTO_TCP, IPPROTO_UDP, ... */
	__u16 lport;           /* host byte order */
	__u16 rport;           /* host byte order */
	__u16 pad0;
	__s32 fd;
	__u8 laddr[16];        /* IPv4 in the first 4 bytes */
	__u8 raddr[16];
	struct rp_str unix_path;
	__u32 pad1;
};
_Static_assert(sizeof(struct rp_net) == 88 + 56, "rp_net size");

/* A UDP datagram's DNS payload (RP_DNS), or the head of an outbound TCP segment's payload
 * (RP_PAYLOAD): the payload follows the struct. */
struct rp_dns {
	struct rp_header h;
	__u16 family;
	__u16 ingress;         /* 1: arriving at the socket (a response), 0: leaving it */
	__u16 sport;
	__u16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 len;             /* bytes of payload that follow this struct */
	__u32 seg_len;         /* RP_PAYLOAD: bytes of payload in the segment; RP_DNS: 0 */
};
_Static_assert(sizeof(struct rp_dns) == 88 + 48, "rp_dns size");

/* Load-time configuration (.rodata, set by the loader before the programs are verified). */
struct rp_config {
	__u32 self_tgid;          /* the agent: its own events are not reported */
	__u32 containers_only;    /* report only tasks outside host_mntns */
	__u32 host_mntns;
	__u32 v1_subsys;          /* cgroup_subsys_id of the watched v1 hierarchy, or 0xffffffff */
	__u64 wakeup_bytes;       /* wake the reader only when this much data waits */
	__u32 file_events;        /* 0: no file events */
	__u32 net_events;         /* 0: no network events */
	/* Bit n set: some sensitive file name (name_mask) or directory name (dir_mask) is n bytes
	 * long. Lets the open filter skip the name lookup for almost every file. */
	__u64 name_len_mask;
	__u64 dir_len_mask;
	__u32 payload_events;     /* 0: no RP_PAYLOAD records (mining protocols on TCP) */
	__u32 dns_events;         /* 0: no RP_DNS records */
	/* Bit rp_name_bit(name) set: some sensitive file name (name_filter) or directory name
	 * (dir_filter) has that length, first and last byte. The open filter tests it on the name
	 * it already holds, so a file nobody listed costs no string read and no map lookup. */
	__u64 name_filter[4];
	__u64 dir_filter[4];
};
_Static_assert(sizeof(struct rp_config) == 120, "rp_config size");

/* The bit of a name (len bytes, first byte c0, last byte cl) in rp_config's 256-bit filters;
 * src/sensor.rs computes the same (name_bit). */
#define RP_NAME_BIT(len, c0, cl) ((((__u32)(len) * 31) + ((__u32)(c0) * 7) + (__u32)(cl)) & 255)

#endif
