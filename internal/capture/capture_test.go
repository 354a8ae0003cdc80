package capture_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"xswitch/geneve"
	"xswitch/internal/capture"
	"xswitch/internal/testnet"
)

// innerUDP builds an Ethernet/IPv4/UDP frame (checksums left zero: tshark
// does not judge the inner frame here) with the given ports.
func innerUDP(sport, dport uint16) []byte {
	f := make([]byte, 14+20+8+4)
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 2})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 20+8+4)
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], []byte{198, 19, 0, 1})
	copy(ip[16:20], []byte{198, 19, 0, 2})
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], 8+4)
	return f
}

// TestDecodeGeneve encodes frames with the geneve package, writes them to a
// pcap and checks that DecodeGeneve reports, through real tshark, exactly
// what was encoded: the decoder's field mapping is what the interop tests
// rely on.
func TestDecodeGeneve(t *testing.T) {
	type want struct {
		v6    bool
		vni   uint32
		opts  []geneve.Option
		oam   bool
		sport uint16 // inner UDP source port
	}
	cases := []want{
		{vni: 0, sport: 1000},
		{vni: 5000, sport: 2000, opts: []geneve.Option{{Class: 0x0102, Type: 0x80, Data: []byte{0x0a, 0x0b, 0x0c, 0x0d}}}},
		{v6: true, vni: 5000, sport: 3000, opts: []geneve.Option{{Class: 0xffff, Type: 0x01, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}}, {Class: 0x0102, Type: 0x81}}},
		{vni: 0xffffff, sport: 4000, oam: true},
	}
	var frames [][]byte
	var encs []*geneve.Encapsulator
	for _, c := range cases {
		ec := geneve.DefaultEncapConfig()
		ec.SrcMAC, ec.DstMAC = [6]byte{0x02, 0, 0, 0, 0xaa, 1}, [6]byte{0x02, 0, 0, 0, 0xaa, 2}
		ec.Src, ec.Dst = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
		if c.v6 {
			ec.Src, ec.Dst = netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2")
		}
		ec.VNI, ec.Options, ec.OAM = c.vni, c.opts, c.oam
		e, err := geneve.NewEncapsulator(ec)
		if err != nil {
			t.Fatal(err)
		}
		encs = append(encs, e)
		inner := innerUDP(c.sport, 53)
		buf := make([]byte, e.HeaderLen()+len(inner))
		copy(buf[e.HeaderLen():], inner)
		start := e.Encap(buf, e.HeaderLen(), len(inner))
		frames = append(frames, buf[start:])
	}
	pcap := filepath.Join(t.TempDir(), "enc.pcap")
	if err := capture.WritePcap(pcap, frames); err != nil {
		t.Fatal(err)
	}
	got, err := capture.DecodeGeneve(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(cases) {
		t.Fatalf("tshark decoded %d Geneve frames, want %d", len(got), len(cases))
	}
	for i, c := range cases {
		f := got[i]
		var d geneve.Decoded
		if drop := geneve.Decap(frames[i], &d); drop != geneve.DropNone {
			t.Fatalf("case %d: our Decap drops the frame: %v", i, drop)
		}
		if f.IsIPv6() != c.v6 || f.OuterSrc != d.Src || f.OuterDst != d.Dst {
			t.Errorf("case %d: outer %v -> %v, want %v -> %v", i, f.OuterSrc, f.OuterDst, d.Src, d.Dst)
		}
		if f.VNI != c.vni || f.Proto != geneve.ProtoTEB || f.OAM != c.oam || f.DstPort != geneve.Port || f.SrcPort != d.SrcPort {
			t.Errorf("case %d: vni %d proto %#x oam %v ports %d->%d, want vni %d proto 0x6558 oam %v ports %d->6081",
				i, f.VNI, f.Proto, f.OAM, f.SrcPort, f.DstPort, c.vni, c.oam, d.SrcPort)
		}
		critical := false
		if len(f.Options) != len(c.opts) {
			t.Errorf("case %d: %d options, want %d", i, len(f.Options), len(c.opts))
		} else {
			for j, o := range c.opts {
				g := f.Options[j]
				critical = critical || o.Critical()
				if g.Class != o.Class || g.Type != o.Type || !bytes.Equal(g.Data, o.Data) && len(o.Data)+len(g.Data) > 0 {
					t.Errorf("case %d option %d: got %+v, want %+v", i, j, g, o)
				}
			}
		}
		if f.Critical != critical {
			t.Errorf("case %d: C bit %v, want %v", i, f.Critical, critical)
		}
		if c.v6 {
			if f.IPChecksum != capture.ChecksumAbsent || f.UDPChecksumStatus != capture.ChecksumGood {
				t.Errorf("case %d: IPv6 checksums ip %v udp %v, want absent, good", i, f.IPChecksum, f.UDPChecksumStatus)
			}
		} else if f.IPChecksum != capture.ChecksumGood || f.UDPChecksum != 0 || f.UDPChecksumStatus != capture.ChecksumNotPresent {
			t.Errorf("case %d: IPv4 checksums ip %v udp %#x %v, want good, 0 not_present", i, f.IPChecksum, f.UDPChecksum, f.UDPChecksumStatus)
		}
		if f.InnerL4 != "udp" || f.InnerSrcPort != c.sport || f.InnerDstPort != 53 ||
			f.InnerSrc != netip.MustParseAddr("198.19.0.1") || f.InnerDst != netip.MustParseAddr("198.19.0.2") ||
			f.InnerSrcMAC != "02:00:00:00:00:01" || f.InnerEtherType != 0x0800 {
			t.Errorf("case %d: inner %+v", i, f)
		}
	}
}

