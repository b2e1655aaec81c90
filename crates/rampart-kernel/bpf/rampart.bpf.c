// SPDX-License-Identifier: GPL-2.0-only
/*
 * Rampart's sensor programs.
 *
 * Hooks: sched_process_exec/fork/exit and sys_exit, and cgroup_skb ingress/egress on the root
 * cgroup v2 for DNS and, on egress, for mining protocols in TCP payloads (see tcp_payload). The file is compiled twice (see build.rs): with RP_BTF=1 the tracing
 * programs are tp_btf and read the task, its files and the syscall registers with direct
 * (BTF-checked) loads; with RP_BTF=0 they are raw tracepoints that read everything through
 * bpf_probe_read_kernel, for kernels that refuse tp_btf. The loader tries the first, then the
 * second.
 *
 * Cost model: sys_exit runs for every syscall on the machine, so its fast path is one load of the
 * syscall number and one bit test (NR_PREFILTER); the ia32 test, the switch and everything else
 * happen only for the ~50 syscalls of interest.
 * Opens are filtered here: a read-only open of a file whose name (or directory name) is not in
 * SENSITIVE_NAMES never leaves the kernel. Records go out through one ring buffer without a
 * wakeup per record: user space polls on a short timer and is woken early only by the record
 * that takes the waiting data to cfg.wakeup_bytes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"
#include "skb.h"

#ifndef RP_BTF
#define RP_BTF 1
#endif
#ifndef RP_KFUNC
#define RP_KFUNC 0
#endif
#if RP_KFUNC && !RP_BTF
#error "RP_KFUNC needs RP_BTF"
#endif

#if RP_KFUNC
/*
 * The open filter's fast path (see do_open). bpf_rdonly_cast (a kfunc, 6.2+; the cast to void,
 * btf_id 0, 6.17+) turns a plain address into an untrusted read-only pointer: loads through it
 * are direct instructions the JIT guards with an exception-table entry (a fault reads 0), where
 * bpf_probe_read_kernel costs a helper call each, about 20 ns. The loader tries this build
 * first and falls back to the probe-read one when the verifier refuses it.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define RO_BYTES(p) ((const __u8 *)bpf_rdonly_cast((const void *)(p), 0))
#define RO_AS(type, p) ((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))
#endif

#ifndef __TARGET_ARCH_x86
#error "only x86_64 syscall numbers are mapped so far"
#endif

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before verification. */
const volatile struct rp_config CFG = {
	.v1_subsys = 0xffffffff,
	.wakeup_bytes = 256 * 1024,
	.file_events = 1,
	.net_events = 1,
	.payload_events = 1,
	.dns_events = 1,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RP_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} COUNTERS SEC(".maps");

/* File names whose opens are reported even read-only. Value bit 1: the name itself is
 * sensitive (shadow, id_rsa); bit 2: every file in a directory of that name is (.ssh, .aws). */
struct name_key {
	char name[32];
};
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct name_key);
	__type(value, __u8);
} SENSITIVE_NAMES SEC(".maps");

#define HALF 16384
#define HALF_MASK (HALF - 1)
struct scratch {
	__u8 data[2 * HALF];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} SCRATCH SEC(".maps");

struct pathbuf {
	__u8 data[2 * RP_PATH_MAX];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pathbuf);
} PATHBUF SEC(".maps");

#define AT_FDCWD -100
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define S_IFCHR 0020000
#define O_ACCMODE 3
#define O_CREAT 0100
#define O_TRUNC 01000
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define AF_PACKET 17
#define SOCK_RAW 3
#define SOCK_PACKET 10

/*
 * The x86_64 numbers of the syscalls on_sys_exit reports, as NR_<name>. One list (an X macro)
 * gives both the constants and the prefilter's bits (NR_PREFILTER), so a syscall cannot be
 * handled by the switch and dropped by the prefilter.
 */
#define X64_SYSCALLS(X, a) \
	X(open, 2, a) \
	X(kill, 62, a) \
	X(rename, 82, a) \
	X(rmdir, 84, a) \
	X(creat, 85, a) \
	X(unlink, 87, a) \
	X(chmod, 90, a) \
	X(fchmod, 91, a) \
	X(chown, 92, a) \
	X(fchown, 93, a) \
	X(lchown, 94, a) \
	X(ptrace, 101, a) \
	X(setuid, 105, a) \
	X(setgid, 106, a) \
	X(setreuid, 113, a) \
	X(setregid, 114, a) \
	X(setresuid, 117, a) \
	X(setresgid, 119, a) \
	X(setfsuid, 122, a) \
	X(setfsgid, 123, a) \
	X(capset, 126, a) \
	X(pivot_root, 155, a) \
	X(mount, 165, a) \
	X(umount2, 166, a) \
	X(init_module, 175, a) \
	X(tkill, 200, a) \
	X(tgkill, 234, a) \
	X(openat, 257, a) \
	X(unlinkat, 263, a) \
	X(renameat, 264, a) \
	X(fchownat, 260, a) \
	X(fchmodat, 268, a) \
	X(unshare, 272, a) \
	X(setns, 308, a) \
	X(finit_module, 313, a) \
	X(renameat2, 316, a) \
	X(memfd_create, 319, a) \
	X(bpf, 321, a) \
	X(openat2, 437, a) \
	X(io_uring_setup, 425, a) \
	X(open_by_handle_at, 304, a) \
	X(fchmodat2, 452, a) \
	X(socket, 41, a) \
	X(connect, 42, a) \
	X(accept, 43, a) \
	X(bind, 49, a) \
	X(listen, 50, a) \
	X(accept4, 288, a)
#define NR_CONST(name, nr, a) NR_##name = nr,
enum { X64_SYSCALLS(NR_CONST, 0) };
#undef NR_CONST

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&COUNTERS, &idx);
	if (v)
		*v += 1;
}

static __always_inline struct scratch *scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&SCRATCH, &zero);
}

static __always_inline void submit(void *data, __u32 size)
{
	if (size == 0 || size > 2 * HALF)
		return;
	/* Wake the reader when this record takes the waiting data to wakeup_bytes, not for every
	 * record once it is past: a reader that lags (a full channel, a stopped or overloaded
	 * agent) would otherwise cost every reported syscall an irq_work self-IPI, a VM exit on a
	 * virtual machine (7% of a connect storm's time here). A reader that is awake drains the
	 * ring before it polls again, and poll returns at once while data waits; one that sleeps
	 * wakes within poll_interval whatever happens here (two CPUs crossing the mark together
	 * may both miss it). */
	__u64 avail = bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (avail < CFG.wakeup_bytes && avail + size >= CFG.wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	if (bpf_ringbuf_output(&EVENTS, data, size & (2 * HALF - 1), flags))
		count(RP_CNT_DROPS);
	else
		count(RP_CNT_EVENTS);
}

/* Task access: direct loads in tp_btf programs, probe reads in raw tracepoints. */
static __always_inline struct task_struct *current_task(void)
{
#if RP_BTF
	return bpf_get_current_task_btf();
#else
	return (void *)bpf_get_current_task();
#endif
}

static __always_inline __u32 task_mntns(struct task_struct *t)
{
#if RP_BTF
	return t->nsproxy->mnt_ns->ns.inum;
#else
	return BPF_CORE_READ(t, nsproxy, mnt_ns, ns.inum);
#endif
}

static __always_inline __u32 task_ppid(struct task_struct *t)
{
#if RP_BTF
	return t->real_parent->tgid;
#else
	return BPF_CORE_READ(t, real_parent, tgid);
#endif
}

/* Is the current task one whose events we report? */
static __always_inline int wanted(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid == CFG.self_tgid)
		return 0;
	if (CFG.containers_only && task_mntns(current_task()) == CFG.host_mntns)
		return 0;
	return 1;
}

static __always_inline __u64 v1_cgroup_id(struct task_struct *t)
{
	__u32 idx = CFG.v1_subsys;
	if (idx >= 16)
		return 0;
	struct css_set *cs = BPF_CORE_READ(t, cgroups);
	struct cgroup_subsys_state *css = NULL;
	bpf_core_read(&css, sizeof(css), &cs->subsys[idx]);
	if (!css)
		return 0;
	return BPF_CORE_READ(css, cgroup, kn, id);
}

