package geneve

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"

	"xswitch/internal/capture"
)

// TestOVSCaptures decodes Geneve frames that Open vSwitch sent (captures in
// testdata/ovs-*.pcap, see testdata/README.md) and re-encodes each one with
// an Encapsulator configured from the decoded fields; the result must be
// byte-identical to OVS's frame except for fields that legitimately differ
// per sender:
//   - UDP source port: a hash of the inner flow, each implementation its own
//     hash. The test pins the range to the observed port to compare the rest.
//   - IPv4 ID (and so the header checksum) when OVS sends a nonzero ID.
//   - IPv6 flow label: also a per-implementation flow hash.
//
// File names state what was configured: "vni0" → VNI 0, "key5000" or "vni5000" → VNI 5000,
// "option" → one critical option class 0x0102 type 0x80 data 0a0b0c0d.
func TestOVSCaptures(t *testing.T) {
	files, err := filepath.Glob("testdata/ovs-*.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/ovs-*.pcap: run testdata/make-ovs-pcaps.sh as root (see testdata/README.md)")
	}
	var known KnownOptions
	known.Add(0x0102, 0x80)
	total := 0
	for _, file := range files {
		frames, err := capture.ReadPcap(file)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(file)
		if len(frames) == 0 {
			t.Errorf("%s: no frames", name)
		}
		for i, f := range frames {
			var d Decoded
			if drop := Decap(f, &d); drop != DropNone {
				t.Errorf("%s frame %d: Decap: %v", name, i, drop)
				continue
			}
			total++
			switch {
			case strings.Contains(name, "vni0") && d.VNI != 0,
				(strings.Contains(name, "key5000") || strings.Contains(name, "vni5000")) && d.VNI != 5000:
				t.Errorf("%s frame %d: VNI %d", name, i, d.VNI)
			}
			if d.Proto != ProtoTEB || d.OAM {
				t.Errorf("%s frame %d: proto %#x OAM %v", name, i, d.Proto, d.OAM)
			}
			var opts []Option
			it := d.Options(f).Iter()
			for o, ok := it.Next(); ok; o, ok = it.Next() {
				opts = append(opts, o)
			}
			if it.Err() != nil {
				t.Errorf("%s frame %d: options: %v", name, i, it.Err())
			}
			if strings.Contains(name, "option") {
				if len(opts) != 1 || opts[0].Class != 0x0102 || opts[0].Type != 0x80 ||
					!bytes.Equal(opts[0].Data, []byte{0x0a, 0x0b, 0x0c, 0x0d}) || !d.Critical {
					t.Errorf("%s frame %d: options %+v critical %v", name, i, opts, d.Critical)
				}
				if CheckOptions(d.Options(f), nil) != DropCriticalOption {
					t.Errorf("%s frame %d: unknown critical option accepted", name, i)
				}
			} else if len(opts) != 0 || d.Critical {
				t.Errorf("%s frame %d: unexpected options %+v", name, i, opts)
			}
			if drop := CheckOptions(d.Options(f), &known); drop != DropNone {
				t.Errorf("%s frame %d: CheckOptions: %v", name, i, drop)
			}
			inner := f[d.InnerOff : d.InnerOff+d.InnerLen]
			if et := binary.BigEndian.Uint16(inner[12:]); et != 0x0800 && et != 0x0806 && et != 0x86dd {
				t.Errorf("%s frame %d: inner EtherType %#04x", name, i, et)
			}
			reencode(t, name, i, f, &d, opts)
		}
	}
	t.Logf("%d OVS Geneve frames in %d files decoded and re-encoded", total, len(files))
}

func reencode(t *testing.T, name string, i int, f []byte, d *Decoded, opts []Option) {
	t.Helper()
	if binary.BigEndian.Uint16(f[12:]) == etherTypeVLAN { // compare without the tag
		f = append(append([]byte{}, f[:12]...), f[16:]...)
		d.InnerOff -= 4
	}
	ip := f[EthLen:]
	c := EncapConfig{
		Src: d.Src, Dst: d.Dst, VNI: d.VNI, Options: opts, OAM: d.OAM,
		SrcPortMin: d.SrcPort, SrcPortMax: d.SrcPort,
	}
	copy(c.DstMAC[:], f[0:6])
	copy(c.SrcMAC[:], f[6:12])
	udp := f[d.OptOff-GeneveLen-UDPLen:]
	hasCsum := binary.BigEndian.Uint16(udp[6:]) != 0
	mask := map[int]bool{} // byte offsets that may differ
	if d.Src.Is4() {
		if int(ip[0]&0xf) != 5 {
			t.Logf("%s frame %d: IPv4 options, not re-encoded", name, i)
			return
		}
		c.TOS, c.TTL, c.DontFragment, c.IPv4UDPChecksum = ip[1], ip[8], ip[6]&0x40 != 0, hasCsum
		if binary.BigEndian.Uint16(ip[4:]) != 0 {
			for _, o := range []int{4, 5, 10, 11} {
				mask[EthLen+o] = true
			}
		}
	} else {
		c.TOS = uint8(binary.BigEndian.Uint32(ip) >> 20)
		c.TTL, c.IPv6UDPChecksum = ip[7], hasCsum
		mask[EthLen+1], mask[EthLen+2], mask[EthLen+3] = true, true, true // flow label (low nibble of byte 1 too)
	}
	e, err := NewEncapsulator(c)
	if err != nil {
		t.Errorf("%s frame %d: NewEncapsulator: %v", name, i, err)
		return
	}
	if e.HeaderLen() != d.InnerOff {
		t.Errorf("%s frame %d: header length %d, OVS %d", name, i, e.HeaderLen(), d.InnerOff)
		return
	}
	end := d.InnerOff + d.InnerLen // without Ethernet padding
	buf := make([]byte, end)
	copy(buf[d.InnerOff:], f[d.InnerOff:end])
	e.Encap(buf, d.InnerOff, d.InnerLen)
	for j := 0; j < end; j++ {
		if buf[j] == f[j] {
			continue
		}
		if mask[j] && !(j == EthLen+1 && buf[j]&0xf0 != f[j]&0xf0) {
			continue
		}
		t.Errorf("%s frame %d: byte %d: ours %#02x, OVS %#02x\nours %x\nOVS  %x", name, i, j, buf[j], f[j], buf[:d.InnerOff], f[:d.InnerOff])
		return
	}
}