// TestDecodeBadChecksum corrupts the outer IPv4 checksum and checks that the
// decoder reports it as bad (validation is really on).
func TestDecodeBadChecksum(t *testing.T) {
	ec := geneve.DefaultEncapConfig()
	ec.Src, ec.Dst = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	ec.IPv4UDPChecksum = true
	e, err := geneve.NewEncapsulator(ec)
	if err != nil {
		t.Fatal(err)
	}
	inner := innerUDP(1, 2)
	buf := make([]byte, e.HeaderLen()+len(inner))
	copy(buf[e.HeaderLen():], inner)
	frame := buf[e.Encap(buf, e.HeaderLen(), len(inner)):]
	good := append([]byte(nil), frame...)
	frame[14+10] ^= 0xff   // IPv4 header checksum
	frame[14+20+6] ^= 0xff // UDP checksum
	pcap := filepath.Join(t.TempDir(), "bad.pcap")
	if err := capture.WritePcap(pcap, [][]byte{good, frame}); err != nil {
		t.Fatal(err)
	}
	got, err := capture.DecodeGeneve(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d frames decoded, want 2", len(got))
	}
	if got[0].IPChecksum != capture.ChecksumGood || got[0].UDPChecksumStatus != capture.ChecksumGood {
		t.Errorf("intact frame: ip %v udp %v, want good, good", got[0].IPChecksum, got[0].UDPChecksumStatus)
	}
	if got[1].IPChecksum != capture.ChecksumBad || got[1].UDPChecksumStatus != capture.ChecksumBad {
		t.Errorf("corrupted frame: ip %v udp %v, want bad, bad", got[1].IPChecksum, got[1].UDPChecksumStatus)
	}
}

// TestStartStop captures a ping between two namespaces and counts the
// frames with tshark: Stop must flush every frame to the file.
func TestStartStop(t *testing.T) {
	n := testnet.New(t)
	a, b := n.NS("a"), n.NS("b")
	n.Veth(a, "v0", b, "v0", 1)
	n.Run(a, "ip", "addr", "add", "198.18.9.1/24", "dev", "v0")
	n.Run(b, "ip", "addr", "add", "198.18.9.2/24", "dev", "v0")
	c := capture.Start(t, b, "v0", "icmp")
	n.Run(a, "ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.9.2")
	pcap, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	out, err := capture.Tshark(pcap, "-T", "fields", "-e", "icmp.type")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); strings.Join(got, ",") != "8,0,8,0,8,0" {
		t.Fatalf("ICMP types captured %v, want 3 requests and 3 replies; tcpdump: %s", got, c.Stderr())
	}
}
