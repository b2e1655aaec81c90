/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Packet header reads for the cgroup_skb programs of both BPF objects: the sensor's DNS and
 * mining-payload programs and the enforcement's ingress/egress decisions. Included after
 * vmlinux.h and libbpf's helper headers.
 */
#ifndef RAMPART_SKB_H
#define RAMPART_SKB_H

/*
 * Copies the n-byte header at `off` (constant n, bounded off) to `to`: in place when the linear
 * area holds it (direct packet access: a bounds check and loads, no helper call), else with
 * bpf_skb_load_bytes. The IP, TCP and UDP headers of locally sent and delivered packets are in
 * the linear area; the copy covers any that is not. These programs run for every packet of
 * every container (issue 17's connect storm: four packets each way per connection); measured
 * with bpf_stats, this saves a few ns per packet, most of the per-packet cost being the kernel's
 * own dispatch (docs/benchmarks.md, eighth session). IP options move the L4 header: it is found
 * from the IHL (tested with options on the wire in agent_events' mining-protocol test).
 * Shared by the sensor (rampart.bpf.c) and the enforcement programs (enforce.bpf.c).
 */
static __always_inline int skb_header(struct __sk_buff *skb, __u32 off, void *to, __u32 n)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (off <= 64) {
		/* One pointer, checked then read: the verifier proves the read by the check. */
		void *p = data + off;
		if (p + n <= end) {
			__builtin_memcpy(to, p, n);
			return 0;
		}
	}
	return bpf_skb_load_bytes(skb, off, to, n);
}

/* A socket can add four extension headers (hop-by-hop, destination options before and after a
 * routing header, the routing header: ipv6_txoptions), and a first fragment carries a fragment
 * header after them. A packet from another host may carry more: the enforcement then decides
 * by the receiving socket (enforce_ingress), the sensor does not read past them. */
#define IPV6_EXT_MAX 5

static __always_inline int ipv6_ext(__u8 next)
{
	return next == 0 || next == 43 || next == 44 || next == 60;
}

/*
 * The offset of the first header after an IPv6 packet's extension headers (hop-by-hop 0,
 * routing 43, fragment 44, destination options 60), its protocol in *nh (TCP, UDP, ICMPv6, ...);
 * 0 when it cannot be reached: more extension headers than IPV6_EXT_MAX, a later fragment, a
 * header out of the packet. Any sender with CAP_NET_RAW (which Docker grants a container by
 * default) can add destination options to its TCP segments with setsockopt(IPV6_DSTOPTS): a
 * parser that took the next header after the fixed 40 bytes for granted would miss the request
 * behind them (tested in agent_events' mining-protocol test over ::1), and a remote host can
 * put any number of them before a SYN (the enforcement's ingress rules: tests/enforce.rs).
 */
static __always_inline __u32 ipv6_transport(struct __sk_buff *skb, __u8 *nh)
{
	__u32 off = sizeof(struct ipv6hdr);
	__u8 next = *nh;
#pragma unroll
	for (int i = 0; i < IPV6_EXT_MAX; i++) {
		struct {
			__u8 next;
			__u8 len;  /* in 8-byte units, not counting the first 8 (fragment: reserved) */
			__u16 frag; /* fragment header: offset << 3 | flags */
		} eh;
		if (!ipv6_ext(next))
			break;
		if (skb_header(skb, off, &eh, sizeof(eh)))
			return 0;
		if (next == 44) {
			if (bpf_ntohs(eh.frag) & 0xfff8)
				return 0; /* a later fragment: no transport header */
			off += 8;
		} else {
			off += ((__u32)eh.len + 1) * 8;
		}
		next = eh.next;
	}
	if (ipv6_ext(next))
		return 0;
	*nh = next;
	return off;
}

#endif /* RAMPART_SKB_H */