static __always_inline void fill_header(struct rp_header *h, __u32 type, __u32 nr, __s64 ret)
{
	struct task_struct *t = current_task();
	__u64 pt = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->cgroup_id = bpf_get_current_cgroup_id();
	/* A task below the v2 root is identified by its v2 cgroup; the v1 hierarchy is only
	 * needed for tasks the runtime did not place in v2 (v1-only container hosts). */
	h->cgroup_v1_id = h->cgroup_id <= 1 ? v1_cgroup_id(t) : 0;
	h->ret = ret;
	h->type = type;
	h->pid = pt >> 32;
	h->tid = (__u32)pt;
	h->ppid = task_ppid(t);
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->syscall = nr;
	h->mntns = task_mntns(t);
	h->pad = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Appends a user-space string at `off`; records it in *s; returns the new offset. */
static __always_inline __u32 put_user_str(__u8 *buf, __u32 off, struct rp_str *s, const void *src, __u32 max_is_4096)
{
	long n = 0;
	s->off = 0;
	s->len = 0;
	if (!src || off >= HALF)
		return off;
	n = bpf_probe_read_user_str(&buf[off & HALF_MASK], RP_PATH_MAX, src);
	if (n <= 0)
		return off;
	s->off = off;
	s->len = n - 1;
	return off + n;
}

static __always_inline __u32 put_kernel_str(__u8 *buf, __u32 off, struct rp_str *s, const void *src)
{
	long n = 0;
	s->off = 0;
	s->len = 0;
	if (!src || off >= HALF)
		return off;
	n = bpf_probe_read_kernel_str(&buf[off & HALF_MASK], RP_NAME_MAX, src);
	if (n <= 0)
		return off;
	s->off = off;
	s->len = n - 1;
	return off + n;
}

/*
 * Writes the path of `p` (a kernel struct path) into the per-CPU path buffer, walking dentries
 * up to the root of the task's mount namespace (a container's root for a container). Returns
 * the offset of the first byte in the buffer; the path ends at RP_PATH_MAX - 1 (NUL).
 */
static __noinline __u32 walk_path(struct pathbuf *pb, const struct path *p)
{
	struct dentry *d = BPF_CORE_READ(p, dentry);
	struct vfsmount *vmnt = BPF_CORE_READ(p, mnt);
	struct mount *mnt = (void *)((char *)vmnt - bpf_core_field_offset(struct mount, mnt));
	struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
	/* pos: index of the last byte written (the path grows towards 0). Kept masked so that the
	 * verifier sees one range, not one state per name length. */
	__u32 pos = RP_PATH_MAX - 1;
	pb->data[RP_PATH_MAX - 1] = 0;

	for (int i = 0; i < RP_PATH_DEPTH; i++) {
		struct dentry *root = BPF_CORE_READ(vmnt, mnt_root);
		struct dentry *dparent = BPF_CORE_READ(d, d_parent);
		if (d == root || d == dparent) {
			if (d != root || mnt == parent)
				break;
			/* Cross to the mount point in the parent mount. */
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			parent = BPF_CORE_READ(mnt, mnt_parent);
			vmnt = (void *)((char *)mnt + bpf_core_field_offset(struct mount, mnt));
			continue;
		}
		/* NAME_MAX is 255: the mask loses nothing. */
		__u32 len = BPF_CORE_READ(d, d_name.len) & (RP_NAME_MAX - 1);
		const unsigned char *name = BPF_CORE_READ(d, d_name.name);
		if (len == 0 || pos <= len + 1)
			break;
		pos = (pos - len - 1) & (RP_PATH_MAX - 1);
		bpf_probe_read_kernel(&pb->data[(pos + 1) & (RP_PATH_MAX - 1)], len, name);
		pb->data[pos & (RP_PATH_MAX - 1)] = '/';
		d = dparent;
	}
	if (pos == RP_PATH_MAX - 1) {
		pos -= 1;
		pb->data[pos & (RP_PATH_MAX - 1)] = '/';
	}
	return pos & (RP_PATH_MAX - 1);
}

/* Appends the path of `p` to buf at off; returns the new offset. */
static __always_inline __u32 put_path(__u8 *buf, __u32 off, struct rp_str *s, const struct path *p)
{
	__u32 zero = 0;
	s->off = 0;
	s->len = 0;
	struct pathbuf *pb = bpf_map_lookup_elem(&PATHBUF, &zero);
	if (!pb || !p || off >= HALF)
		return off;
	__u32 start = walk_path(pb, p);
	__u32 len = RP_PATH_MAX - start; /* NUL included */
	if (start >= RP_PATH_MAX || len == 0 || len > RP_PATH_MAX)
		return off;
	bpf_probe_read_kernel(&buf[off & HALF_MASK], len & (RP_PATH_MAX * 2 - 1), &pb->data[start & (RP_PATH_MAX - 1)]);
	s->off = off;
	s->len = len - 1;
	return off + len;
}

/* The open file behind descriptor `fd` of the current task. */
static __always_inline struct file *fd_file(long fd)
{
	if (fd < 0)
		return NULL;
	struct task_struct *t = current_task();
#if RP_BTF
	struct fdtable *fdt = t->files->fdt;
	__u32 max = fdt->max_fds;
	struct file **fds = fdt->fd;
#else
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	__u32 max = BPF_CORE_READ(fdt, max_fds);
	struct file **fds = BPF_CORE_READ(fdt, fd);
#endif
	if ((__u64)fd >= max)
		return NULL;
#if RP_KFUNC
	/* The fd table is an array of plain addresses to the verifier: read the slot directly. */
	return *(struct file *const *)RO_BYTES(&fds[fd]);
#else
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
#endif
}

/* Appends the path a relative user path is relative to (cwd or dirfd's path); nothing for an
 * absolute one. */
static __always_inline __u32 put_base(__u8 *buf, __u32 off, struct rp_str *s, long dirfd, const char *upath)
{
	char first = 0;
	s->off = 0;
	s->len = 0;
	bpf_probe_read_user(&first, 1, upath);
	if (first == '/' || first == 0)
		return off;
	if ((int)dirfd == AT_FDCWD) {
		struct fs_struct *fs = BPF_CORE_READ(current_task(), fs);
		return put_path(buf, off, s, &fs->pwd);
	}
	struct file *f = fd_file(dirfd);
	if (!f)
		return off;
	return put_path(buf, off, s, &f->f_path);
}

static __always_inline void fdinfo(long fd, struct rp_fdinfo *out)
{
	out->mode = 0;
	out->family = 0;
	out->rdev = 0;
	struct file *f = fd_file(fd);
	if (!f)
		return;
	struct inode *ino = BPF_CORE_READ(f, f_inode);
	__u16 mode = BPF_CORE_READ(ino, i_mode);
	out->mode = (mode & S_IFMT) >> 12;
	if ((mode & S_IFMT) == S_IFSOCK) {
		struct socket *sock = BPF_CORE_READ(f, private_data);
		out->family = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	} else if ((mode & S_IFMT) == S_IFCHR) {
		out->rdev = BPF_CORE_READ(ino, i_rdev);
	}
}

/* A syscall as the exit hook sees it: the registers and whether it came in through the ia32
 * entry (int 0x80, sysenter, or a 32-bit process), whose numbers and argument registers differ. */
struct sctx {
	struct pt_regs *regs;
	int compat;
};

static __always_inline __u64 sys_arg(const struct sctx *c, int n)
{
	struct pt_regs *regs = c->regs;
	if (c->compat) {
		/* ia32: ebx, ecx, edx, esi, edi, ebp; values are 32 bits. */
#if RP_BTF
		switch (n) {
		case 0: return (__u32)regs->bx;
		case 1: return (__u32)regs->cx;
		case 2: return (__u32)regs->dx;
		case 3: return (__u32)regs->si;
		case 4: return (__u32)regs->di;
		default: return (__u32)regs->bp;
		}
#else
		switch (n) {
		case 0: return (__u32)BPF_CORE_READ(regs, bx);
		case 1: return (__u32)BPF_CORE_READ(regs, cx);
		case 2: return (__u32)BPF_CORE_READ(regs, dx);
		case 3: return (__u32)BPF_CORE_READ(regs, si);
		case 4: return (__u32)BPF_CORE_READ(regs, di);
		default: return (__u32)BPF_CORE_READ(regs, bp);
		}
#endif
	}
#if RP_BTF
	switch (n) {
	case 0: return regs->di;
	case 1: return regs->si;
	case 2: return regs->dx;
	case 3: return regs->r10;
	case 4: return regs->r8;
	default: return regs->r9;
	}
#else
	switch (n) {
	case 0: return BPF_CORE_READ(regs, di);
	case 1: return BPF_CORE_READ(regs, si);
	case 2: return BPF_CORE_READ(regs, dx);
	case 3: return BPF_CORE_READ(regs, r10);
	case 4: return BPF_CORE_READ(regs, r8);
	default: return BPF_CORE_READ(regs, r9);
	}
#endif
}

/* ---------------------------------------------------------------- process lifecycle */

static __always_inline int on_exec(struct task_struct *t, struct linux_binprm *bprm)
{
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_exec *e = (void *)sc->data;
	fill_header(&e->h, RP_EXEC, 0xffffffff, 0);

	const struct cred *cred = BPF_CORE_READ(t, cred);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	e->loginuid = 0xffffffff;
	if (bpf_core_field_exists(t->loginuid))
		e->loginuid = BPF_CORE_READ(t, loginuid.val);
	e->tty = 0;
	struct tty_struct *tty = BPF_CORE_READ(t, signal, tty);
	if (tty) {
		int major = BPF_CORE_READ(tty, driver, major);
		int minor = BPF_CORE_READ(tty, driver, minor_start) + BPF_CORE_READ(tty, index);
		e->tty = ((__u32)major << 20) | (__u32)minor;
	}
	e->cap_effective = 0;
	e->cap_permitted = 0;
	bpf_core_read(&e->cap_effective, sizeof(e->cap_effective), &cred->cap_effective);
	bpf_core_read(&e->cap_permitted, sizeof(e->cap_permitted), &cred->cap_permitted);
	e->start_ns = BPF_CORE_READ(t, start_boottime);
	struct file *exe = BPF_CORE_READ(bprm, file);
	e->exe_nlink = BPF_CORE_READ(exe, f_inode, __i_nlink);
	{
		/* vpid: the pid in the task's innermost pid namespace. */
		struct pid *pid = BPF_CORE_READ(t, thread_pid);
		unsigned int level = BPF_CORE_READ(pid, level);
		struct upid up = {};
		bpf_core_read(&up, sizeof(up), &pid->numbers[level & 7]);
		e->vpid = up.nr;
	}
	fdinfo(0, &e->stdin_info);
	fdinfo(1, &e->stdout_info);

	__u32 off = sizeof(*e);
	off = put_kernel_str(sc->data, off, &e->filename, BPF_CORE_READ(bprm, filename));
	off = put_path(sc->data, off, &e->exe, &exe->f_path);

	/* argv: the new image's argument area. */
	struct mm_struct *mm = BPF_CORE_READ(t, mm);
	unsigned long as = BPF_CORE_READ(mm, arg_start);
	unsigned long ae = BPF_CORE_READ(mm, arg_end);
	__u64 alen = ae > as ? ae - as : 0;
	e->args_truncated = 0;
	if (alen > RP_ARGS_MAX - 1) {
		alen = RP_ARGS_MAX - 1;
		e->args_truncated = 1;
		count(RP_CNT_TRUNCATED);
	}
	e->args.off = 0;
	e->args.len = 0;
	e->args_len = 0;
	if (alen > 0 && off < HALF) {
		if (bpf_probe_read_user(&sc->data[off & HALF_MASK], alen & (RP_ARGS_MAX - 1), (void *)as) == 0) {
			e->args.off = off;
			e->args.len = alen;
			e->args_len = alen;
			off += alen;
		}
	}
	struct fs_struct *fs = BPF_CORE_READ(t, fs);
	off = put_path(sc->data, off, &e->cwd, &fs->pwd);
	e->h.size = off;
	submit(sc->data, off);
	return 0;
}

static __always_inline int on_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 cpid = BPF_CORE_READ(child, pid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (cpid != ctgid)
		return 0; /* a new thread, not a new process */
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_sys *e = (void *)sc->data;
	fill_header(&e->h, RP_FORK, 0xffffffff, ctgid);
	__builtin_memset(e->a, 0, sizeof(e->a));
	__builtin_memset(e->s, 0, sizeof(e->s));
	e->a[0] = ctgid;
	e->a[1] = BPF_CORE_READ(child, start_boottime);
	e->pad = 0;
	e->h.size = sizeof(*e);
	submit(e, sizeof(*e));
	return 0;
}

static __always_inline int on_exit(struct task_struct *t)
{
	if (BPF_CORE_READ(t, signal, live.counter) != 0)
		return 0; /* other threads of the process still run */
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_sys *e = (void *)sc->data;
	fill_header(&e->h, RP_EXIT, 0xffffffff, 0);
	__builtin_memset(e->a, 0, sizeof(e->a));
	__builtin_memset(e->s, 0, sizeof(e->s));
	e->a[0] = BPF_CORE_READ(t, exit_code);
	e->pad = 0;
	e->h.size = sizeof(*e);
	submit(e, sizeof(*e));
	return 0;
}

/* ---------------------------------------------------------------- syscalls */

static __always_inline struct rp_sys *sys_record(struct scratch *sc, __u32 type, __u32 nr, long ret)
{
	struct rp_sys *e = (void *)sc->data;
	fill_header(&e->h, type, nr, ret);
	__builtin_memset(e->a, 0, sizeof(e->a));
	__builtin_memset(e->s, 0, sizeof(e->s));
	e->pad = 0;
	return e;
}

/*
 * The part of a dentry the open filter needs, read with one probe read: the parent pointer, the
 * name (struct qstr) and, right after them, the inline storage where the kernel keeps every name
 * shorter than about 40 bytes (d_shortname, d_iname before 6.14). Whether the name is inline is
 * told by its pointer, not by field names, so the layout of older kernels works the same way.
 */
#if !RP_KFUNC
#define DCHUNK 128 /* a power of two: indexes are masked with DCHUNK - 1 */
struct dchunk {
	__u8 b[DCHUNK];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct dchunk);
} DCHUNKS SEC(".maps");
#endif

