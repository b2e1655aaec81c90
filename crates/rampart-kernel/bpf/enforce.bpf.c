// SPDX-License-Identifier: GPL-2.0-only
/*
 * Rampart's prevention programs: per-container exec policy and network micro-segmentation.
 *
 * Everything here is keyed by the cgroup v2 id of a container (TARGETS map): a task whose
 * cgroup (or an ancestor cgroup, up to RE_MAX_LEVEL levels) has no entry is never touched.
 *
 * Exec policy
 *   enforce_exec_btf (tp_btf/sched_process_exec) or enforce_exec_raw (raw_tp, same code) runs
 *   after the new image is loaded and before it executes its first instruction; a denied exec
 *   gets bpf_send_signal(SIGKILL), so the process dies on its way back to user space.
 *   enforce_exec_lsm (lsm/bprm_check_security) makes the same decision and returns -EPERM, so
 *   the exec fails and the old image continues; the loader uses it only where BPF-LSM is an
 *   active LSM (`bpf` in /sys/kernel/security/lsm), which many VPS kernels are not.
 *   What is matched, with no string or hash work beyond lookups:
 *     - names: the file's own name (dentry) and the basename of the path given to execve,
 *       in an LPM trie, so `xmrig` (exact, NUL included) and `xmr*` (prefix) are one lookup;
 *     - paths: the executable's path in the task's mount namespace (a container's root),
 *       walked from the dentry, in an LPM trie (exact paths and directory prefixes);
 *     - files: (device, inode, ctime) of the executable. SHA-256 cannot be computed here, so
 *       user space hashes the container's files and stores the identity of each file whose
 *       hash a rule names; a file changed since (ctime differs) is not trusted for allow
 *       rules. For policies with hash rules, an exec of a file user space has not seen is
 *       reported once (RE_EV_EXEC_UNKNOWN) so that user space can hash it.
 *   A deny match anywhere wins over an allow match; no match means the policy's default.
 *
 * Network
 *   cgroup/connect4, connect6 (TCP and connected UDP), sendmsg4, sendmsg6 (unconnected UDP)
 *   decide outbound attempts by the destination; cgroup_skb/ingress decides inbound TCP SYNs
 *   and UDP datagrams by the source and the local port. Rules live in one LPM trie keyed by
 *   (policy, direction, family, address): user space merges overlapping prefixes so that the
 *   longest match carries every port rule that applies to the address. UDP flows allowed in one
 *   direction are remembered (FLOWS, by socket cookie and peer) so that replies pass.
 *   Loopback is always allowed. Isolation (RE_F_ISOLATED) denies every connect and drops
 *   every packet, established connections included, except loopback and the per-container
 *   allow-list (ISOLATE_ALLOW); cgroup_skb/egress exists for it.
 *
 * Denials and audited would-be denials go to the EVENTS ring buffer (no wakeup per record);
 * STATS counts them per CPU. Every map is pinned by name so that the policy outlives the
 * process that applied it (see src/enforce/).
 *
 * The ABI with user space (enforce.h: constants, keys, values, the event record) is mirrored in
 * src/enforce/abi.rs and checked against the header by a test that compiles it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

/* ------------------------------------------------------------------------------ ABI */

#include "enforce.h"
#include "skb.h"


/* ------------------------------------------------------------------------------ maps */

#define PIN __uint(pinning, LIBBPF_PIN_BY_NAME)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct re_target);
	PIN;
} RE_TARGETS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct re_name_key);
	__type(value, struct re_verdict);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN;
} RE_EXEC_NAMES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct re_path_key);
	__type(value, struct re_verdict);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN;
} RE_EXEC_PATHS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct re_file_key);
	__type(value, struct re_file_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN;
} RE_EXEC_FILES SEC(".maps");

