package vswitch

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"xswitch/flowtable"
	"xswitch/geneve"
	"xswitch/internal/csumref"
	"xswitch/xsk"
)

// deviceDo does what the device (or the kernel with XDP_UMEM_TX_SW_CSUM)
// does with a descriptor: when it carries XDP_TX_METADATA, read struct
// xsk_tx_metadata in front of the packet and store the ones' complement
// of the plain sum from csum_start to the end at csum_start+csum_offset
// (0 as 0xffff). It returns the packet and whether a checksum was asked.
func (r *rig) deviceDo(t *testing.T, d desc) ([]byte, bool) {
	t.Helper()
	pkt := r.bytes(d)
	if d.Options == 0 {
		return pkt, false
	}
	if d.Options != unix.XDP_TX_METADATA {
		t.Fatalf("descriptor options %#x", d.Options)
	}
	m := r.area[d.Addr-xsk.TxMetadataLen : d.Addr]
	if f := binary.NativeEndian.Uint64(m); f != unix.XDP_TXMD_FLAGS_CHECKSUM {
		t.Fatalf("metadata flags %#x", f)
	}
	start, off := int(binary.NativeEndian.Uint16(m[8:])), int(binary.NativeEndian.Uint16(m[10:]))
	if start+off+2 > len(pkt) {
		t.Fatalf("checksum request %d+%d outside the %d-byte packet", start, off, len(pkt))
	}
	c := ^csumref.Sum(pkt[start:])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[start+off:], c)
	return pkt, true
}

// useV6Tunnel replaces t's encapsulator by one over IPv6 (outer UDP
// checksum computed).
func useV6Tunnel(t *testing.T, tn *tunnel, opts []geneve.Option) {
	ec := geneve.DefaultEncapConfig()
	ec.SrcMAC, ec.DstMAC, ec.VNI, ec.Options = underMAC, nhMAC, tn.br.vni, opts
	ec.Src, ec.Dst = netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2")
	enc, err := geneve.NewEncapsulator(ec)
	if err != nil {
		t.Fatal(err)
	}
	tn.enc.Store(enc)
	tn.hdrLen = enc.HeaderLen()
	tn.maxInner = 1500 + 14 - tn.hdrLen
}

// checkOuterUDP verifies the outer UDP checksum over IPv6 with the plain
// reference.
func checkOuterUDP(t *testing.T, pkt []byte) {
	t.Helper()
	ip := pkt[14:]
	udp := ip[40:]
	ps := append(append([]byte{}, ip[8:40]...), 0, 0)
	ps = binary.BigEndian.AppendUint16(ps, uint16(len(udp)))
	ps = append(ps, 0, 0, 0, 17)
	if csumref.Sum(append(ps, udp...)) != 0xffff {
		t.Fatalf("outer UDP checksum %#04x does not verify", binary.BigEndian.Uint16(udp[6:]))
	}
}

// TestTxCsumToLocalPort: a partial TCP checksum from vm1 to vm2, whose
// device computes checksums, leaves as a request in TX metadata (the
// frame untouched); the device's result verifies. To vm2 without the
// feature the switch finishes it as before.
func TestTxCsumToLocalPort(t *testing.T) {
	r := newRig(t)
	r.b.txCsum = true
	br := r.f.bridges[0]
	br.table.Learn(flowtable.MACFrom(macB), r.b.dest, 1)
	in := tcpFrame(macB, macA, 1000, 1001, true)
	r.c.forward(r.a, []desc{r.frame(in)})
	q := r.c.pend[r.b.id]
	if len(q) != 1 || !bytes.Equal(r.bytes(q[0]), in) {
		t.Fatal("vm2: frame missing or changed before the device")
	}
	pkt, asked := r.deviceDo(t, q[0])
	if !asked || !tcpValid(pkt) {
		t.Fatalf("checksum asked %v, verifies %v", asked, tcpValid(pkt))
	}
	if r.c.off[r.b.id].csumDev != 1 || r.c.off[r.a.id].csumDone != 0 {
		t.Errorf("counters: device %d on vm2, software %d on vm1", r.c.off[r.b.id].csumDev, r.c.off[r.a.id].csumDone)
	}
	// A complete checksum asks nothing.
	r.reset()
	r.c.forward(r.a, []desc{r.frame(tcpFrame(macB, macA, 1000, 1001, false))})
	if q := r.c.pend[r.b.id]; len(q) != 1 || q[0].Options != 0 {
		t.Fatal("a complete frame carried a checksum request")
	}
	r.reset()
	r.checkFrames(t)
}