/* Is bit `bit` set in a 256-bit filter of CFG? */
static __always_inline int filter_has(const volatile __u64 *f, __u32 bit)
{
	return (f[(bit >> 6) & 3] >> (bit & 63)) & 1;
}

/*
 * Tests `d`'s name against SENSITIVE_NAMES (value bit `want`); *parent gets d's parent. Reads
 * the name bytes and looks the map up only when the name's length, first and last byte pass the
 * filter (CFG.name_filter or dir_filter): one probe read for almost every dentry.
 */
#if RP_KFUNC
/* The same test with direct loads: `d` is an untrusted dentry (RO_AS), no chunk to copy. */
static __always_inline __u8 sensitive_dentry(struct dentry *d, __u32 slot, __u64 len_mask,
					     const volatile __u64 *filter, struct dentry **parent)
{
	(void)slot;
	*parent = d->d_parent;
	__u32 len = d->d_name.len;
	if (len == 0 || len >= sizeof(((struct name_key *)0)->name) || !(len_mask & (1ULL << len)))
		return 0;
	const unsigned char *name = d->d_name.name;
	const __u8 *b = RO_BYTES(name);
	if (!filter_has(filter, RP_NAME_BIT(len, b[0], b[(len - 1) & 31])))
		return 0;
	struct name_key key = {};
	bpf_probe_read_kernel_str(key.name, sizeof(key.name), name);
	__u8 *v = bpf_map_lookup_elem(&SENSITIVE_NAMES, &key);
	return v ? *v : 0;
}
#else
static __always_inline __u8 sensitive_dentry(struct dentry *d, __u32 slot, __u64 len_mask,
					     const volatile __u64 *filter, struct dentry **parent)
{
	__u32 off_parent = bpf_core_field_offset(struct dentry, d_parent);
	__u32 off_name = bpf_core_field_offset(struct dentry, d_name);
	struct dchunk *c = bpf_map_lookup_elem(&DCHUNKS, &slot);
	*parent = NULL;
	if (!c || off_name < off_parent || off_name - off_parent > DCHUNK - 16)
		return 0;
	if (bpf_probe_read_kernel(c->b, DCHUNK, (char *)d + off_parent))
		return 0;
	__u32 qoff = (off_name - off_parent) & (DCHUNK - 1);
	struct dentry *p = NULL;
	__builtin_memcpy(&p, &c->b[0], sizeof(p));
	*parent = p;
	__u32 len = 0;
	__u64 name = 0;
	/* struct qstr: u32 hash, u32 len (little endian hash_len), then the name pointer. */
	if (qoff > DCHUNK - 16)
		return 0;
	__builtin_memcpy(&len, &c->b[qoff + 4], 4);
	__builtin_memcpy(&name, &c->b[qoff + 8], 8);
	if (len == 0 || len >= sizeof(((struct name_key *)0)->name) || !(len_mask & (1ULL << len)))
		return 0;
	/* Inline names are tested on the bytes already read; others (rare for names this short)
	 * take one more read of their first and last byte. */
	__u8 c0 = 0, cl = 0;
	__u64 inl = name - ((__u64)d + off_parent);
	if (inl < DCHUNK && inl + len <= DCHUNK) {
		c0 = c->b[inl & (DCHUNK - 1)];
		cl = c->b[(inl + len - 1) & (DCHUNK - 1)];
	} else {
		bpf_probe_read_kernel(&c0, 1, (void *)name);
		bpf_probe_read_kernel(&cl, 1, (void *)(name + len - 1));
	}
	if (!filter_has(filter, RP_NAME_BIT(len, c0, cl)))
		return 0;
	struct name_key key = {};
	bpf_probe_read_kernel_str(key.name, sizeof(key.name), (void *)name);
	__u8 *v = bpf_map_lookup_elem(&SENSITIVE_NAMES, &key);
	return v ? *v : 0;
}
#endif