/* Files reported as unknown (RE_EV_EXEC_UNKNOWN) or hashed without a match: not reported again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct re_seen_key);
	__type(value, __u8);
	PIN;
} RE_EXEC_SEEN SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct re_net_key);
	__type(value, struct re_net_val);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN;
} RE_NET_RULES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct re_iso_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	PIN;
} RE_ISOLATE_ALLOW SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct re_redir_key);
	__type(value, struct re_redir_val);
	PIN;
} RE_MESH_REDIRECT SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct re_flow_key);
	__type(value, __u8);
	PIN;
} RE_FLOWS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
	PIN;
} RE_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RE_ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
	PIN;
} RE_STATS SEC(".maps");

/* Per-CPU scratch: lookup keys too large for the 512-byte stack, and the path walk buffer. */
#define WALK_LEN 512
#define WALK_MASK (WALK_LEN - 1)
struct re_scratch {
	struct re_path_key pkey;
	struct re_name_key nkey;
	/* The path is built in the first WALK_LEN bytes; the second half only lets the verifier
	 * see that a masked offset plus a name of up to 255 bytes stays inside. */
	char walk[2 * WALK_LEN];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct re_scratch);
} RE_SCRATCH SEC(".maps");

/* ------------------------------------------------------------------------------ helpers */

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&RE_STATS, &idx);
	if (v)
		*v += 1;
}

/* The TARGETS entry of the current task's cgroup or its nearest ancestor that has one. */
static __always_inline struct re_target *task_target(__u64 *cgid_out)
{
	__u64 cg = bpf_get_current_cgroup_id();
	struct re_target *t = bpf_map_lookup_elem(&RE_TARGETS, &cg);
	if (t) {
		*cgid_out = cg;
		return t;
	}
	for (int level = RE_MAX_LEVEL; level >= 1; level--) {
		__u64 a = bpf_get_current_ancestor_cgroup_id(level);
		if (a == 0 || a == cg)
			continue;
		t = bpf_map_lookup_elem(&RE_TARGETS, &a);
		if (t) {
			*cgid_out = a;
			return t;
		}
	}
	return NULL;
}

