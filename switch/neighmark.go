package vswitch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// neighProtocol marks the neighbour entries xswitch adds (NDA_PROTOCOL,
// Linux 5.2+; `ip neigh` shows "proto 120"). No routing daemon in
// iproute2's rt_protos uses it. A managed entry on the underlay that
// carries it is xswitch's: the next instance's start and stop remove what
// a killed instance left.
const neighProtocol = 120

// ndmsgLen is the size of struct ndmsg (netlink.Ndmsg).
const ndmsgLen = 12

// neighNL is a route netlink socket in the switch's network namespace for
// the neighbour requests the netlink library cannot make (it neither sets
// nor reports NDA_PROTOCOL).
type neighNL struct {
	sockets map[int]*nl.SocketHandle
}

// openNeighNL opens the socket in the calling thread's network namespace.
func openNeighNL() (*neighNL, error) {
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket for neighbour entries: %w", err)
	}
	return &neighNL{sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}}, nil
}

func (n *neighNL) close() { n.sockets[unix.NETLINK_ROUTE].Close() }

func (n *neighNL) request(typ, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(typ, flags)
	req.Sockets = n.sockets
	return req
}

func neighFamily(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// addManaged creates or replaces the entry of hop on ifindex as a managed
// entry (the kernel resolves it and keeps it resolved) marked as ours.
func (n *neighNL) addManaged(ifindex int, hop netip.Addr) error {
	hop = hop.Unmap()
	req := n.request(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	req.AddData(&netlink.Ndmsg{Family: neighFamily(hop), Index: uint32(ifindex), State: netlink.NUD_NONE})
	req.AddData(nl.NewRtAttr(netlink.NDA_DST, hop.AsSlice()))
	req.AddData(nl.NewRtAttr(netlink.NDA_FLAGS_EXT, nl.Uint32Attr(netlink.NTF_EXT_MANAGED)))
	req.AddData(nl.NewRtAttr(netlink.NDA_PROTOCOL, nl.Uint8Attr(neighProtocol)))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// owned lists the addresses of the managed entries on ifindex marked as
// ours.
func (n *neighNL) owned(ifindex int) ([]netip.Addr, error) {
	var msgs [][]byte
	var err error
	for try := 0; try < 3; try++ {
		req := n.request(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
		req.AddData(&netlink.Ndmsg{Family: unix.AF_UNSPEC})
		if msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH); !errors.Is(err, nl.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list neighbour entries: %w", err)
	}
	var out []netip.Addr
	for _, m := range msgs {
		if hop, ok := parseOwnedNeigh(m, ifindex); ok {
			out = append(out, hop)
		}
	}
	return out, nil
}

// parseOwnedNeigh reads one RTM_NEWNEIGH message: the entry's address when
// it is on ifindex, managed and marked with neighProtocol. It walks the
// attributes itself: nl.ParseRouteAttr panics on a truncated attribute.
func parseOwnedNeigh(m []byte, ifindex int) (netip.Addr, bool) {
	if len(m) < ndmsgLen || binary.NativeEndian.Uint32(m[4:8]) != uint32(ifindex) {
		return netip.Addr{}, false
	}
	var dst netip.Addr
	var proto, managed bool
	for b := m[ndmsgLen:]; len(b) >= unix.SizeofRtAttr; {
		l, typ := int(binary.NativeEndian.Uint16(b[0:2])), binary.NativeEndian.Uint16(b[2:4])
		if l < unix.SizeofRtAttr || l > len(b) {
			return netip.Addr{}, false // malformed: trust nothing of it
		}
		v := b[unix.SizeofRtAttr:l]
		switch typ &^ unix.NLA_F_NESTED {
		case netlink.NDA_DST:
			if d, ok := netip.AddrFromSlice(v); ok {
				dst = d.Unmap()
			}
		case netlink.NDA_PROTOCOL:
			proto = len(v) == 1 && v[0] == neighProtocol
		case netlink.NDA_FLAGS_EXT:
			managed = len(v) == 4 && binary.NativeEndian.Uint32(v)&netlink.NTF_EXT_MANAGED != 0
		}
		b = b[min((l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1), len(b)):]
	}
	return dst, dst.IsValid() && proto && managed
}

// del deletes the entry of hop on ifindex.
func (n *neighNL) del(ifindex int, hop netip.Addr) error {
	hop = hop.Unmap()
	req := n.request(unix.RTM_DELNEIGH, unix.NLM_F_ACK)
	req.AddData(&netlink.Ndmsg{Family: neighFamily(hop), Index: uint32(ifindex)})
	req.AddData(nl.NewRtAttr(netlink.NDA_DST, hop.AsSlice()))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