static __always_inline int do_open(const struct sctx *regs, long ret, __u32 nr)
{
	if (ret < 0)
		return 0;
	__u64 flags = 0, mode = 0;
	switch (nr) {
	case NR_open:
		flags = sys_arg(regs, 1);
		mode = sys_arg(regs, 2);
		break;
	case NR_creat:
		flags = 01 | O_CREAT | O_TRUNC;
		mode = sys_arg(regs, 1);
		break;
	case NR_openat:
		flags = sys_arg(regs, 2);
		mode = sys_arg(regs, 3);
		break;
	case NR_open_by_handle_at: /* (mount_fd, handle, flags): a file reached without a path */
		flags = sys_arg(regs, 2);
		break;
	default: { /* openat2 */
		struct open_how how = {};
		bpf_probe_read_user(&how, sizeof(how), (void *)sys_arg(regs, 2));
		flags = how.flags;
		mode = how.mode;
	}
	}
	struct file *f = fd_file(ret);
	if (!f)
		return 0;
#if RP_KFUNC
	struct file *fv = RO_AS(struct file, f);
	struct dentry *d = fv->f_path.dentry;
#define FILE_IMODE() (fv->f_inode->i_mode)
#else
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
#define FILE_IMODE() BPF_CORE_READ(f, f_inode, i_mode)
#endif
	int write = (flags & O_ACCMODE) != 0 || (flags & (O_CREAT | O_TRUNC)) != 0;
	__u16 imode = 0;
	/* Cheapest test first: most opens are read-only and of files nobody listed. */
	struct dentry *parent = NULL, *grand = NULL;
	__u8 sens = sensitive_dentry(d, 0, CFG.name_len_mask, CFG.name_filter, &parent) & 1;
	if (!sens && CFG.dir_len_mask && parent && parent != d)
		sens = (sensitive_dentry(parent, 1, CFG.dir_len_mask, CFG.dir_filter, &grand) & 2) ? 1 : 0;
	if (!sens) {
		if (!write) {
			count(RP_CNT_FILTERED);
			return 0;
		}
		imode = FILE_IMODE();
		if ((imode & S_IFMT) != S_IFREG) {
			count(RP_CNT_FILTERED);
			return 0;
		}
	} else {
		imode = FILE_IMODE();
	}
#undef FILE_IMODE
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_sys *e = sys_record(sc, RP_OPEN, nr, ret);
	e->a[0] = flags;
	e->a[1] = mode;
	e->a[2] = sens;
	e->a[3] = ret;
	e->a[4] = imode;
	__u32 off = put_path(sc->data, sizeof(*e), &e->s[0], &f->f_path);
	e->h.size = off;
	submit(sc->data, off);
	return 0;
}

/* unlink, rmdir, unlinkat, chmod, fchmodat, chown, lchown, fchownat, fchmod, fchown */
static __always_inline int do_path_op(const struct sctx *regs, long ret, __u32 nr, __u32 type)
{
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_sys *e = sys_record(sc, type, nr, ret);
	__u32 off = sizeof(*e);
	long dirfd = AT_FDCWD;
	const char *upath = NULL;
	switch (nr) {
	case NR_unlink:
	case NR_rmdir:
		upath = (void *)sys_arg(regs, 0);
		e->a[0] = nr == NR_rmdir ? 0x200 : 0;
		break;
	case NR_unlinkat:
		dirfd = sys_arg(regs, 0);
		upath = (void *)sys_arg(regs, 1);
		e->a[0] = sys_arg(regs, 2);
		break;
	case NR_chmod:
		upath = (void *)sys_arg(regs, 0);
		e->a[0] = sys_arg(regs, 1);
		break;
	case NR_fchmodat:
	case NR_fchmodat2:
		dirfd = sys_arg(regs, 0);
		upath = (void *)sys_arg(regs, 1);
		e->a[0] = sys_arg(regs, 2);
		break;
	case NR_chown:
	case NR_lchown:
		upath = (void *)sys_arg(regs, 0);
		e->a[1] = sys_arg(regs, 1);
		e->a[2] = sys_arg(regs, 2);
		break;
	case NR_fchownat:
		dirfd = sys_arg(regs, 0);
		upath = (void *)sys_arg(regs, 1);
		e->a[1] = sys_arg(regs, 2);
		e->a[2] = sys_arg(regs, 3);
		break;
	case NR_fchmod:
	case NR_fchown: {
		struct file *f = fd_file(sys_arg(regs, 0));
		if (nr == NR_fchmod) {
			e->a[0] = sys_arg(regs, 1);
		} else {
			e->a[1] = sys_arg(regs, 1);
			e->a[2] = sys_arg(regs, 2);
		}
		if (f)
			off = put_path(sc->data, off, &e->s[0], &f->f_path);
		e->h.size = off;
		submit(sc->data, off);
		return 0;
	}
	}
	off = put_user_str(sc->data, off, &e->s[0], upath, 1);
	off = put_base(sc->data, off, &e->s[2], dirfd, upath);
	e->h.size = off;
	submit(sc->data, off);
	return 0;
}

static __always_inline int do_rename(const struct sctx *regs, long ret, __u32 nr)
{
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_sys *e = sys_record(sc, RP_RENAME, nr, ret);
	long dirfd = AT_FDCWD;
	const char *oldp, *newp;
	if (nr == NR_rename) {
		oldp = (void *)sys_arg(regs, 0);
		newp = (void *)sys_arg(regs, 1);
	} else {
		dirfd = sys_arg(regs, 0);
		oldp = (void *)sys_arg(regs, 1);
		newp = (void *)sys_arg(regs, 3);
		if (nr == NR_renameat2)
			e->a[0] = sys_arg(regs, 4);
	}
	__u32 off = sizeof(*e);
	off = put_user_str(sc->data, off, &e->s[0], oldp, 1);
	off = put_user_str(sc->data, off, &e->s[1], newp, 1);
	off = put_base(sc->data, off, &e->s[2], dirfd, oldp);
	e->h.size = off;
	submit(sc->data, off);
	return 0;
}