static __always_inline struct re_target *skb_target(struct __sk_buff *skb, __u64 *cgid_out)
{
	__u64 cg = bpf_skb_cgroup_id(skb);
	struct re_target *t = bpf_map_lookup_elem(&RE_TARGETS, &cg);
	if (t) {
		*cgid_out = cg;
		return t;
	}
	for (int level = RE_MAX_LEVEL; level >= 1; level--) {
		__u64 a = bpf_skb_ancestor_cgroup_id(skb, level);
		if (a == 0 || a == cg)
			continue;
		t = bpf_map_lookup_elem(&RE_TARGETS, &a);
		if (t) {
			*cgid_out = a;
			return t;
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------------ exec */

/* Writes the path of `p` into s->walk, right-aligned and NUL-terminated at WALK_LEN - 1; walks
 * dentries and crosses mounts up to the root of the task's mount namespace. Returns the offset
 * of the first byte, or WALK_LEN when the path does not fit. */
static __noinline __u32 walk_path(struct re_scratch *s, const struct path *p)
{
	struct dentry *d = BPF_CORE_READ(p, dentry);
	struct vfsmount *vmnt = BPF_CORE_READ(p, mnt);
	struct mount *mnt = (void *)((char *)vmnt - bpf_core_field_offset(struct mount, mnt));
	struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
	__u32 pos = WALK_LEN - 1;
	s->walk[WALK_LEN - 1] = 0;

	for (int i = 0; i < 24; i++) {
		struct dentry *root = BPF_CORE_READ(vmnt, mnt_root);
		struct dentry *dparent = BPF_CORE_READ(d, d_parent);
		if (d == root || d == dparent) {
			if (d != root || mnt == parent)
				break;
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			parent = BPF_CORE_READ(mnt, mnt_parent);
			vmnt = (void *)((char *)mnt + bpf_core_field_offset(struct mount, mnt));
			continue;
		}
		__u32 len = BPF_CORE_READ(d, d_name.len) & 255;
		const unsigned char *name = BPF_CORE_READ(d, d_name.name);
		if (len == 0 || pos <= len + 1)
			return WALK_LEN;
		pos = (pos - len - 1) & WALK_MASK;
		bpf_probe_read_kernel(&s->walk[(pos + 1) & WALK_MASK], len, name);
		s->walk[pos & WALK_MASK] = '/';
		d = dparent;
	}
	if (pos == WALK_LEN - 1) {
		pos -= 1;
		s->walk[pos & WALK_MASK] = '/';
	}
	return pos & WALK_MASK;
}

/* The inode's ctime, across the field renames of 6.6 and 6.11. */
struct inode___pre611 {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));
struct inode___pre66 {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

static __always_inline void inode_ctime(struct inode *ino, __s64 *sec, __u32 *nsec)
{
	if (bpf_core_field_exists(ino->i_ctime_sec)) {
		*sec = BPF_CORE_READ(ino, i_ctime_sec);
		*nsec = BPF_CORE_READ(ino, i_ctime_nsec);
	} else if (bpf_core_field_exists(((struct inode___pre611 *)ino)->__i_ctime)) {
		struct inode___pre611 *o = (void *)ino;
		*sec = BPF_CORE_READ(o, __i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(o, __i_ctime.tv_nsec);
	} else {
		struct inode___pre66 *o = (void *)ino;
		*sec = BPF_CORE_READ(o, i_ctime.tv_sec);
		*nsec = BPF_CORE_READ(o, i_ctime.tv_nsec);
	}
}

/* Looks a name up in EXEC_NAMES for `policy`: `kind` is RE_NAME_FILE (the file's own name)
 * or RE_NAME_COMM (the task's comm after exec: the basename as executed, at most 15 bytes).
 * Returns the verdict and sets *rule. */
static __always_inline __u8 name_verdict(struct re_scratch *s, __u32 policy, char kind,
					 const char *name, __u32 *rule)
{
	__builtin_memset(&s->nkey, 0, sizeof(s->nkey));
	long n = bpf_probe_read_kernel_str(&s->nkey.name[1], RE_NAME_LEN - 1, name);
	if (n <= 0)
		return RE_NONE;
	s->nkey.policy_be = bpf_htonl(policy);
	s->nkey.name[0] = kind;
	/* n counts the NUL: an exact entry (NUL included) and every prefix entry can match. */
	s->nkey.prefixlen = 32 + 8 + (__u32)n * 8;
	struct re_verdict *v = bpf_map_lookup_elem(&RE_EXEC_NAMES, &s->nkey);
	if (!v)
		return RE_NONE;
	*rule = v->rule_id;
	return v->action;
}

static __always_inline void fill_task(struct re_event *e)
{
	__u64 pt = bpf_get_current_pid_tgid();
	e->pid = pt >> 32;
	e->tid = (__u32)pt;
	e->uid = (__u32)bpf_get_current_uid_gid();
	struct task_struct *t = (void *)bpf_get_current_task();
	e->ppid = BPF_CORE_READ(t, real_parent, tgid);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* Copies the walked path (if any) into a report. */
static __always_inline void copy_path(struct re_event *e, struct re_scratch *s, __u32 path_start)
{
	if (path_start >= WALK_LEN)
		return;
	__u32 len = WALK_LEN - path_start; /* NUL included */
	if (len > sizeof(e->path) - 1)
		len = sizeof(e->path) - 1;
	/* Keeps clang from dropping the mask the verifier needs. */
	barrier_var(len);
	bpf_probe_read_kernel(e->path, len & 255, &s->walk[path_start & WALK_MASK]);
	e->path[len & 255] = 0;
	e->path_len = len - 1;
}

/*
 * The exec decision, shared by the three hooks. Returns the verdict to enforce (RE_DENY), or
 * RE_ALLOW; reports denials, audits and unknown files on the way.
 */
static __always_inline __u8 exec_decide(struct linux_binprm *bprm, __u8 mechanism)
{
	__u64 cgid = 0;
	struct re_target *t = task_target(&cgid);
	if (!t || !(t->flags & RE_F_EXEC))
		return RE_ALLOW;
	stat_inc(RE_ST_EXEC_CHECKED);
	__u32 zero = 0;
	struct re_scratch *s = bpf_map_lookup_elem(&RE_SCRATCH, &zero);
	if (!s)
		return RE_ALLOW;

	__u32 policy = t->policy;
	__u32 flags = t->flags;
	__u8 verdict = RE_NONE;
	__u32 rule = 0, r = 0;
	__u8 reason = RE_WHY_RULE;

	struct file *f = BPF_CORE_READ(bprm, file);
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	__u64 dev = BPF_CORE_READ(ino, i_sb, s_dev);
	__u64 inum = BPF_CORE_READ(ino, i_ino);
	__s64 csec = 0;
	__u32 cnsec = 0;
	inode_ctime(ino, &csec, &cnsec);
	const unsigned char *dname = BPF_CORE_READ(f, f_path.dentry, d_name.name);
	const char *filename = BPF_CORE_READ(bprm, filename);

	if (flags & RE_F_EXEC_NAMES) {
		__u8 v = name_verdict(s, policy, RE_NAME_FILE, (const char *)dname, &r);
		if (v > verdict) {
			verdict = v;
			rule = r;
		}
		/* The name as executed (a symlink's name, a script's name): the new comm. At
		 * bprm_check_security the comm is still the old program's, so the LSM hook matches
		 * the file's own name only. */
		if (mechanism != RE_MECH_LSM) {
			struct task_struct *task = (void *)bpf_get_current_task();
			v = name_verdict(s, policy, RE_NAME_COMM, task->comm, &r);
			if (v > verdict) {
				verdict = v;
				rule = r;
			}
		}
	}

	__u32 path_start = WALK_LEN;
	if (flags & RE_F_EXEC_PATHS) {
		path_start = walk_path(s, &f->f_path);
		if (path_start < WALK_LEN) {
			__u32 len = WALK_LEN - path_start; /* NUL included */
			__builtin_memset(&s->pkey, 0, sizeof(s->pkey));
			s->pkey.policy_be = bpf_htonl(policy);
			if (len > RE_PATH_LEN)
				len = RE_PATH_LEN; /* too long for an exact match; prefixes still work */
			bpf_probe_read_kernel(s->pkey.path, len & 255, &s->walk[path_start & WALK_MASK]);
			s->pkey.prefixlen = 32 + len * 8;
			struct re_verdict *pv = bpf_map_lookup_elem(&RE_EXEC_PATHS, &s->pkey);
			if (pv && pv->action > verdict) {
				verdict = pv->action;
				rule = pv->rule_id;
			}
		}
	}

	if (flags & RE_F_EXEC_FILES) {
		struct re_file_key fk = { .dev = dev, .ino = inum, .policy = policy };
		struct re_file_val *fv = bpf_map_lookup_elem(&RE_EXEC_FILES, &fk);
		if (fv) {
			__u8 a = fv->action;
			if (fv->ctime_sec != csec || fv->ctime_nsec != cnsec) {
				/* Changed since hashed: a deny still holds (the file was bad), an allow
				 * is no longer vouched for. */
				if (a == RE_ALLOW)
					a = RE_NONE;
				if (a == RE_NONE)
					reason = RE_WHY_CHANGED;
			}
			if (a > verdict) {
				verdict = a;
				rule = fv->rule_id;
			}
		}
		if (!fv || (fv->ctime_sec != csec || fv->ctime_nsec != cnsec)) {
			struct re_seen_key sk = { .dev = dev, .ino = inum, .ctime_sec = csec,
						  .ctime_nsec = cnsec, .policy = policy };
			if (!bpf_map_lookup_elem(&RE_EXEC_SEEN, &sk)) {
				__u8 one = 1;
				bpf_map_update_elem(&RE_EXEC_SEEN, &sk, &one, BPF_ANY);
				struct re_event *u = bpf_ringbuf_reserve(&RE_EVENTS, sizeof(*u), 0);
				if (u) {
					__builtin_memset(u, 0, sizeof(*u));
					u->ktime_ns = bpf_ktime_get_boot_ns();
					u->cgroup_id = cgid;
					u->type = RE_EV_EXEC_UNKNOWN;
					u->policy = policy;
					u->mechanism = mechanism;
					u->dev = dev;
					u->ino = inum;
					u->ctime_sec = csec;
					u->ctime_nsec = cnsec;
					fill_task(u);
					bpf_probe_read_kernel_str(u->file_name, sizeof(u->file_name), dname);
					copy_path(u, s, path_start);
					bpf_ringbuf_submit(u, 0);
				} else {
					stat_inc(RE_ST_EVENTS_LOST);
				}
			}
		}
	}

	if (verdict == RE_NONE) {
		verdict = t->exec_default;
		if (reason != RE_WHY_CHANGED)
			reason = RE_WHY_DEFAULT;
		rule = 0;
	}
	if (verdict == RE_ALLOW || verdict == RE_NONE)
		return RE_ALLOW;
	if (verdict == RE_DENY && (flags & RE_F_AUDIT_ONLY))
		verdict = RE_AUDIT;

	stat_inc(verdict == RE_DENY ? RE_ST_EXEC_DENIED : RE_ST_EXEC_AUDITED);
	struct re_event *e = bpf_ringbuf_reserve(&RE_EVENTS, sizeof(*e), 0);
	if (e) {
		__builtin_memset(e, 0, sizeof(*e));
		e->ktime_ns = bpf_ktime_get_boot_ns();
		e->cgroup_id = cgid;
		e->type = RE_EV_EXEC;
		e->policy = policy;
		e->rule_id = rule;
		e->action = verdict;
		e->mechanism = mechanism;
		e->reason = reason;
		e->dev = dev;
		e->ino = inum;
		e->ctime_sec = csec;
		e->ctime_nsec = cnsec;
		fill_task(e);
		if (mechanism == RE_MECH_LSM)
			bpf_probe_read_kernel_str(e->name, sizeof(e->name), filename);
		else
			bpf_get_current_comm(e->name, 16);
		bpf_probe_read_kernel_str(e->file_name, sizeof(e->file_name), dname);
		copy_path(e, s, path_start);
		bpf_ringbuf_submit(e, 0);
	} else {
		stat_inc(RE_ST_EVENTS_LOST);
	}
	return verdict;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(enforce_exec_btf, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (exec_decide(bprm, RE_MECH_TP_BTF) == RE_DENY)
		bpf_send_signal(9);
	return 0;
}

SEC("raw_tp/sched_process_exec")
int enforce_exec_raw(__u64 *args)
{
	if (exec_decide((struct linux_binprm *)args[2], RE_MECH_RAW_TP) == RE_DENY)
		bpf_send_signal(9);
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(enforce_exec_lsm, struct linux_binprm *bprm, int ret)
{
	if (ret != 0)
		return ret;
	/* bprm_check_security runs for a script and again for its interpreter; the file is
	 * bprm->file each time, so both are checked. */
	if (exec_decide(bprm, RE_MECH_LSM) == RE_DENY)
		return -1; /* -EPERM */
	return 0;
}

/* ------------------------------------------------------------------------------ network */

static __always_inline int is_loopback(__u8 family, const __u8 *a)
{
	if (family == 4)
		return a[0] == 127;
	__u32 w0 = 0, w1 = 0, w2 = 0, w3 = 0;
	__builtin_memcpy(&w0, a, 4);
	__builtin_memcpy(&w1, a + 4, 4);
	__builtin_memcpy(&w2, a + 8, 4);
	__builtin_memcpy(&w3, a + 12, 4);
	if (w0 == 0 && w1 == 0 && w2 == 0 && w3 == bpf_htonl(1))
		return 1;
	/* ::ffff:127.0.0.0/104 */
	return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff) && a[12] == 127;
}

/* Evaluates the rules of (policy, dir) for a peer address, port and protocol. */
static __always_inline __u8 net_rules(__u32 policy, __u8 dir, __u8 family, const __u8 *addr,
				      __u16 port, __u8 proto, __u32 *rule)
{
	struct re_net_key k = {};
	k.policy_be = bpf_htonl(policy);
	k.dir = dir;
	k.family = family;
	__builtin_memcpy(k.addr, addr, 16);
	k.prefixlen = 64 + (family == 4 ? 32 : 128);
	struct re_net_val *v = bpf_map_lookup_elem(&RE_NET_RULES, &k);
	if (!v)
		return RE_NONE;
	__u8 verdict = RE_NONE;
	__u32 n = v->count;
	for (int i = 0; i < RE_NET_MAX; i++) {
		if (i >= n)
			break;
		struct re_port_rule *r = &v->r[i];
		if (r->proto && r->proto != proto)
			continue;
		if (port < r->port_lo || port > r->port_hi)
			continue;
		if (r->action > verdict) {
			verdict = r->action;
			*rule = r->rule_id;
		}
	}
	return verdict;
}

static __always_inline int isolate_allows(__u64 cgid, __u8 family, const __u8 *addr)
{
	struct re_iso_key k = {};
	k.cgroup_hi_be = bpf_htonl((__u32)(cgid >> 32));
	k.cgroup_lo_be = bpf_htonl((__u32)cgid);
	k.family = family;
	__builtin_memcpy(k.addr, addr, 16);
	k.prefixlen = 96 + (family == 4 ? 32 : 128);
	return bpf_map_lookup_elem(&RE_ISOLATE_ALLOW, &k) != NULL;
}

struct net_ctx {
	__u64 cgid;
	__u64 cookie;
	__u8 family;
	__u8 dir;
	__u8 proto;
	__u8 mechanism;
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	int has_task;
};

static __always_inline void net_report(struct net_ctx *c, __u32 policy, __u32 rule, __u8 action,
				       __u8 reason)
{
	stat_inc(action == RE_DENY ? RE_ST_NET_DENIED : RE_ST_NET_AUDITED);
	struct re_event *e = bpf_ringbuf_reserve(&RE_EVENTS, sizeof(*e), 0);
	if (!e) {
		stat_inc(RE_ST_EVENTS_LOST);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ktime_ns = bpf_ktime_get_boot_ns();
	e->cgroup_id = c->cgid;
	e->type = RE_EV_NET;
	e->policy = policy;
	e->rule_id = rule;
	e->action = action;
	e->mechanism = c->mechanism;
	e->reason = reason;
	e->dir = c->dir;
	e->family = c->family;
	e->proto = c->proto;
	e->lport = c->lport;
	e->rport = c->rport;
	__builtin_memcpy(e->laddr, c->laddr, 16);
	__builtin_memcpy(e->raddr, c->raddr, 16);
	if (c->has_task)
		fill_task(e);
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void flow_remember(struct net_ctx *c)
{
	struct re_flow_key fk = {};
	fk.cookie = c->cookie;
	__builtin_memcpy(fk.addr, c->raddr, 16);
	fk.port = c->rport;
	if (!bpf_map_lookup_elem(&RE_FLOWS, &fk)) {
		__u8 one = 1;
		bpf_map_update_elem(&RE_FLOWS, &fk, &one, BPF_ANY);
	}
}

static __always_inline int flow_known(struct net_ctx *c)
{
	struct re_flow_key fk = {};
	fk.cookie = c->cookie;
	__builtin_memcpy(fk.addr, c->raddr, 16);
	fk.port = c->rport;
	return bpf_map_lookup_elem(&RE_FLOWS, &fk) != NULL;
}

/*
 * The network decision for a connection attempt or a datagram: 1 lets it through, 0 refuses.
 * Egress rules match the remote address and port; ingress rules the remote (source) address
 * and the local port.
 */
static __always_inline int net_decide(struct re_target *t, struct net_ctx *c)
{
	if (is_loopback(c->family, c->raddr))
		return 1;
	if (t->flags & RE_F_ISOLATED) {
		if (isolate_allows(c->cgid, c->family, c->raddr))
			return 1;
		net_report(c, t->policy, 0, RE_DENY, RE_WHY_ISOLATED);
		return 0;
	}
	__u32 need = c->dir ? RE_F_INGRESS : RE_F_EGRESS;
	if (!(t->flags & need))
		return 1;
	stat_inc(RE_ST_NET_CHECKED);
	if (c->proto == 17 && c->cookie && flow_known(c))
		return 1;
	__u32 rule = 0;
	__u8 reason = RE_WHY_RULE;
	__u16 port = c->dir ? c->lport : c->rport;
	__u8 v = net_rules(t->policy, c->dir, c->family, c->raddr, port, c->proto, &rule);
	if (v == RE_NONE) {
		v = c->dir ? t->ingress_default : t->egress_default;
		reason = RE_WHY_DEFAULT;
		rule = 0;
	}
	if (v == RE_DENY && (t->flags & RE_F_AUDIT_ONLY))
		v = RE_AUDIT;
	if (v == RE_DENY || v == RE_AUDIT)
		net_report(c, t->policy, rule, v, reason);
	if (v == RE_DENY)
		return 0;
	if (c->proto == 17 && c->cookie)
		flow_remember(c);
	return 1;
}

static __always_inline int sock_addr_decide(struct bpf_sock_addr *ctx, __u8 family, __u8 mechanism)
{
	struct net_ctx c = {};
	struct re_target *t = task_target(&c.cgid);
	if (!t)
		return 1;
	c.family = family;
	c.dir = 0;
	c.proto = ctx->protocol;
	c.mechanism = mechanism;
	c.has_task = 1;
	c.rport = bpf_ntohs((__u16)ctx->user_port);
	if (family == 4) {
		__u32 a = ctx->user_ip4;
		__builtin_memcpy(c.raddr, &a, 4);
	} else {
		__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2],
		      a3 = ctx->user_ip6[3];
		__builtin_memcpy(c.raddr, &a0, 4);
		__builtin_memcpy(c.raddr + 4, &a1, 4);
		__builtin_memcpy(c.raddr + 8, &a2, 4);
		__builtin_memcpy(c.raddr + 12, &a3, 4);
	}
	if (c.proto == 17)
		c.cookie = bpf_get_socket_cookie(ctx);
	return net_decide(t, &c);
}

/*
 * Transparent mesh redirection: a TCP connect of cgroup `cg` (or an ancestor, as for TARGETS)
 * to a declared remote service is rewritten to the local mesh proxy's listener for it. Runs
 * after the policy decision, in the same program, so a denied destination is refused, never
 * redirected around the policy.
 */
static __always_inline void mesh_redirect(struct bpf_sock_addr *ctx, __u8 family)
{
	if (ctx->protocol != 6)
		return;
	struct re_redir_key k = {};
	k.family = family;
	k.port = (__u16)ctx->user_port;
	if (family == 4) {
		__u32 a = ctx->user_ip4;
		__builtin_memcpy(k.addr, &a, 4);
	} else {
		__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2],
		      a3 = ctx->user_ip6[3];
		__builtin_memcpy(k.addr, &a0, 4);
		__builtin_memcpy(k.addr + 4, &a1, 4);
		__builtin_memcpy(k.addr + 8, &a2, 4);
		__builtin_memcpy(k.addr + 12, &a3, 4);
	}
	k.cgroup_id = bpf_get_current_cgroup_id();
	struct re_redir_val *v = bpf_map_lookup_elem(&RE_MESH_REDIRECT, &k);
	for (int level = RE_MAX_LEVEL; !v && level >= 1; level--) {
		__u64 a = bpf_get_current_ancestor_cgroup_id(level);
		if (a == 0)
			continue;
		k.cgroup_id = a;
		v = bpf_map_lookup_elem(&RE_MESH_REDIRECT, &k);
	}
	if (!v)
		return;
	if (family == 4) {
		__u32 a;
		__builtin_memcpy(&a, v->addr, 4);
		ctx->user_ip4 = a;
	} else {
		__u32 a0, a1, a2, a3;
		__builtin_memcpy(&a0, v->addr, 4);
		__builtin_memcpy(&a1, v->addr + 4, 4);
		__builtin_memcpy(&a2, v->addr + 8, 4);
		__builtin_memcpy(&a3, v->addr + 12, 4);
		ctx->user_ip6[0] = a0;
		ctx->user_ip6[1] = a1;
		ctx->user_ip6[2] = a2;
		ctx->user_ip6[3] = a3;
	}
	ctx->user_port = (__u32)v->port;
	stat_inc(RE_ST_MESH_REDIRECTED);
}

SEC("cgroup/connect4")
int enforce_connect4(struct bpf_sock_addr *ctx)
{
	if (!sock_addr_decide(ctx, 4, RE_MECH_CONNECT4))
		return 0;
	mesh_redirect(ctx, 4);
	return 1;
}

SEC("cgroup/connect6")
int enforce_connect6(struct bpf_sock_addr *ctx)
{
	if (!sock_addr_decide(ctx, 6, RE_MECH_CONNECT6))
		return 0;
	mesh_redirect(ctx, 6);
	return 1;
}

SEC("cgroup/sendmsg4")
int enforce_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock_addr_decide(ctx, 4, RE_MECH_SENDMSG4);
}

SEC("cgroup/sendmsg6")
int enforce_sendmsg6(struct bpf_sock_addr *ctx)
{
	return sock_addr_decide(ctx, 6, RE_MECH_SENDMSG6);
}

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

/* Parses the IP and transport headers at the start of `skb` into c (the packet's source is
 * `src`, its destination `dst`). Returns 0 when the packet is not IPv4/IPv6. Sets *unparsed
 * when an IPv6 packet's transport header is out of reach (more extension headers than
 * ipv6_transport walks: a remote host may send any number): *proto, ports and flags are then
 * not the packet's, and the caller decides from the receiving socket. */
static __always_inline int skb_parse(struct __sk_buff *skb, __u8 *src, __u8 *dst, __u8 *family,
				     __u8 *proto, __u16 *sport, __u16 *dport, __u8 *tcp_flags,
				     int *unparsed)
{
	__u32 l4 = 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (skb_header(skb, 0, &ip, sizeof(ip)))
			return 0;
		*family = 4;
		*proto = ip.protocol;
		__builtin_memcpy(src, &ip.saddr, 4);
		__builtin_memcpy(dst, &ip.daddr, 4);
		l4 = (ip.ihl & 0xf) * 4;
		/* Later fragments carry no transport header. */
		if (ip.frag_off & bpf_htons(0x1fff))
			return 1;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (skb_header(skb, 0, &ip6, sizeof(ip6)))
			return 0;
		*family = 6;
		__builtin_memcpy(src, &ip6.saddr, 16);
		__builtin_memcpy(dst, &ip6.daddr, 16);
		__u8 nh = ip6.nexthdr;
		l4 = sizeof(ip6);
		if (nh != IPPROTO_TCP_ && nh != IPPROTO_UDP_) {
			/* Extension headers (destination options, hop-by-hop, routing) before the
			 * transport header: a SYN behind them is still a SYN to its port. */
			l4 = ipv6_transport(skb, &nh);
			if (!l4) {
				*proto = nh;
				*unparsed = 1;
				return 1;
			}
		}
		*proto = nh;
	} else {
		return 0;
	}
	if (*proto == IPPROTO_TCP_) {
		struct tcphdr th;
		if (skb_header(skb, l4, &th, sizeof(th))) {
			*unparsed = 1;
			return 1;
		}
		*sport = bpf_ntohs(th.source);
		*dport = bpf_ntohs(th.dest);
		*tcp_flags = ((__u8 *)&th)[13];
	} else if (*proto == IPPROTO_UDP_) {
		struct udphdr uh;
		if (skb_header(skb, l4, &uh, sizeof(uh))) {
			*unparsed = 1;
			return 1;
		}
		*sport = bpf_ntohs(uh.source);
		*dport = bpf_ntohs(uh.dest);
	}
	return 1;
}

#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

SEC("cgroup_skb/ingress")
int enforce_ingress(struct __sk_buff *skb)
{
	struct net_ctx c = {};
	struct re_target *t = skb_target(skb, &c.cgid);
	if (!t || !(t->flags & (RE_F_INGRESS | RE_F_ISOLATED)))
		return 1;
	__u8 flags = 0;
	int unparsed = 0;
	/* Arriving: the remote end is the source, the local end the destination. */
	if (!skb_parse(skb, c.raddr, c.laddr, &c.family, &c.proto, &c.rport, &c.lport, &flags,
		       &unparsed))
		return 1;
	c.dir = 1;
	c.mechanism = RE_MECH_SKB_INGRESS;
	if (t->flags & RE_F_ISOLATED)
		return net_decide(t, &c);
	if (unparsed) {
		/* The transport header is out of reach: the segment is judged as a new flow by the
		 * socket it is delivered to (at this hook, the listener for a SYN), whose protocol
		 * and local port are what an ingress rule names. Not let through as "part of a
		 * connection" on flags that could not be read. */
		struct bpf_sock *sk = skb->sk;
		if (sk)
			sk = bpf_sk_fullsock(sk);
		if (sk) {
			c.proto = sk->protocol;
			c.lport = sk->src_port;
		}
	} else if (c.proto == IPPROTO_TCP_ && !((flags & TCP_FLAG_SYN) && !(flags & TCP_FLAG_ACK))) {
		/* A TCP segment other than a SYN belongs to a connection that a SYN (checked here)
		 * or a connect (checked by the connect hooks) opened. */
		return 1;
	}
	if (c.proto == IPPROTO_UDP_)
		c.cookie = bpf_get_socket_cookie(skb);
	return net_decide(t, &c);
}

/* Only isolation filters here: the connect and sendmsg hooks decide new outbound traffic. */
SEC("cgroup_skb/egress")
int enforce_egress(struct __sk_buff *skb)
{
	struct net_ctx c = {};
	struct re_target *t = skb_target(skb, &c.cgid);
	if (!t || !(t->flags & RE_F_ISOLATED))
		return 1;
	__u8 flags = 0;
	int unparsed = 0; /* isolation decides by address alone */
	if (!skb_parse(skb, c.laddr, c.raddr, &c.family, &c.proto, &c.lport, &c.rport, &flags,
		       &unparsed))
		return 1;
	c.dir = 0;
	c.mechanism = RE_MECH_SKB_EGRESS;
	return net_decide(t, &c);
}
