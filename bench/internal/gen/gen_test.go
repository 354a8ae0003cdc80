package gen

import (
	"context"
	"net/netip"
	"testing"

	"xswitch/bench/internal/frames"
	"xswitch/internal/testnet"
)

func testFrames(t testing.TB, size int) [][]byte {
	fs, err := frames.Build(frames.Spec{Size: size, Flows: 8,
		SrcMAC: [6]byte{2, 0xbe, 0, 0, 0, 1}, DstMAC: [6]byte{2, 0xbe, 0, 0, 0, 2},
		SrcIP: netip.MustParseAddr("198.19.0.1"), DstIP: netip.MustParseAddr("198.19.0.2"), SrcPort: 1, DstPort: 2})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// openOnVeth opens a generator on one end of a fresh veth pair.
func openOnVeth(t testing.TB, backend Backend, count uint64) *Generator {
	n := testnet.New(t)
	a, b := n.NS("gen"), n.NS("peer")
	n.Veth(a, "g0", b, "p0", 1)
	var g *Generator
	if err := testnet.Do(a, func() (err error) {
		g, err = Open(Config{Interface: "g0", Frames: testFrames(t, 64), Backend: backend, Count: count, CPU: -1})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func TestConfigErrors(t *testing.T) {
	fs := testFrames(t, 64)
	bad := []Config{
		{Frames: fs},
		{Interface: "x"},
		{Interface: "x", Frames: append(testFrames(t, 64)[:1], testFrames(t, 100)[0])},
		{Interface: "x", Frames: fs, Rate: -1},
		{Interface: "x", Frames: fs, Backend: "nope"},
	}
	for i, c := range bad {
		if _, err := Open(c); err == nil {
			t.Errorf("config %d: no error", i)
		}
	}
}

func testBackend(t *testing.T, backend Backend) {
	g := openOnVeth(t, backend, 1000)
	if err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if g.Sent() != 1000 {
		t.Fatalf("sent %d, want exactly Count=1000", g.Sent())
	}
	allocs := testing.AllocsPerRun(200, func() { g.tx.send(64) })
	if allocs != 0 {
		t.Fatalf("send allocates %v times per burst", allocs)
	}
}

func TestPacketBackend(t *testing.T) { testBackend(t, BackendPacket) }

func TestXSKBackend(t *testing.T) { testBackend(t, BackendXSK) }

func benchBackend(b *testing.B, backend Backend) {
	g := openOnVeth(b, backend, 0)
	b.ReportAllocs()
	b.ResetTimer()
	var sent int
	for i := 0; i < b.N; i++ {
		sent += g.tx.send(64)
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// BenchmarkPacketSend is one burst of 64 per op through AF_PACKET sendmmsg.
func BenchmarkPacketSend(b *testing.B) { benchBackend(b, BackendPacket) }

// BenchmarkXSKSend is one burst of 64 per op through the AF_XDP TX ring.
func BenchmarkXSKSend(b *testing.B) { benchBackend(b, BackendXSK) }
