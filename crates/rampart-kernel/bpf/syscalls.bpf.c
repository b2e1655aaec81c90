// SPDX-License-Identifier: GPL-2.0-only
/*
 * The syscall recorder: counts every syscall number (and every capability check) made by the
 * tasks of the cgroups being recorded, for learning seccomp profiles and capability sets.
 *
 * Hooks: raw_tp/sys_enter (every syscall on the machine) and raw_tp/cap_capable (the
 * capability:cap_capable tracepoint, Linux 6.14+; optional).
 *
 * Filter: user space puts cgroup ids into SR_WATCH (cgroup v2) or SR_WATCH_V1 (the v1 `pids`
 * hierarchy, exact cgroups only) and the levels of the v2 ones into the SR_LEVELS bit mask. A
 * task is recorded when its v2 ancestor at one of those levels is watched; everything else
 * leaves after one array lookup plus one ancestor lookup and one hash lookup per watched
 * level. A watch with mode SR_CHILDREN counts under the child cgroup on the task's path (one
 * set of counts per container below /docker, including containers created after the watch);
 * SR_SELF counts under the watched cgroup itself (all of its descendants included).
 *
 * Seccomp phase: each count says whether the task had a seccomp filter installed
 * (task->seccomp.mode == SECCOMP_MODE_FILTER) when it made the syscall. A container learned
 * under an allow-all filter is recorded from exactly the point where the runtime installs its
 * filter, which is the set a learned profile must allow; a container learned unconfined is
 * recorded from the moment it enters its cgroup (runtime set-up included).
 *
 * ABI with src/syscall_recorder.rs: struct sr_syscall_key, struct sr_cap_key, the map names,
 * SR_SELF/SR_CHILDREN and the SR_STAT_* indices; the Rust side asserts the struct sizes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define SR_SELF 1
#define SR_CHILDREN 2
#define SR_MAX_LEVELS 16
#define SR_STAT_SYSCALL_FULL 0
#define SR_STAT_CAP_FULL 1
#define SR_STATS 2

#define SR_ARCH_NATIVE 0
#define SR_ARCH_IA32 1
#define SR_ARCH_X32 2

#define SECCOMP_MODE_FILTER 2
#define X32_SYSCALL_BIT 0x40000000
#define TS_COMPAT 0x0002

/* Index of the v1 `pids` controller (its cgroup_subsys_id), or >= 16 when there is none. Set by
 * the loader before verification. */
const volatile __u32 V1_SUBSYS = 0xffffffff;

struct sr_syscall_key {
	__u64 cgroup;
	__u32 nr;
	__u8 arch;     /* SR_ARCH_* */
	__u8 filtered; /* 1: the task had a seccomp filter */
	__u8 v1;       /* 1: cgroup is a v1 pids-hierarchy id */
	__u8 pad;
};

struct sr_cap_key {
	__u64 cgroup;
	__u32 cap;
	__u8 granted;
	__u8 v1;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} SR_WATCH SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} SR_WATCH_V1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} SR_LEVELS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sr_syscall_key);
	__type(value, __u64);
} SR_SYSCALLS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct sr_cap_key);
	__type(value, __u64);
} SR_CAPS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SR_STATS);
	__type(key, __u32);
	__type(value, __u64);
} SR_STAT SEC(".maps");

struct recorded {
	__u64 cgroup;
	__u8 v1;
};

static __always_inline __u64 v1_cgroup_id(struct task_struct *t)
{
	__u32 idx = V1_SUBSYS;
	if (idx >= 16)
		return 0;
	struct css_set *cs = BPF_CORE_READ(t, cgroups);
	struct cgroup_subsys_state *css = NULL;
	bpf_core_read(&css, sizeof(css), &cs->subsys[idx]);
	if (!css)
		return 0;
	return BPF_CORE_READ(css, cgroup, kn, id);
}

/* Is the current task recorded, and under which cgroup? */
static __always_inline int recorded(struct recorded *r)
{
	__u32 zero = 0;
	__u32 *levels = bpf_map_lookup_elem(&SR_LEVELS, &zero);
	if (levels && *levels) {
		__u32 mask = *levels;
		for (int lvl = 0; lvl < SR_MAX_LEVELS; lvl++) {
			if (!(mask & (1u << lvl)))
				continue;
			__u64 anc = bpf_get_current_ancestor_cgroup_id(lvl);
			if (!anc)
				break; /* the task's cgroup is above this level */
			__u32 *mode = bpf_map_lookup_elem(&SR_WATCH, &anc);
			if (!mode)
				continue;
			r->v1 = 0;
			r->cgroup = anc;
			if (*mode == SR_CHILDREN) {
				__u64 child = bpf_get_current_ancestor_cgroup_id(lvl + 1);
				if (child)
					r->cgroup = child;
			}
			return 1;
		}
	}
	if (V1_SUBSYS < 16) {
		__u64 id = v1_cgroup_id((struct task_struct *)bpf_get_current_task());
		if (id && bpf_map_lookup_elem(&SR_WATCH_V1, &id)) {
			r->v1 = 1;
			r->cgroup = id;
			return 1;
		}
	}
	return 0;
}

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&SR_STAT, &idx);
	if (v)
		*v += 1;
}

