package xdpcount

import (
	"testing"

	"xswitch/internal/rawsend"
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

	// Three 100-byte IPv4 frames (the counter reads only the EtherType).
	var fs [][]byte
	for i := range 3 {
		f := make([]byte, 100)
		copy(f, []byte{2, 0xbe, 0, 0, 0, 2, 2, 0xbe, 0, 0, 0, 1, 0x08, 0x00, 0x45})
		f[20] = byte(i)
		fs = append(fs, f)
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