/* mount, umount2, pivot_root, memfd_create: string arguments only. */
static __always_inline int do_strings(const struct sctx *regs, long ret, __u32 nr, __u32 type, int nstr)
{
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_sys *e = sys_record(sc, type, nr, ret);
	__u32 off = sizeof(*e);
	off = put_user_str(sc->data, off, &e->s[0], (void *)sys_arg(regs, 0), 1);
	if (nstr > 1)
		off = put_user_str(sc->data, off, &e->s[1], (void *)sys_arg(regs, 1), 1);
	if (nstr > 2)
		off = put_user_str(sc->data, off, &e->s[2], (void *)sys_arg(regs, 2), 1);
	switch (nr) {
	case NR_mount:
		e->a[0] = sys_arg(regs, 3);
		break;
	case NR_umount2:
	case NR_memfd_create:
		e->a[0] = sys_arg(regs, 1);
		break;
	}
	e->h.size = off;
	submit(sc->data, off);
	return 0;
}

/* Numeric-argument privilege syscalls. */
static __always_inline int do_numeric(const struct sctx *regs, long ret, __u32 nr, __u32 type)
{
	__u64 a0 = sys_arg(regs, 0);
	__u64 a1 = sys_arg(regs, 1);
	switch (nr) {
	case NR_kill:
	case NR_tkill:
		if (a1 == 0 || (__u32)a0 == (bpf_get_current_pid_tgid() >> 32))
			return 0;
		break;
	case NR_tgkill:
		if (sys_arg(regs, 2) == 0 || (__u32)a0 == (bpf_get_current_pid_tgid() >> 32))
			return 0;
		break;
	case NR_ptrace:
		/* attach, seize, traceme and the requests that write into the tracee */
		if (!(a0 == 0 || a0 == 4 || a0 == 5 || a0 == 6 || a0 == 13 || a0 == 16 || a0 == 0x4205 || a0 == 0x4206))
			return 0;
		break;
	case NR_bpf:
		/* program loads and attachments, not map operations */
		if (!(a0 == 5 || a0 == 8 || a0 == 17 || a0 == 28))
			return 0;
		break;
	}
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_sys *e = sys_record(sc, type, nr, ret);
	__u32 off = sizeof(*e);
	e->a[0] = a0;
	e->a[1] = a1;
	e->a[2] = sys_arg(regs, 2);
	switch (nr) {
	case NR_capset: {
		struct __user_cap_data_struct d[2] = {};
		bpf_probe_read_user(&d, sizeof(d), (void *)a1);
		e->a[0] = ((__u64)d[1].effective << 32) | d[0].effective;
		e->a[1] = ((__u64)d[1].permitted << 32) | d[0].permitted;
		e->a[2] = ((__u64)d[1].inheritable << 32) | d[0].inheritable;
		break;
	}
	case NR_bpf:
		if (a0 == 5) {
			__u32 prog_type = 0;
			bpf_probe_read_user(&prog_type, sizeof(prog_type), (void *)a1);
			e->a[1] = prog_type;
		}
		break;
	case NR_setns: {
		struct file *f = fd_file(a0);
		if (f)
			e->a[2] = BPF_CORE_READ(f, f_inode, i_ino);
		e->a[3] = a1;
		break;
	}
	case NR_finit_module: {
		struct file *f = fd_file(a0);
		if (f)
			off = put_path(sc->data, off, &e->s[0], &f->f_path);
		break;
	}
	case NR_tgkill:
		e->a[1] = sys_arg(regs, 2);
		break;
	case NR_io_uring_setup: {
		/* struct io_uring_params: sq_entries, cq_entries, then flags (u32 each). */
		__u32 flags = 0;
		bpf_probe_read_user(&flags, sizeof(flags), (void *)(a1 + 8));
		e->a[1] = flags;
		e->a[2] = 0;
		break;
	}
	}
	e->h.size = off;
	submit(sc->data, off);
	return 0;
}

#if !RP_KFUNC
/* The head of struct sock_common as every kernel since 4.x lays it out: one read instead of
 * six. The layout is checked against the running kernel's BTF (the offsets are CO-RE
 * relocated constants); elsewhere the fields are read one by one. */
struct skc_head {
	__u32 daddr;
	__u32 rcv_saddr;
	__u32 hash;
	__u16 dport;
	__u16 num;
	__u16 family;
};

static __always_inline int skc_head_matches(void)
{
	return bpf_core_field_offset(struct sock_common, skc_daddr) == 0 &&
	       bpf_core_field_offset(struct sock_common, skc_rcv_saddr) == 4 &&
	       bpf_core_field_offset(struct sock_common, skc_dport) == 12 &&
	       bpf_core_field_offset(struct sock_common, skc_num) == 14 &&
	       bpf_core_field_offset(struct sock_common, skc_family) == 16 &&
	       bpf_core_field_offset(struct sock, __sk_common) == 0;
}
#endif

#if RP_KFUNC
/* The same fields as below, as direct loads: `sk` is an untrusted struct sock (RO_AS). */
static __always_inline void sock_addrs(struct sock *sk, struct rp_net *n)
{
	n->family = sk->__sk_common.skc_family;
	n->lport = sk->__sk_common.skc_num;
	n->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (n->family == AF_INET) {
		__u32 l = sk->__sk_common.skc_rcv_saddr;
		__u32 r = sk->__sk_common.skc_daddr;
		__builtin_memcpy(n->laddr, &l, 4);
		__builtin_memcpy(n->raddr, &r, 4);
	}
	n->sock_type = sk->sk_type;
	n->protocol = sk->sk_protocol;
	if (n->family == AF_INET6) {
		struct in6_addr l6 = sk->__sk_common.skc_v6_rcv_saddr;
		struct in6_addr r6 = sk->__sk_common.skc_v6_daddr;
		__builtin_memcpy(n->laddr, &l6, 16);
		__builtin_memcpy(n->raddr, &r6, 16);
	}
}
#else
static __always_inline void sock_addrs(struct sock *sk, struct rp_net *n)
{
	if (skc_head_matches()) {
		struct skc_head hd = {};
		bpf_probe_read_kernel(&hd, sizeof(hd), sk);
		n->family = hd.family;
		n->lport = hd.num;
		n->rport = bpf_ntohs(hd.dport);
		if (hd.family == AF_INET) {
			__builtin_memcpy(n->laddr, &hd.rcv_saddr, 4);
			__builtin_memcpy(n->raddr, &hd.daddr, 4);
		}
	} else {
		n->family = BPF_CORE_READ(sk, __sk_common.skc_family);
		n->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		n->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (n->family == AF_INET) {
			__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
			__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
			__builtin_memcpy(n->laddr, &l, 4);
			__builtin_memcpy(n->raddr, &r, 4);
		}
	}
	if (bpf_core_field_offset(struct sock, sk_protocol) == bpf_core_field_offset(struct sock, sk_type) + 2) {
		__u16 tp[2] = {};
		bpf_probe_read_kernel(tp, sizeof(tp), (char *)sk + bpf_core_field_offset(struct sock, sk_type));
		n->sock_type = tp[0];
		n->protocol = tp[1];
	} else {
		n->sock_type = BPF_CORE_READ(sk, sk_type);
		n->protocol = BPF_CORE_READ(sk, sk_protocol);
	}
	if (n->family == AF_INET6) {
		BPF_CORE_READ_INTO(&n->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&n->raddr, sk, __sk_common.skc_v6_daddr);
	}
}
#endif

/* Reads a user sockaddr into the local (which == 0) or remote end of n; a unix path is appended
 * to buf. Returns the new offset. */
