package frames

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"xswitch/geneve"
	"xswitch/internal/csumref"
)

func testSpec(size, flows int) Spec {
	return Spec{
		Size: size, Flows: flows,
		SrcMAC:  [6]byte{0x02, 0xbe, 0, 0, 0, 1},
		DstMAC:  [6]byte{0x02, 0xbe, 0, 0, 1, 1},
		SrcIP:   netip.MustParseAddr("198.19.1.1"),
		DstIP:   netip.MustParseAddr("198.19.2.1"),
		SrcPort: 1024, DstPort: 5001,
	}
}

// checkInner verifies an inner Ethernet/IPv4/UDP frame of flow i.
func checkInner(t *testing.T, s *Spec, i int, f []byte) {
	t.Helper()
	if len(f) != s.Size {
		t.Fatalf("flow %d: len %d, want %d", i, len(f), s.Size)
	}
	srcMAC, srcIP, sport, dport := s.Flow(i)
	if [6]byte(f[0:6]) != s.DstMAC || [6]byte(f[6:12]) != srcMAC {
		t.Fatalf("flow %d: MACs %x %x", i, f[0:6], f[6:12])
	}
	if et := binary.BigEndian.Uint16(f[12:]); et != 0x0800 {
		t.Fatalf("flow %d: ethertype %#x", i, et)
	}
	ip := f[14:34]
	if csumref.Sum(ip) != 0xffff {
		t.Fatalf("flow %d: bad IPv4 header checksum", i)
	}
	if got := int(binary.BigEndian.Uint16(ip[2:])); got != s.Size-14 {
		t.Fatalf("flow %d: IP total length %d, want %d", i, got, s.Size-14)
	}
	if netip.AddrFrom4([4]byte(ip[12:16])) != srcIP || netip.AddrFrom4([4]byte(ip[16:20])) != s.DstIP {
		t.Fatalf("flow %d: IPs %v %v", i, ip[12:16], ip[16:20])
	}
	udp := f[34:]
	if binary.BigEndian.Uint16(udp[0:]) != sport || binary.BigEndian.Uint16(udp[2:]) != dport {
		t.Fatalf("flow %d: ports %d %d", i, binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:]))
	}
	if int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
		t.Fatalf("flow %d: UDP length %d, want %d", i, binary.BigEndian.Uint16(udp[4:]), len(udp))
	}
	pseudo := append(append([]byte{}, ip[12:20]...), 0, 17, byte(len(udp)>>8), byte(len(udp)))
	if binary.BigEndian.Uint16(udp[6:]) == 0 || csumref.Sum(pseudo, udp) != 0xffff {
		t.Fatalf("flow %d: bad UDP checksum %#x", i, binary.BigEndian.Uint16(udp[6:]))
	}
}

func TestBuildPlain(t *testing.T) {
	for _, size := range []int{MinSize, 64, 65, 512, 1500, MaxSize} {
		s := testSpec(size, 7)
		fs, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != 7 {
			t.Fatalf("got %d frames", len(fs))
		}
		seen := map[[6]byte]bool{}
		for i, f := range fs {
			checkInner(t, &s, i, f)
			seen[[6]byte(f[6:12])] = true
		}
		if len(seen) != 7 {
			t.Fatalf("size %d: %d distinct source MACs, want 7", size, len(seen))
		}
	}
}

func TestBuildGeneve(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		c := geneve.DefaultEncapConfig()
		c.SrcMAC = [6]byte{0x02, 0xbe, 0, 0, 2, 1}
		c.DstMAC = [6]byte{0x02, 0xbe, 0, 0, 2, 2}
		c.Src, c.Dst = netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("198.18.1.1")
		if v6 {
			c.Src, c.Dst = netip.MustParseAddr("2001:2::2"), netip.MustParseAddr("2001:2::1")
		}
		c.VNI = 5000
		c.IPv4UDPChecksum = true
		e, err := geneve.NewEncapsulator(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{64, 512, 1500} {
			s := testSpec(size, 4)
			s.Encap = e
			fs, err := Build(s)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range fs {
				if len(f) != s.Len() {
					t.Fatalf("len %d, want %d", len(f), s.Len())
				}
				var d geneve.Decoded
				if drop := geneve.Decap(f, &d); drop != geneve.DropNone {
					t.Fatalf("v6=%v size %d flow %d: Decap: %v", v6, size, i, drop)
				}
				if d.VNI != 5000 || d.Proto != geneve.ProtoTEB || d.Src != c.Src || d.Dst != c.Dst {
					t.Fatalf("decoded %+v", d)
				}
				// Outer UDP checksum, verified with the reference over the pseudo header.
				var pseudo, udp []byte
				if v6 {
					udp = f[14+40:]
					pseudo = append(append([]byte{}, f[14+8:14+40]...), 0, 0, byte(len(udp)>>8), byte(len(udp)), 0, 0, 0, 17)
				} else {
					udp = f[14+20:]
					if csumref.Sum(f[14:34]) != 0xffff {
						t.Fatal("outer IPv4 header checksum invalid")
					}
					pseudo = append(append([]byte{}, f[14+12:14+20]...), 0, 17, byte(len(udp)>>8), byte(len(udp)))
				}
				if binary.BigEndian.Uint16(udp[6:]) == 0 || csumref.Sum(pseudo, udp) != 0xffff {
					t.Fatalf("v6=%v: outer UDP checksum %#04x invalid", v6, binary.BigEndian.Uint16(udp[6:]))
				}
				checkInner(t, &s, i, f[d.InnerOff:d.InnerOff+d.InnerLen])
			}
		}
	}
}

func TestValidate(t *testing.T) {
	bad := []Spec{testSpec(59, 1), testSpec(1519, 1), testSpec(64, 0)}
	s := testSpec(64, 1)
	s.SrcIP = netip.MustParseAddr("2001:2::1")
	bad = append(bad, s)
	for i, s := range bad {
		if _, err := Build(s); err == nil {
			t.Errorf("spec %d: no error", i)
		}
	}
}
