// SPDX-License-Identifier: GPL-2.0
/* ipcnet's XDP filter: drop or count packets by protocol, destination port and address.
 *
 * Role: runs on an interface's receive path before the kernel allocates an skb (native
 * mode) or just after (generic mode). The rules are not in this program: they live in the
 * hash map ipcnet_rules, which ipcnet fills and changes while the program runs, so a rule
 * update never reloads it. Each rule owns a slot of the per-CPU array ipcnet_stats, where
 * this program adds packets and bytes without locks (one copy per CPU; the reader sums).
 * Slot 0 counts the packets that matched no rule (passed on to the stack).
 *
 * Parsing, as the stack and iptables do: one VLAN tag; an IPv4 header of any IHL and
 * version 4 only; IPv6 extension headers walked to the UDP/TCP header (a first fragment,
 * an atomic one and AH included); the ports are the first 4 bytes of the UDP or TCP
 * header, read even where the rest is cut short (a tiny first fragment, RFC 1858); later
 * fragments, packets shorter than their IP length and ports cut short (by the frame, or
 * by the IP length: the Ethernet padding after a short packet is not part of it) have no
 * ports and match no rule. A chain longer than the walk
 * hides the ports, so a drop rule cannot be dodged with padding headers: such a packet is
 * looked up as protocol PROTO_UNSEEN, port 0, a key ipcnet writes for its drop rules.
 *
 * Rules for this file (the loader in ipcnet/xdp/elf.py is small on purpose): maps are
 * declared in SEC("maps") as struct ipcnet_map, every function is inlined (no bpf-to-bpf
 * calls), no global variables (no .data/.rodata/.bss). The key and value layouts below are
 * mirrored by ipcnet/xdp/rules.py.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_RULES 64 /* rules at once; slot 0 = matched nothing */
#define ACTION_COUNT 1
#define ACTION_DROP 2
#define PROTO_UNSEEN 0 /* rule_key.proto of an IPv6 packet whose ports the walk cannot reach */
#ifndef barrier_var /* bpf_helpers.h has it since libbpf 0.7 */
#define barrier_var(var) asm volatile("" : "+r"(var))
#endif

struct ipcnet_map { /* read by the loader: the kernel's map_create arguments */
	__u32 type, key_size, value_size, max_entries, map_flags;
};

struct rule_key {
	__u8 family; /* 4 or 6 */
	__u8 proto;  /* IPPROTO_UDP, IPPROTO_TCP or PROTO_UNSEEN */
	__u16 port;  /* destination port, network byte order */
	__u8 addr[16]; /* destination address (v4 in the first 4 bytes); all zero = any */
};

struct rule_value {
	__u32 action;
	__u32 slot;
};

struct counters {
	__u64 packets;
	__u64 bytes;
};

struct ipcnet_map ipcnet_rules SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(struct rule_key),
	.value_size = sizeof(struct rule_value),
	/* a rule without a host is one key per family, a drop rule may add a PROTO_UNSEEN
	 * key; an update writes the new keys before it deletes the old ones, so both sets
	 * fit at once */
	.max_entries = 6 * MAX_RULES,
};

struct ipcnet_map ipcnet_stats SEC("maps") = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct counters),
	.max_entries = 2 * MAX_RULES + 1, /* slot 0, the old rules' slots, the new ones' */
};

static __always_inline void count(__u32 slot, __u64 bytes)
{
	struct counters *c = bpf_map_lookup_elem(&ipcnet_stats, &slot);

	if (c) { /* this CPU's copy: no other CPU writes it, no atomics needed */
		c->packets += 1;
		c->bytes += bytes;
	}
}

/* The destination port of the UDP or TCP header at frame offset l4 (at data + l4): 0 with
 * *port set, -1 if the packet has no ports to read. Both headers open with the source and
 * the destination port, and those 4 bytes are all that is read: a first fragment may hold
 * them and not the rest of the header (RFC 1858's tiny fragment: 8 bytes of a 20-byte TCP
 * header), and the stack reassembles it with the rest, so a rule must see its port (nft
 * reads it so; iptables' xt_tcp drops such a fragment outright). The 4 bytes must lie in
 * the IP packet, which ends at frame offset ip_end (its length field's word: Ethernet
 * padding or a trailer after it is not the packet's, and completes no header). */
static __always_inline int ports(void *data, void *end, __u64 l4, __u64 ip_end, __u8 proto,
				 __u16 *port)
{
	__u16 *p = data + l4; /* source port, destination port */

	if (proto != IPPROTO_UDP && proto != IPPROTO_TCP)
		return -1;
	if ((void *)(p + 2) > end || l4 + 4 > ip_end)
		return -1;
	*port = p[1];
	return 0;
}

struct frag_hdr { /* RFC 8200 4.5 */
	__u8 nexthdr;
	__u8 reserved;
	__u16 frag_off; /* offset in 8-byte units << 3, 2 reserved bits, M */
	__u32 identification;
};