static __always_inline __u32 user_sockaddr(__u8 *buf, __u32 off, struct rp_net *n, const void *uaddr, int remote)
{
	if (!uaddr)
		return off;
	/* One read covers sockaddr_in and sockaddr_in6; a unix path is read separately. */
	struct sockaddr_in6 sa6 = {};
	bpf_probe_read_user(&sa6, sizeof(sa6), uaddr);
	__u16 family = sa6.sin6_family;
	if (family == AF_INET) {
		struct sockaddr_in sa = {};
		__builtin_memcpy(&sa, &sa6, sizeof(sa));
		n->family = AF_INET;
		if (remote) {
			n->rport = bpf_ntohs(sa.sin_port);
			__builtin_memcpy(n->raddr, &sa.sin_addr, 4);
		} else {
			n->lport = bpf_ntohs(sa.sin_port);
			__builtin_memcpy(n->laddr, &sa.sin_addr, 4);
		}
	} else if (family == AF_INET6) {
		struct sockaddr_in6 sa = sa6;
		n->family = AF_INET6;
		if (remote) {
			n->rport = bpf_ntohs(sa.sin6_port);
			__builtin_memcpy(n->raddr, &sa.sin6_addr, 16);
		} else {
			n->lport = bpf_ntohs(sa.sin6_port);
			__builtin_memcpy(n->laddr, &sa.sin6_addr, 16);
		}
	} else if (family == AF_UNIX) {
		const char *path = (const char *)uaddr + 2;
		char first = 0;
		n->family = AF_UNIX;
		bpf_probe_read_user(&first, 1, path);
		/* abstract names start with NUL: keep the NUL out, user space prints '@' */
		if (first == 0) {
			n->pad0 = 1;
			path += 1;
		}
		if (off < HALF) {
			long r = bpf_probe_read_user_str(&buf[off & HALF_MASK], 108, path);
			if (r > 0) {
				n->unix_path.off = off;
				n->unix_path.len = r - 1;
				off += r;
			}
		}
	}
	return off;
}

static __always_inline int do_net(const struct sctx *regs, long ret, __u32 nr, __u32 type)
{
	if (!wanted())
		return 0;
	/* a failed accept/bind/listen is noise; a failed connect is an attempt worth seeing */
	if (ret < 0 && type != RP_CONNECT)
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_net *n = (void *)sc->data;
	fill_header(&n->h, type, nr, ret);
	__builtin_memset((char *)n + sizeof(n->h), 0, sizeof(*n) - sizeof(n->h));
	long fd = type == RP_ACCEPT ? ret : (long)sys_arg(regs, 0);
	n->fd = fd;
	struct file *f = fd_file(fd);
	struct sock *sk = NULL;
	if (f) {
#if RP_KFUNC
		struct socket *sock = RO_AS(struct file, f)->private_data;
		if (sock)
			sk = RO_AS(struct socket, sock)->sk;
#else
		struct socket *sock = BPF_CORE_READ(f, private_data);
		sk = BPF_CORE_READ(sock, sk);
#endif
	}
	if (sk)
		sock_addrs(sk, n);
	__u32 off = sizeof(*n);
	if (type == RP_CONNECT)
		off = user_sockaddr(sc->data, off, n, (void *)sys_arg(regs, 1), 1);
	else if (type == RP_BIND)
		off = user_sockaddr(sc->data, off, n, (void *)sys_arg(regs, 1), 0);
	if (n->family != AF_INET && n->family != AF_INET6 && n->family != AF_UNIX)
		return 0; /* netlink, packet, vsock...: not reported */
	n->h.size = off;
	submit(sc->data, off);
	return 0;
}

/* socket(): only raw and packet sockets (sniffing, spoofing, hand-made packets) are reported;
 * the filter reads two registers, so ordinary sockets cost next to nothing. */
static __always_inline int do_socket(const struct sctx *regs, long ret, __u32 nr)
{
	__u64 domain = sys_arg(regs, 0);
	__u64 type = sys_arg(regs, 1);
	__u32 base = type & 0xf; /* SOCK_NONBLOCK and SOCK_CLOEXEC are above */
	if (domain != AF_PACKET && base != SOCK_RAW && base != SOCK_PACKET)
		return 0;
	if (!wanted())
		return 0;
	struct scratch *sc = scratch();
	if (!sc)
		return 0;
	struct rp_sys *e = sys_record(sc, RP_SOCKET, nr, ret);
	e->a[0] = domain;
	e->a[1] = type;
	e->a[2] = sys_arg(regs, 2);
	e->h.size = sizeof(*e);
	submit(sc->data, sizeof(*e));
	return 0;
}

#define TS_COMPAT 0x0002 /* arch/x86/include/asm/thread_info.h */

/* The x86_64 number of the ia32 syscall `nr` among those reported, or 0xffffffff. Ia32 numbers
 * mean other syscalls on x86_64 (5 is open there, fstat here), so a 32-bit call, or an int 0x80
 * from a 64-bit process (a known way around tools that only read x86_64 numbers), is decoded
 * with this table. socketcall(2) (102, the multiplexed socket calls) is not decoded. */
/*
 * ia32 syscall number -> x86_64 name, for every ia32 syscall the sensor reports (a 32-bit
 * process, or int 0x80 from a 64-bit one). io_uring_setup has one number (425) in both ABIs,
 * like every syscall from 403 on.
 */
#define IA32_SYSCALLS(X, a) \
	X(5, open, a) \
	X(8, creat, a) \
	X(295, openat, a) \
	X(437, openat2, a) \
	X(342, open_by_handle_at, a) \
	X(10, unlink, a) \
	X(301, unlinkat, a) \
	X(40, rmdir, a) \
	X(15, chmod, a) \
	X(94, fchmod, a) \
	X(306, fchmodat, a) \
	X(452, fchmodat2, a) \
	X(182, chown, a) \
	X(212, chown, a) \
	X(16, lchown, a) \
	X(198, lchown, a) \
	X(95, fchown, a) \
	X(207, fchown, a) \
	X(298, fchownat, a) \
	X(38, rename, a) \
	X(302, renameat, a) \
	X(353, renameat2, a) \
	X(21, mount, a) \
	X(52, umount2, a) \
	X(217, pivot_root, a) \
	X(356, memfd_create, a) \
	X(23, setuid, a) \
	X(213, setuid, a) \
	X(46, setgid, a) \
	X(214, setgid, a) \
	X(70, setreuid, a) \
	X(203, setreuid, a) \
	X(71, setregid, a) \
	X(204, setregid, a) \
	X(164, setresuid, a) \
	X(208, setresuid, a) \
	X(170, setresgid, a) \
	X(210, setresgid, a) \
	X(138, setfsuid, a) \
	X(215, setfsuid, a) \
	X(139, setfsgid, a) \
	X(216, setfsgid, a) \
	X(185, capset, a) \
	X(26, ptrace, a) \
	X(310, unshare, a) \
	X(346, setns, a) \
	X(128, init_module, a) \
	X(350, finit_module, a) \
	X(357, bpf, a) \
	X(425, io_uring_setup, a) \
	X(37, kill, a) \
	X(238, tkill, a) \
	X(270, tgkill, a) \
	X(359, socket, a) \
	X(362, connect, a) \
	X(361, bind, a) \
	X(363, listen, a) \
	X(364, accept4, a)

static __always_inline __u32 ia32_to_x64(__u32 nr)
{
	switch (nr) {
#define IA32_CASE(n32, name, a) case n32: return NR_##name;
		IA32_SYSCALLS(IA32_CASE, 0)
#undef IA32_CASE
	}
	return 0xffffffff;
}

/*
 * The prefilter: one bit per syscall number either list above reports (numbers below 512).
 * sys_exit runs for every syscall on the machine; most (read, write, close, futex, epoll_wait)
 * leave after this one load, before the ia32 test (a helper call) and the switch.
 */
