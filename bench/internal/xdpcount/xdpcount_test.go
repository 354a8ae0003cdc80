package xdpcount

import (
	"net/netip"
	"testing"

	"xswitch/bench/internal/frames"
	"xswitch/bench/internal/rawsend"
	"xswitch/internal/testnet"
)

// TestCountsAndPassesARP sends UDP frames and ARP requests across a veth
// pair and checks that the sink counted the UDP frames (and their bytes) and
// passed the ARP frames.
func TestCountsAndPassesARP(t *testing.T) {
	n := testnet.New(t)
	a, b := n.NS("gen"), n.NS("sink")
	n.Veth(a, "g0", b, "s0", 1)

	var c *Counter
	if err := testnet.Do(b, func() (err error) { c, err = Attach("s0", ""); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Logf("XDP mode %s", c.Mode())

	fs, err := frames.Build(frames.Spec{
		Size: 100, Flows: 3,
		SrcMAC: [6]byte{2, 0xbe, 0, 0, 0, 1}, DstMAC: [6]byte{2, 0xbe, 0, 0, 0, 2},
		SrcIP: netip.MustParseAddr("198.19.0.1"), DstIP: netip.MustParseAddr("198.19.0.2"),
		SrcPort: 1000, DstPort: 2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	arp := make([]byte, 60)
	copy(arp, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0xbe, 0, 0, 0, 1, 0x08, 0x06})
	before, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	if err := testnet.Do(a, func() error {
		if err := rawsend.Send("g0", fs, 100); err != nil {
			return err
		}
		return rawsend.Send("g0", [][]byte{arp}, 5)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	got = got.Sub(before)
	// The kernel of namespace a may send its own frames (IPv6 router/neighbour
	// solicitations) on g0; those are counted too, so compare at least.
	if got.Packets < 300 || got.Bytes < 300*100 || got.Passed != 5 {
		t.Fatalf("counted %+v, want >= 300 packets, >= 30000 bytes, 5 passed", got)
	}
	if got.Packets > 310 {
		t.Fatalf("counted %d packets, sent 300", got.Packets)
	}
}