// TestTxCsumToTunnel: toward an IPv4 tunnel (no outer checksum) the
// partial inner checksum goes to the underlay device; toward an IPv6
// tunnel the device computes the outer UDP checksum and a partial inner
// one is finished in software. In every case the packet after the
// device's work is byte for byte what the software path sends.
func TestTxCsumToTunnel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, v6 := range []bool{false, true} {
		// Options of 124 and 184 bytes: the second leaves less than the
		// TX metadata room in front of a received frame, so the frame moves.
		for _, opts := range [][]geneve.Option{nil, {{Class: 0x0102, Type: 0x80, Data: make([]byte, 120)}},
			{{Class: 0x0102, Type: 0x80, Data: make([]byte, 120)}, {Class: 0x0102, Type: 0x80, Data: make([]byte, 56)}}} {
			if !v6 && opts != nil {
				continue // the rig's IPv4 tunnels are fixed; options are covered over IPv6
			}
			for _, partial := range []bool{false, true} {
				for k := 0; k < 20; k++ {
					in := tcpFrame(macR, macA, rng.Uint32(), rng.IntN(1200), partial)
					var out [2][]byte
					var asked [2]bool
					var hw, sw [2]uint64
					for i, dev := range []bool{false, true} {
						r := newRig(t)
						if v6 {
							useV6Tunnel(t, r.t1, opts)
						}
						r.f.underlay.txCsum = dev
						r.f.bridges[0].table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
						r.c.forward(r.a, []desc{r.frame(in)})
						q := r.c.pend[0]
						if len(q) != 1 {
							t.Fatalf("underlay got %d frames", len(q))
						}
						if q[0].Addr&(testFrameSize-1) < xsk.TxMetadataLen {
							t.Fatalf("packet at %d in its frame: no room for TX metadata", q[0].Addr&(testFrameSize-1))
						}
						pkt, a := r.deviceDo(t, q[0])
						out[i], asked[i] = append([]byte(nil), pkt...), a
						hw[i], sw[i] = r.c.off[0].csumDev, r.c.off[r.a.id].csumDone
					}
					if !bytes.Equal(out[0], out[1]) {
						t.Fatalf("v6 %v opts %v partial %v: device path differs from software path", v6, opts != nil, partial)
					}
					wantAsk := v6 || partial
					if asked[0] || asked[1] != wantAsk || hw[1] != map[bool]uint64{true: 1}[wantAsk] {
						t.Fatalf("v6 %v partial %v: asked %v, device counter %d", v6, partial, asked, hw[1])
					}
					wantSW := map[bool]uint64{true: 1}[partial && v6]
					if sw[1] != wantSW {
						t.Fatalf("v6 %v partial %v: software completions %d, want %d", v6, partial, sw[1], wantSW)
					}
					var dec geneve.Decoded
					if geneve.Decap(out[1], &dec) != geneve.DropNone || !tcpValid(out[1][dec.InnerOff:dec.InnerOff+dec.InnerLen]) {
						t.Fatal("inner TCP checksum does not verify")
					}
					if v6 {
						checkOuterUDP(t, out[1])
					}
				}
			}
		}
	}
}

// TestTxCsumAllocs: the device-checksum paths allocate nothing.
func TestTxCsumAllocs(t *testing.T) {
	r := newRig(t)
	useV6Tunnel(t, r.t2, nil)
	r.f.underlay.txCsum, r.b.txCsum = true, true
	br := r.f.bridges[0]
	br.table.Learn(flowtable.MACFrom(macB), r.b.dest, 1)
	br.table.Learn(flowtable.MACFrom(macR), r.t2.dest, 1)
	frames := [][]byte{tcpFrame(macB, macA, 1, 500, true), tcpFrame(macR, macA, 2, 500, true), tcpFrame(macR, macA, 3, 500, false), eth(bcast, macA, 60)}
	descs := make([]desc, 1)
	allocs := testing.AllocsPerRun(200, func() {
		r.reset()
		for _, f := range frames {
			descs[0] = r.frame(f)
			r.c.forward(r.a, descs)
		}
		r.tapRead0()
	})
	if allocs != 0 {
		t.Errorf("forward with device checksums allocates %.1f times per batch", allocs)
	}
}

func TestTxCsumDescribe(t *testing.T) {
	for _, c := range []struct {
		p    txCsumPlan
		want string
	}{
		{txCsumPlan{setting: "auto", link: "veth", feat: xsk.Features{Known: true}}, "tx-checksum: device has no xsk tx-checksum (veth); software"},
		{txCsumPlan{setting: "off"}, "tx-checksum: off (tx_checksum_offload: off); software"},
		{txCsumPlan{setting: "auto"}, "tx-checksum: the kernel has no netdev netlink family (Linux < 6.3); software"},
		{txCsumPlan{setting: "on", use: true, kernelSW: true, link: "veth"}, "tx-checksum: AF_XDP TX metadata, computed by the kernel in copy mode (XDP_UMEM_TX_SW_CSUM; tx_checksum_offload: on; veth has no xsk tx-checksum)"},
		{txCsumPlan{setting: "auto", use: true, link: "device"}, "tx-checksum: AF_XDP TX metadata, computed by the device (xsk tx-checksum)"},
	} {
		if got := c.p.describe(); got != c.want {
			t.Errorf("describe(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
	if err := (txCsumPlan{kernelSW: true}).checkMode("eth0", true); err == nil {
		t.Error("forced software checksums accepted on a zero-copy socket")
	}
}
