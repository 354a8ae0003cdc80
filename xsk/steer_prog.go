package xsk

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/cilium/ebpf/asm"
)

// Counter slots of the per-CPU counters map.
const (
	ctrRedirected = 0 // handed to bpf_redirect_map and redirected to the queue's socket
	ctrPassed     = 1 // not ours (role filter): XDP_PASS to the kernel
	ctrNoSocket   = 2 // ours, but no socket registered for the queue: XDP_PASS via the redirect fallback
	numCounters   = 3
)

// Limits on the local tunnel endpoint addresses compiled into the program.
const (
	maxLocalIPv4 = 8
	maxLocalIPv6 = 8
)

// Values of enum xdp_action.
const (
	xdpPass     = 2
	xdpRedirect = 4
)

// Offsets in struct xdp_md.
const (
	xdpMdData         = 0
	xdpMdDataEnd      = 4
	xdpMdRxQueueIndex = 16
)

// be16 returns the value a native-endian 16-bit load of the big-endian
// (network order) bytes of v gives, so that packet fields can be compared
// without byte swapping in the program.
func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// word returns the native-endian 32-bit load of b[0:4] as an immediate.
func word(b []byte) int32 { return int32(binary.NativeEndian.Uint32(b)) }

// steerInstructions builds the steering program. xsksFD and countersFD are
// the file descriptors of the XSKMAP and of the per-CPU counters array.
//
// Register use: r6 = ctx, r7 = L3 header (then L4 header), r3 = data_end,
// r8 = verdict, r9 = counter slot.
func steerInstructions(role Role, local []netip.Addr, xsksFD, countersFD int) (asm.Instructions, error) {
	var v4, v6 []netip.Addr
	for _, a := range local {
		a = a.Unmap()
		switch {
		case a.Is4():
			v4 = append(v4, a)
		case a.Is6():
			v6 = append(v6, a)
		default:
			return nil, fmt.Errorf("invalid local IP %v", a)
		}
	}
	if len(v4) > maxLocalIPv4 || len(v6) > maxLocalIPv6 {
		return nil, fmt.Errorf("too many local IPs: %d IPv4 (max %d), %d IPv6 (max %d)", len(v4), maxLocalIPv4, len(v6), maxLocalIPv6)
	}

	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
	}
	switch role {
	case RoleLocal:
		insns = append(insns, asm.Ja.Label("redirect"))
	case RoleUnderlay:
		if len(v4)+len(v6) == 0 {
			return nil, fmt.Errorf("role underlay needs at least one local IP")
		}
		insns = append(insns, underlayFilter(v4, v6)...)
	default:
		return nil, fmt.Errorf("unknown role %d", role)
	}

	insns = append(insns,
		// redirect: bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS).
		// A queue without a socket makes the helper return XDP_PASS.
		asm.LoadMem(asm.R2, asm.R6, xdpMdRxQueueIndex, asm.Word).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R1, xsksFD),
		asm.Mov.Imm(asm.R3, xdpPass),
		asm.FnRedirectMap.Call(),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.Mov.Imm(asm.R9, ctrRedirected),
		asm.JEq.Imm(asm.R0, xdpRedirect, "count"),
		asm.Mov.Imm(asm.R9, ctrNoSocket),
		asm.Ja.Label("count"),
	)
	if role == RoleUnderlay {
		// pass: not for the sockets (RoleLocal has no such path, and the
		// verifier rejects unreachable instructions).
		insns = append(insns,
			asm.Mov.Imm(asm.R8, xdpPass).WithSymbol("pass"),
			asm.Mov.Imm(asm.R9, ctrPassed),
		)
	}
	insns = append(insns,
		// count: counters[r9]++ (per CPU, so a plain add).
		asm.StoreMem(asm.RFP, -4, asm.R9, asm.Word).WithSymbol("count"),
		asm.LoadMapPtr(asm.R1, countersFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R0, asm.R8).WithSymbol("out"),
		asm.Return(),
	)
	return insns, nil
}