#define IS_IPV6_EXT(h)                                                                  \
	((h) == IPPROTO_HOPOPTS || (h) == IPPROTO_ROUTING || (h) == IPPROTO_DSTOPTS ||      \
	 (h) == IPPROTO_FRAGMENT || (h) == IPPROTO_AH)
/* the verifier's bound on a packet offset (MAX_PACKET_OFF), less the largest header read */
#define OFF_MAX (0xffff - sizeof(struct tcphdr))

/* Walk IPv6 extension headers (RFC 8200 4.1, as the kernel's ipv6_find_hdr does) from
 * frame offset *off with next header *proto, to the upper-layer header: 0 with both
 * updated; -1 if the packet has no ports to match (a later fragment, a header cut short);
 * 1 if its chain is longer than IPV6_EXT_MAX headers (RFC 8200 4.1 allows about six):
 * its ports are out of this walk's sight, not of the stack's, which delivers it. A loop,
 * not unrolled: the verifier processes fewer instructions for these 16 than it did for
 * 8 unrolled (6.7K against 10.9K), so loading got no slower. */
#define IPV6_EXT_MAX 16
static __always_inline int ipv6_upper(void *data, void *end, __u64 *off, __u8 *proto)
{
	__u64 o = *off;
	__u8 next = *proto;

#pragma clang loop unroll(disable)
	for (int i = 0; i < IPV6_EXT_MAX && IS_IPV6_EXT(next); i++) {
		void *p;

		if (o > OFF_MAX)
			return -1;
		barrier_var(o); /* bound-check and use the same register, as the verifier needs */
		p = data + o;
		if (next == IPPROTO_FRAGMENT) {
			struct frag_hdr *f = p;

			if ((void *)(f + 1) > end || f->frag_off & bpf_htons(0xfff8))
				return -1; /* only the first fragment holds the ports */
			next = f->nexthdr;
			o += sizeof(*f);
		} else if (next == IPPROTO_AH) {
			struct ip_auth_hdr *ah = p;

			if (p + 2 > end)
				return -1;
			next = ah->nexthdr;
			o += (ah->hdrlen + 2) * 4;
		} else { /* hop-by-hop, routing, destination options */
			struct ipv6_opt_hdr *h = p;

			if ((void *)(h + 1) > end)
				return -1;
			next = h->nexthdr;
			o += (h->hdrlen + 1) * 8;
		}
	}
	if (IS_IPV6_EXT(next))
		return 1;
	*off = o;
	*proto = next;
	return 0;
}

SEC("xdp")
int ipcnet_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 bytes = end - data;
	struct ethhdr *eth = data;
	struct rule_key key = {};
	struct rule_value *rule;
	__u64 l3len = bytes - sizeof(*eth); /* what the frame holds from the IP header on */
	__u64 l3off = sizeof(*eth);          /* where the IP header starts */
	__u16 proto;
	void *l3;
	int walked;

	if ((void *)(eth + 1) > end)
		goto pass;
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		__u16 *vlan = l3; /* TCI, then the inner ethertype */

		if ((void *)(vlan + 2) > end)
			goto pass;
		proto = vlan[1];
		l3 = vlan + 2;
		l3len -= 4;
		l3off += 4;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			goto pass;
		if (bpf_ntohs(ip->tot_len) < ip->ihl * 4 || bpf_ntohs(ip->tot_len) > l3len)
			goto pass; /* cut short: the stack drops it, nft matches nothing */
		if (ip->frag_off & bpf_htons(0x1fff)) /* a later fragment: no ports in it */
			goto pass;
		key.family = 4;
		key.proto = ip->protocol;
		__builtin_memcpy(key.addr, &ip->daddr, 4);
		if (ports(data, end, l3off + ip->ihl * 4, l3off + bpf_ntohs(ip->tot_len), key.proto,
			  &key.port))
			goto pass;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		__u64 upper = (void *)(ip6 + 1) - data;

		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			goto pass;
		if (sizeof(*ip6) + bpf_ntohs(ip6->payload_len) > l3len)
			goto pass;
		key.family = 6;
		key.proto = ip6->nexthdr;
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		walked = ipv6_upper(data, end, &upper, &key.proto);
		if (walked > 0) { /* ports out of sight: the drop rules' key for that (rules.py) */
			key.proto = PROTO_UNSEEN;
			key.port = 0;
		} else if (walked) {
			goto pass;
		} else {
			barrier_var(upper);
			if (upper > OFF_MAX ||
			    ports(data, end, upper, l3off + sizeof(*ip6) + bpf_ntohs(ip6->payload_len),
				  key.proto, &key.port))
				goto pass;
		}
	} else {
		goto pass;
	}

	rule = bpf_map_lookup_elem(&ipcnet_rules, &key); /* this host exactly */
	if (!rule) {
		__builtin_memset(key.addr, 0, sizeof(key.addr)); /* any host */
		rule = bpf_map_lookup_elem(&ipcnet_rules, &key);
	}
	if (!rule)
		goto pass;
	count(rule->slot, bytes);
	return rule->action == ACTION_DROP ? XDP_DROP : XDP_PASS;
pass:
	count(0, bytes);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