#define NR_BIT(nr, w) ((((nr) >> 6) == (w)) ? (1ULL << ((nr) & 63)) : 0ULL)
#define X64_BIT(name, nr, w) | NR_BIT(nr, w)
#define IA32_BIT(n32, name, w) | NR_BIT(n32, w)
#define NR_WORD(w) (0ULL X64_SYSCALLS(X64_BIT, w) IA32_SYSCALLS(IA32_BIT, w))
static const __u64 NR_PREFILTER[8] = {
	NR_WORD(0), NR_WORD(1), NR_WORD(2), NR_WORD(3),
	NR_WORD(4), NR_WORD(5), NR_WORD(6), NR_WORD(7),
};
#define X64_BOUND(name, nr, a) _Static_assert((nr) < 512, "NR_" #name " is past the prefilter");
#define IA32_BOUND(n32, name, a) _Static_assert((n32) < 512, "ia32 " #name " is past the prefilter");
X64_SYSCALLS(X64_BOUND, 0)
IA32_SYSCALLS(IA32_BOUND, 0)
#undef X64_BOUND
#undef IA32_BOUND

static __always_inline int nr_reported(__u32 nr)
{
	if (nr >= 512)
		return 0;
	/* The mask bounds the index for the verifier; without the barrier clang drops it (nr <
	 * 512 makes it redundant) and indexes with a copy of nr the verifier has no bound for. */
	__u32 w = nr >> 6;
	barrier_var(w);
	return (NR_PREFILTER[w & 7] >> (nr & 63)) & 1;
}

static __always_inline int in_ia32_syscall(void)
{
#if RP_BTF
	return bpf_get_current_task_btf()->thread_info.status & TS_COMPAT;
#else
	return BPF_CORE_READ(current_task(), thread_info.status) & TS_COMPAT;
#endif
}

static __always_inline int on_sys_exit(struct pt_regs *pregs, long ret, __u32 nr)
{
	if (!nr_reported(nr))
		return 0;
	struct sctx ctx = {.regs = pregs, .compat = 0};
	const struct sctx *regs = &ctx;
	if (in_ia32_syscall()) {
		ctx.compat = 1;
		nr = ia32_to_x64(nr);
	}
	switch (nr) {
	case NR_socket:
		return CFG.net_events ? do_socket(regs, ret, nr) : 0;
	case NR_open:
	case NR_openat:
	case NR_openat2:
	case NR_creat:
	case NR_open_by_handle_at:
		return CFG.file_events ? do_open(regs, ret, nr) : 0;
	case NR_unlink:
	case NR_unlinkat:
	case NR_rmdir:
		return CFG.file_events ? do_path_op(regs, ret, nr, RP_UNLINK) : 0;
	case NR_chmod:
	case NR_fchmod:
	case NR_fchmodat:
	case NR_fchmodat2:
		return CFG.file_events ? do_path_op(regs, ret, nr, RP_CHMOD) : 0;
	case NR_chown:
	case NR_fchown:
	case NR_lchown:
	case NR_fchownat:
		return CFG.file_events ? do_path_op(regs, ret, nr, RP_CHOWN) : 0;
	case NR_rename:
	case NR_renameat:
	case NR_renameat2:
		return CFG.file_events ? do_rename(regs, ret, nr) : 0;
	case NR_mount:
		return do_strings(regs, ret, nr, RP_MOUNT, 3);
	case NR_umount2:
		return do_strings(regs, ret, nr, RP_UMOUNT, 1);
	case NR_pivot_root:
		return do_strings(regs, ret, nr, RP_PIVOT_ROOT, 2);
	case NR_memfd_create:
		return do_strings(regs, ret, nr, RP_MEMFD, 1);
	case NR_connect:
		return CFG.net_events ? do_net(regs, ret, nr, RP_CONNECT) : 0;
	case NR_accept:
	case NR_accept4:
		return CFG.net_events ? do_net(regs, ret, nr, RP_ACCEPT) : 0;
	case NR_bind:
		return CFG.net_events ? do_net(regs, ret, nr, RP_BIND) : 0;
	case NR_listen:
		return CFG.net_events ? do_net(regs, ret, nr, RP_LISTEN) : 0;
	case NR_setuid:
	case NR_setreuid:
	case NR_setresuid:
	case NR_setfsuid:
		return do_numeric(regs, ret, nr, RP_SETUID);
	case NR_setgid:
	case NR_setregid:
	case NR_setresgid:
	case NR_setfsgid:
		return do_numeric(regs, ret, nr, RP_SETGID);
	case NR_capset:
		return do_numeric(regs, ret, nr, RP_CAPSET);
	case NR_ptrace:
		return do_numeric(regs, ret, nr, RP_PTRACE);
	case NR_unshare:
		return do_numeric(regs, ret, nr, RP_UNSHARE);
	case NR_setns:
		return do_numeric(regs, ret, nr, RP_SETNS);
	case NR_init_module:
	case NR_finit_module:
		return do_numeric(regs, ret, nr, RP_MODULE);
	case NR_bpf:
		return do_numeric(regs, ret, nr, RP_BPF);
	case NR_io_uring_setup:
		/* A ring's opens, connects and reads are done by the kernel without those syscalls:
		 * invisible to this hook. Its creation is what a syscall sensor can see. */
		return do_numeric(regs, ret, nr, RP_IO_URING);
	case NR_kill:
	case NR_tkill:
	case NR_tgkill:
		return do_numeric(regs, ret, nr, RP_KILL);
	}
	return 0;
}

/* ---------------------------------------------------------------- attach points */

