package vswitch

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
)

// neighMsg builds an RTM_NEWNEIGH payload as the kernel sends it.
func neighMsg(ifindex uint32, dst netip.Addr, proto int, flagsExt uint32) []byte {
	b := make([]byte, ndmsgLen)
	b[0] = neighFamily(dst)
	binary.NativeEndian.PutUint32(b[4:8], ifindex)
	b = append(b, nl.NewRtAttr(netlink.NDA_DST, dst.AsSlice()).Serialize()...)
	if proto >= 0 {
		b = append(b, nl.NewRtAttr(netlink.NDA_PROTOCOL, []byte{byte(proto)}).Serialize()...)
	}
	b = append(b, nl.NewRtAttr(netlink.NDA_FLAGS_EXT, nl.Uint32Attr(flagsExt)).Serialize()...)
	return b
}

// TestParseOwnedNeigh: only a managed entry on the underlay with our
// protocol is ours.
func TestParseOwnedNeigh(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:2::2")
	cases := []struct {
		name string
		m    []byte
		want bool
	}{
		{"ours v4", neighMsg(3, v4, neighProtocol, netlink.NTF_EXT_MANAGED), true},
		{"ours v6", neighMsg(3, v6, neighProtocol, netlink.NTF_EXT_MANAGED), true},
		{"other device", neighMsg(4, v4, neighProtocol, netlink.NTF_EXT_MANAGED), false},
		{"no protocol", neighMsg(3, v4, -1, netlink.NTF_EXT_MANAGED), false},
		{"other protocol", neighMsg(3, v4, 4, netlink.NTF_EXT_MANAGED), false},
		{"not managed", neighMsg(3, v4, neighProtocol, 0), false},
		{"short", []byte{2, 0, 0}, false},
		{"truncated attribute", neighMsg(3, v4, neighProtocol, netlink.NTF_EXT_MANAGED)[:ndmsgLen+6], false},
	}
	for _, c := range cases {
		hop, ok := parseOwnedNeigh(c.m, 3)
		if ok != c.want {
			t.Errorf("%s: owned %v, want %v", c.name, ok, c.want)
		}
		if ok && hop != v4 && hop != v6 {
			t.Errorf("%s: hop %v", c.name, hop)
		}
	}
}

// FuzzParseOwnedNeigh: any message parses without a panic, and what is
// taken for ours is an address of the underlay's entry.
func FuzzParseOwnedNeigh(f *testing.F) {
	f.Add(neighMsg(3, netip.MustParseAddr("198.18.0.2"), neighProtocol, netlink.NTF_EXT_MANAGED))
	f.Add(neighMsg(3, netip.MustParseAddr("2001:2::2"), neighProtocol, 1))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, m []byte) {
		hop, ok := parseOwnedNeigh(m, 3)
		if ok && (!hop.IsValid() || binary.NativeEndian.Uint32(m[4:8]) != 3) {
			t.Fatalf("owned %v from %x", hop, m)
		}
	})
}
