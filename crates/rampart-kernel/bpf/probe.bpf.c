// SPDX-License-Identifier: GPL-2.0-only
/*
 * Minimal programs, one per program type or helper Rampart may use. The capability probe loads
 * (and where it means something, attaches) each one to learn what this kernel allows: VPS
 * kernels differ in lockdown, LSM list, kprobe support and BPF features.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} PROBE_FLAG SEC(".maps");

SEC("tp_btf/sched_process_exec")
int BPF_PROG(probe_tp_btf)
{
	return 0;
}

SEC("raw_tp/sched_process_exec")
int probe_raw_tp(void *ctx)
{
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int probe_tracepoint(void *ctx)
{
	return 0;
}

SEC("kprobe/do_unlinkat")
int probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry/do_unlinkat")
int BPF_PROG(probe_fentry)
{
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(probe_lsm, struct linux_binprm *bprm, int ret)
{
	return ret;
}

SEC("cgroup/connect4")
int probe_connect4(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int probe_cgroup_skb(struct __sk_buff *skb)
{
	return 1;
}

/* Uses bpf_send_signal behind a branch the verifier cannot rule out (a map value), so loading
 * it proves the helper is allowed; it never runs the branch (the flag stays 0). */
SEC("raw_tp/sched_process_exec")
int probe_send_signal(void *ctx)
{
	__u32 zero = 0;
	__u32 *flag = bpf_map_lookup_elem(&PROBE_FLAG, &zero);
	if (flag && *flag == 0xdead)
		bpf_send_signal(9);
	return 0;
}