/* The context is read as a plain array: vmlinux.h's bpf_raw_tracepoint_args is a zero-length
 * array with preserve_access_index, which CO-RE cannot relocate an index into. */
SEC("raw_tp/sys_enter")
int sr_sys_enter(__u64 *args)
{
	struct recorded r = {};
	if (!recorded(&r))
		return 0;
	long id = (long)args[1];
	if (id < 0)
		return 0;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct sr_syscall_key k = {};
	k.cgroup = r.cgroup;
	k.v1 = r.v1;
	k.filtered = BPF_CORE_READ(t, seccomp.mode) == SECCOMP_MODE_FILTER;
	k.arch = SR_ARCH_NATIVE;
#ifdef __TARGET_ARCH_x86
	if (BPF_CORE_READ(t, thread_info.status) & TS_COMPAT) {
		k.arch = SR_ARCH_IA32;
	} else if (id & X32_SYSCALL_BIT) {
		k.arch = SR_ARCH_X32;
		id &= ~X32_SYSCALL_BIT;
	}
#endif
	k.nr = (__u32)id;
	__u64 *count = bpf_map_lookup_elem(&SR_SYSCALLS, &k);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	__u64 one = 1;
	long err = bpf_map_update_elem(&SR_SYSCALLS, &k, &one, BPF_NOEXIST);
	if (err) {
		/* Another CPU inserted it first, or the map is full. */
		count = bpf_map_lookup_elem(&SR_SYSCALLS, &k);
		if (count)
			__sync_fetch_and_add(count, 1);
		else
			stat_inc(SR_STAT_SYSCALL_FULL);
	}
	return 0;
}

/* Is the current task the container runtime (runc) rather than the workload? runc's init
 * process runs in the container's cgroup while it sets the container up with full
 * capabilities; its executable is runc itself, or runc's sealed memfd copy
 * ("memfd:runc_cloned:/proc/self/exe"), whatever it calls itself (comm "runc:[2:INIT]", or the
 * fd number it was re-executed from). */
static __always_inline int is_runtime(void)
{
	char comm[8] = {};
	bpf_get_current_comm(comm, sizeof(comm));
	if (comm[0] == 'r' && comm[1] == 'u' && comm[2] == 'n' && comm[3] == 'c' && comm[4] == ':')
		return 1;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct file *exe = BPF_CORE_READ(t, mm, exe_file);
	if (!exe)
		return 0;
	const unsigned char *name = BPF_CORE_READ(exe, f_path.dentry, d_name.name);
	char buf[12] = {};
	if (bpf_probe_read_kernel_str(buf, sizeof(buf), name) < 0)
		return 0;
	if (buf[0] == 'r' && buf[1] == 'u' && buf[2] == 'n' && buf[3] == 'c')
		return 1;
	return buf[0] == 'm' && buf[1] == 'e' && buf[2] == 'm' && buf[3] == 'f' && buf[4] == 'd' &&
	       buf[5] == ':' && buf[6] == 'r' && buf[7] == 'u' && buf[8] == 'n' && buf[9] == 'c';
}

/* capability:cap_capable(cred, target_ns, capable_ns, cap, ret): ret 0 means granted. Checks
 * made by the runtime while it sets the container up are not the workload's and are skipped. */
SEC("raw_tp/cap_capable")
int sr_cap_capable(__u64 *args)
{
	struct recorded r = {};
	if (!recorded(&r))
		return 0;
	if (is_runtime())
		return 0;
	struct sr_cap_key k = {};
	k.cgroup = r.cgroup;
	k.v1 = r.v1;
	k.cap = (__u32)args[3];
	k.granted = (int)args[4] == 0;
	__u64 *count = bpf_map_lookup_elem(&SR_CAPS, &k);
	if (count) {
		__sync_fetch_and_add(count, 1);
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&SR_CAPS, &k, &one, BPF_NOEXIST)) {
		count = bpf_map_lookup_elem(&SR_CAPS, &k);
		if (count)
			__sync_fetch_and_add(count, 1);
		else
			stat_inc(SR_STAT_CAP_FULL);
	}
	return 0;
}
