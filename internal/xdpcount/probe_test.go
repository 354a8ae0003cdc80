package xdpcount

import (
	"encoding/binary"
	"testing"

	"xswitch/internal/rawsend"
	"xswitch/internal/testnet"
)

// ipv4 returns an Ethernet + IPv4 (no options) frame of n bytes with
// protocol proto; a UDP frame gets destination port dport.
func ipv4(n int, proto byte, dport uint16) []byte {
	f := make([]byte, n)
	copy(f, []byte{2, 0xbe, 0, 0, 0, 2, 2, 0xbe, 0, 0, 0, 1, 0x08, 0x00, 0x45})
	f[23] = proto
	binary.BigEndian.PutUint16(f[36:], dport)
	return f
}

// geneve wraps inner (an Ethernet frame) in Ethernet/IPv4/UDP 6081/Geneve
// with optWords words of options.
func geneve(inner []byte, optWords int) []byte {
	f := ipv4(50+4*optWords+len(inner), 17, 6081)
	f[42] = byte(optWords)
	copy(f[50+4*optWords:], inner)
	return f
}

// TestPassesProbes: ICMP, and ICMP or ARP inside Geneve without options,
// go to the kernel (Passed) — the benchmark's latency probes; Geneve
// carrying UDP, Geneve with options, UDP to other ports, short and
// non-IPv4 frames are counted and dropped.
func TestPassesProbes(t *testing.T) {
	n := testnet.New(t)
	a, b := n.NS("gen"), n.NS("sink")
	n.Veth(a, "g0", b, "s0", 1)
	var c *Counter
	if err := testnet.Do(b, func() (err error) { c, err = Attach("s0", ""); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	innerARP := make([]byte, 42)
	copy(innerARP[12:], []byte{0x08, 0x06})
	innerICMP := ipv4(98, 1, 0)
	innerUDP := ipv4(64, 17, 5001)
	pass := [][]byte{ipv4(98, 1, 0), geneve(innerICMP, 0), geneve(innerARP, 0)}
	drop := [][]byte{
		geneve(innerUDP, 0),  // the encap load
		geneve(innerICMP, 2), // options: not parsed
		ipv4(98, 17, 6082),   // UDP, not Geneve
		ipv4(60, 17, 6081),   // Geneve header cut short
		ipv4(40, 1, 0)[:30],  // ICMP cut inside the IPv4 header
		ipv4(40, 1, 0)[:20],  // IPv4 cut after 6 bytes
	}
	before, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	if err := testnet.Do(a, func() error {
		if err := rawsend.Send("g0", pass, 10); err != nil {
			return err
		}
		return rawsend.Send("g0", drop, 10)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	got = got.Sub(before)
	if got.Passed != uint64(10*len(pass)) || got.Packets < uint64(10*len(drop)) || got.Packets > uint64(10*len(drop))+10 {
		t.Fatalf("counted %+v, want %d passed and %d (+ the kernel's own) counted", got, 10*len(pass), 10*len(drop))
	}
}