// underlayFilter jumps to "redirect" for Ethernet (+ at most one 802.1Q tag)
// / IPv4 (any IHL, not a fragment) or IPv6 (UDP as the first next header) /
// UDP destination port 6081 to one of the local addresses, and to "pass" for
// everything else. Every packet access is preceded by a bounds check.
func underlayFilter(v4, v6 []netip.Addr) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R6, xdpMdData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, xdpMdDataEnd, asm.Word),
		// Ethernet header.
		asm.Mov.Reg(asm.R7, asm.R2),
		asm.Add.Imm(asm.R7, 14),
		asm.JGT.Reg(asm.R7, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JNE.Imm(asm.R5, be16(0x8100), "l3"),
		// One 802.1Q tag: the real EtherType follows it.
		asm.Mov.Reg(asm.R7, asm.R2),
		asm.Add.Imm(asm.R7, 18),
		asm.JGT.Reg(asm.R7, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 16, asm.Half),
	}
	// r7 = L3 header, r5 = EtherType. A family without local addresses is
	// not even looked at (and its code left out: the verifier rejects
	// unreachable instructions).
	var dispatch asm.Instructions
	if len(v4) > 0 {
		dispatch = append(dispatch, asm.JEq.Imm(asm.R5, be16(0x0800), "ipv4"))
	}
	if len(v6) > 0 {
		dispatch = append(dispatch, asm.JEq.Imm(asm.R5, be16(0x86DD), "ipv6"))
	}
	dispatch = append(dispatch, asm.Ja.Label("pass"))
	dispatch[0] = dispatch[0].WithSymbol("l3")
	insns = append(insns, dispatch...)
	if len(v4) > 0 {
		insns = append(insns, ipv4Filter(v4)...)
	}
	if len(v6) > 0 {
		insns = append(insns, ipv6Filter(v6)...)
	}

	// UDP: r7 = UDP header.
	insns = append(insns,
		asm.Mov.Reg(asm.R4, asm.R7).WithSymbol("udp"),
		asm.Add.Imm(asm.R4, 8),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R7, 2, asm.Half),
		asm.JEq.Imm(asm.R4, be16(6081), "redirect"),
		asm.Ja.Label("pass"),
	)
	return insns
}

// ipv4Filter: r7 = IPv4 header. Jumps to "udp" with r7 = UDP header when the
// packet is an unfragmented UDP datagram to one of v4, else to "pass".
func ipv4Filter(v4 []netip.Addr) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R4, asm.R7).WithSymbol("ipv4"),
		asm.Add.Imm(asm.R4, 20),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R7, 0, asm.Byte), // version | IHL
		asm.Mov.Reg(asm.R4, asm.R5),
		asm.And.Imm(asm.R4, 0xf0),
		asm.JNE.Imm(asm.R4, 0x40, "pass"),
		asm.And.Imm(asm.R5, 0x0f),
		asm.JLT.Imm(asm.R5, 5, "pass"),
		asm.LoadMem(asm.R4, asm.R7, 9, asm.Byte), // protocol
		asm.JNE.Imm(asm.R4, 17, "pass"),
		asm.LoadMem(asm.R4, asm.R7, 6, asm.Half), // flags | fragment offset
		asm.JSet.Imm(asm.R4, be16(0x3fff), "pass"),
		asm.LoadMem(asm.R4, asm.R7, 16, asm.Word), // destination address
	}
	for _, a := range v4 {
		b := a.As4()
		insns = append(insns, asm.JEq.Imm32(asm.R4, word(b[:]), "ipv4_local"))
	}
	insns = append(insns,
		asm.Ja.Label("pass"),
		// UDP header at r7 + IHL*4 (IHL 5..15: the verifier sees a bounded offset).
		asm.LSh.Imm(asm.R5, 2).WithSymbol("ipv4_local"),
		asm.Add.Reg(asm.R7, asm.R5),
		asm.Ja.Label("udp"),
	)
	return insns
}

// ipv6Filter: r7 = IPv6 header. Falls through to "udp" with r7 = UDP header
// when the next header is UDP and the destination one of v6, else jumps to
// "pass". Extension headers (and so fragments) go to the kernel.
func ipv6Filter(v6 []netip.Addr) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R4, asm.R7).WithSymbol("ipv6"),
		asm.Add.Imm(asm.R4, 40),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R7, 0, asm.Byte),
		asm.And.Imm(asm.R5, 0xf0),
		asm.JNE.Imm(asm.R5, 0x60, "pass"),
		asm.LoadMem(asm.R5, asm.R7, 6, asm.Byte), // next header: UDP only (extension headers and fragments go to the kernel)
		asm.JNE.Imm(asm.R5, 17, "pass"),
		asm.LoadMem(asm.R1, asm.R7, 24, asm.Word), // destination address, four words
		asm.LoadMem(asm.R2, asm.R7, 28, asm.Word),
		asm.LoadMem(asm.R4, asm.R7, 32, asm.Word),
		asm.LoadMem(asm.R5, asm.R7, 36, asm.Word),
	}
	// Address i starts at label ipv6_addr_i; a mismatch tries address i+1,
	// and the label after the last one is the jump to "pass".
	label := func(i int) string { return "ipv6_addr_" + strconv.Itoa(i) }
	for i, a := range v6 {
		b := a.As16()
		next := label(i + 1)
		insns = append(insns,
			asm.JNE.Imm32(asm.R1, word(b[0:4]), next).WithSymbol(label(i)),
			asm.JNE.Imm32(asm.R2, word(b[4:8]), next),
			asm.JNE.Imm32(asm.R4, word(b[8:12]), next),
			asm.JNE.Imm32(asm.R5, word(b[12:16]), next),
			asm.Ja.Label("ipv6_local"),
		)
	}
	insns = append(insns,
		asm.Ja.Label("pass").WithSymbol(label(len(v6))),
		asm.Add.Imm(asm.R7, 40).WithSymbol("ipv6_local"),
	)
	return insns
}