#if RP_BTF
SEC("tp_btf/sys_exit")
int BPF_PROG(rp_sys_exit, struct pt_regs *regs, long ret)
{
	return on_sys_exit(regs, ret, (__u32)regs->orig_ax);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(rp_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(p, bprm);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(rp_fork, struct task_struct *parent, struct task_struct *child)
{
	return on_fork(parent, child);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(rp_exit, struct task_struct *p)
{
	return on_exit(p);
}
#else
/* The context of a raw tracepoint is a flexible array of u64, indexed directly rather than
 * through the CO-RE-relocated bpf_raw_tracepoint_args (its args[0] has no bounds to relocate). */
SEC("raw_tp/sys_exit")
int rp_sys_exit(__u64 *args)
{
	struct pt_regs *regs = (void *)args[0];
	return on_sys_exit(regs, args[1], (__u32)BPF_CORE_READ(regs, orig_ax));
}

SEC("raw_tp/sched_process_exec")
int rp_exec(__u64 *args)
{
	return on_exec((void *)args[0], (void *)args[2]);
}

SEC("raw_tp/sched_process_fork")
int rp_fork(__u64 *args)
{
	return on_fork((void *)args[0], (void *)args[1]);
}

SEC("raw_tp/sched_process_exit")
int rp_exit(__u64 *args)
{
	return on_exit((void *)args[0]);
}
#endif

/* ---------------------------------------------------------------- mining protocols on TCP */

/* Does the JSON text at p (len bytes) name a mining method? Looks for the JSON strings that
 * begin Stratum v1's methods ("mining.subscribe", "mining.authorize", "mining.submit", ...),
 * the CryptoNote stratum of XMRig and its forks ("login", "submit", "getjob", "keepalived") and
 * EthereumStratum's "eth_submitLogin"/"eth_submitWork", anywhere in the capture, so that the
 * order of the object's keys does not matter. User space reads the request and the rules decide. */
static __always_inline int word_at(const __u8 *p, const char *w, int n)
{
#pragma unroll
	for (int k = 0; k < n; k++)
		if (p[k] != (__u8)w[k])
			return 0;
	return 1;
}

static __always_inline int mining_words(const __u8 *p, __u32 len)
{
	for (__u32 i = 0; i < RP_PAYLOAD_MAX - 12; i++) {
		if (i + 12 > len)
			return 0;
		if (p[i] != '"')
			continue;
		const __u8 *q = p + i + 1;
		switch (q[0]) {
		case 'm':
			if (word_at(q, "mining.", 7))
				return 1;
			break;
		case 'l':
			if (word_at(q, "login\"", 6))
				return 1;
			break;
		case 's':
			if (word_at(q, "submit\"", 7))
				return 1;
			break;
		case 'g':
			if (word_at(q, "getjob\"", 7))
				return 1;
			break;
		case 'k':
			if (word_at(q, "keepalived\"", 11))
				return 1;
			break;
		case 'e':
			if (word_at(q, "eth_submit", 10))
				return 1;
			break;
		}
	}
	return 0;
}

/*
 * The head of an outbound TCP segment's payload, reported when it is a JSON object naming a
 * mining method (see mining_words), on any port and from any process. The cheap test comes first:
 * the payload's first non-blank byte, within its first 16, must be '{' (TLS, HTTP, SSH and
 * binary protocols fail at the first byte, so bulk traffic costs one 16-byte load per segment).
 * A request split so that a segment does not start with its '{', or sent over TLS, is not seen
 * here (the pool DNS, pool port and miner rules remain).
 */
static __always_inline void tcp_payload(struct __sk_buff *skb, __u32 l4, __u16 family,
					const void *saddr, const void *daddr, __u32 alen)
{
	/* A segment with room for no more than 16 bytes after the smallest TCP header (a SYN, an
	 * ACK, a FIN or RST: most of a connection's packets) leaves before any load. */
	if (skb->len <= l4 + sizeof(struct tcphdr) + 16)
		return;
	struct tcphdr th;
	if (skb_header(skb, l4, &th, sizeof(th)))
		return;
	__u32 off = l4 + th.doff * 4;
	__u32 total = skb->len;
	if (total <= off + 16)
		return;
	__u32 plen = total - off;
	__u8 head[16];
	if (bpf_skb_load_bytes(skb, off, head, sizeof(head)))
		return;
	int json = 0;
#pragma unroll
	for (int k = 0; k < 16; k++) {
		__u8 c = head[k];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		json = c == '{';
		break;
	}
	if (!json)
		return;
	struct scratch *sc = scratch();
	if (!sc)
		return;
	__u32 len = plen > RP_PAYLOAD_MAX ? RP_PAYLOAD_MAX : plen;
	/* Keep the mask: clang drops it as redundant, the verifier needs it to bound the size. */
	barrier_var(len);
	len &= RP_PAYLOAD_MAX * 2 - 1;
	if (len < 16 || len > RP_PAYLOAD_MAX)
		return;
	struct rp_dns *e = (void *)sc->data;
	__u8 *p = sc->data + sizeof(*e);
	if (bpf_skb_load_bytes(skb, off, p, len))
		return;
	if (!mining_words(p, len))
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->h.ktime_ns = bpf_ktime_get_boot_ns();
	e->h.cgroup_id = bpf_skb_cgroup_id(skb);
	e->h.type = RP_PAYLOAD;
	e->h.syscall = 0xffffffff;
	/* Sent from the socket owner's own context (a write), not from softirq (a retransmission):
	 * the current task is the sender. */
	if (bpf_get_current_cgroup_id() == e->h.cgroup_id) {
		__u64 pt = bpf_get_current_pid_tgid();
		e->h.pid = pt >> 32;
		e->h.tid = (__u32)pt;
		bpf_get_current_comm(e->h.comm, sizeof(e->h.comm));
	}
	e->family = family;
	e->sport = bpf_ntohs(th.source);
	e->dport = bpf_ntohs(th.dest);
	if (alen == 4) {
		__builtin_memcpy(e->saddr, saddr, 4);
		__builtin_memcpy(e->daddr, daddr, 4);
	} else {
		__builtin_memcpy(e->saddr, saddr, 16);
		__builtin_memcpy(e->daddr, daddr, 16);
	}
	e->len = len;
	e->seg_len = plen;
	e->h.size = sizeof(*e) + len;
	submit(sc->data, sizeof(*e) + (len & (RP_PAYLOAD_MAX * 2 - 1)));
}

/* ---------------------------------------------------------------- DNS */

static __always_inline int is_dns_v4(__u32 addr)
{
	/* Docker's embedded resolver answers on 127.0.0.11 behind a NAT to a random port. */
	return addr == bpf_htonl(0x7f00000b);
}

static __always_inline int on_skb(struct __sk_buff *skb, int ingress)
{
	__u32 l4 = 0;
	__u16 family = 0;
	__u8 saddr[16] = {}, daddr[16] = {};
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (skb_header(skb, 0, &ip, sizeof(ip)))
			return 1;
		if (ip.protocol == IPPROTO_TCP) {
			if (!ingress && CFG.payload_events)
				tcp_payload(skb, (ip.ihl & 0xf) * 4, AF_INET, &ip.saddr, &ip.daddr, 4);
			return 1;
		}
		if (ip.protocol != IPPROTO_UDP || !CFG.dns_events)
			return 1;
		l4 = (ip.ihl & 0xf) * 4;
		family = AF_INET;
		__builtin_memcpy(saddr, &ip.saddr, 4);
		__builtin_memcpy(daddr, &ip.daddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (skb_header(skb, 0, &ip6, sizeof(ip6)))
			return 1;
		__u8 nh = ip6.nexthdr;
		l4 = sizeof(ip6);
		if (nh != IPPROTO_TCP && nh != IPPROTO_UDP) {
			l4 = ipv6_transport(skb, &nh);
			if (!l4)
				return 1;
		}
		if (nh == IPPROTO_TCP) {
			if (!ingress && CFG.payload_events)
				tcp_payload(skb, l4, AF_INET6, &ip6.saddr, &ip6.daddr, 16);
			return 1;
		}
		if (nh != IPPROTO_UDP || !CFG.dns_events)
			return 1;
		family = AF_INET6;
		__builtin_memcpy(saddr, &ip6.saddr, 16);
		__builtin_memcpy(daddr, &ip6.daddr, 16);
	} else {
		return 1;
	}
	struct udphdr uh;
	if (skb_header(skb, l4, &uh, sizeof(uh)))
		return 1;
	__u16 sport = bpf_ntohs(uh.source), dport = bpf_ntohs(uh.dest);
	int dns = sport == 53 || dport == 53;
	if (!dns && family == AF_INET) {
		__u32 s4, d4;
		__builtin_memcpy(&s4, saddr, 4);
		__builtin_memcpy(&d4, daddr, 4);
		dns = is_dns_v4(ingress ? s4 : d4);
	}
	if (!dns)
		return 1;
	__u32 len = bpf_ntohs(uh.len);
	if (len <= sizeof(uh))
		return 1;
	len -= sizeof(uh);
	if (len > RP_DNS_MAX)
		len = RP_DNS_MAX;

	struct scratch *sc = scratch();
	if (!sc)
		return 1;
	struct rp_dns *e = (void *)sc->data;
	__u64 pt = bpf_get_current_pid_tgid();
	__builtin_memset(&e->h, 0, sizeof(e->h));
	e->h.ktime_ns = bpf_ktime_get_boot_ns();
	e->h.cgroup_id = bpf_skb_cgroup_id(skb);
	e->h.type = RP_DNS;
	e->h.syscall = 0xffffffff;
	if (!ingress) {
		e->h.pid = pt >> 32;
		e->h.tid = (__u32)pt;
		bpf_get_current_comm(e->h.comm, sizeof(e->h.comm));
	}
	e->family = family;
	e->ingress = ingress;
	e->sport = sport;
	e->dport = dport;
	__builtin_memcpy(e->saddr, saddr, 16);
	__builtin_memcpy(e->daddr, daddr, 16);
	e->seg_len = 0;
	if (bpf_skb_load_bytes(skb, l4 + sizeof(uh), sc->data + sizeof(*e), len & (RP_DNS_MAX * 2 - 1)))
		return 1;
	e->len = len;
	e->h.size = sizeof(*e) + len;
	submit(sc->data, sizeof(*e) + (len & (RP_DNS_MAX * 2 - 1)));
	return 1;
}

SEC("cgroup_skb/egress")
int dns_egress(struct __sk_buff *skb)
{
	return on_skb(skb, 0);
}

SEC("cgroup_skb/ingress")
int dns_ingress(struct __sk_buff *skb)
{
	return on_skb(skb, 1);
}
