package geneve

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"

	"xswitch/internal/capture"
)

func fuzzSeeds(f *testing.F) {
	rng := rand.New(rand.NewPCG(31, 31))
	for _, v6 := range []bool{false, true} {
		c := testConfig(v6)
		f.Add(encapsulate(mustEncap(f, c), innerFrame(rng, false, 20)))
		c.Options = []Option{{Class: 0x0102, Type: 0x80, Data: []byte{1, 2, 3, 4}}, {Class: 3, Type: 4}}
		f.Add(encapsulate(mustEncap(f, c), innerFrame(rng, true, 0)))
	}
	f.Add([]byte{})
	f.Add(make([]byte, 14))
	// Real frames from Open vSwitch (testdata/ovs-*.pcap).
	files, _ := filepath.Glob("testdata/ovs-*.pcap")
	for _, file := range files {
		frames, err := capture.ReadPcap(file)
		if err != nil {
			f.Fatal(err)
		}
		for i, fr := range frames {
			if i < 4 {
				f.Add(fr)
			}
		}
	}
}

// FuzzDecap: Decap never panics, and what it accepts is consistent: offsets
// inside the frame, options that CheckOptions can walk.
func FuzzDecap(f *testing.F) {
	fuzzSeeds(f)
	var known KnownOptions
	known.Add(0x0102, 0x80)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var d Decoded
		drop := Decap(frame, &d)
		if drop >= NumDrops {
			t.Fatalf("drop %d out of range", drop)
		}
		if drop != DropNone && drop != DropUnknownProto {
			return
		}
		if d.OptOff < 0 || d.OptLen < 0 || d.OptLen > MaxOptionsLen || d.OptLen%4 != 0 || d.OptOff+d.OptLen != d.InnerOff ||
			d.InnerLen < 0 || d.InnerOff+d.InnerLen > len(frame) {
			t.Fatalf("bad offsets %+v for frame of %d bytes", d, len(frame))
		}
		if drop == DropNone && d.InnerLen < EthLen {
			t.Fatalf("inner frame of %d bytes accepted", d.InnerLen)
		}
		opts := d.Options(frame)
		CheckOptions(opts, &known)
		it := opts.Iter()
		for o, ok := it.Next(); ok; o, ok = it.Next() {
			if len(o.Data)%4 != 0 || len(o.Data) > MaxOptionDataLen {
				t.Fatalf("option data of %d bytes", len(o.Data))
			}
		}
		InnerHash(frame[d.InnerOff : d.InnerOff+d.InnerLen])
	})
}

// FuzzOptions: iteration and CheckOptions agree, never panic, and a clean
// walk re-encodes to the same bytes (reserved bits cleared).
func FuzzOptions(f *testing.F) {
	f.Add([]byte{1, 2, 0x80, 1, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 3, 0xff, 0, 0})
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		it := Options(b).Iter()
		var re []byte
		critical := false
		for o, ok := it.Next(); ok; o, ok = it.Next() {
			var err error
			if re, err = AppendOption(re, o); err != nil {
				t.Fatalf("decoded option does not re-encode: %v", err)
			}
			critical = critical || o.Critical()
		}
		drop := CheckOptions(b, nil)
		if it.Err() != nil {
			if drop != DropBadOptLength && drop != DropCriticalOption {
				t.Fatalf("iterator error %v but CheckOptions %v", it.Err(), drop)
			}
			return
		}
		if (drop == DropCriticalOption) != critical || (drop != DropNone && drop != DropCriticalOption) {
			t.Fatalf("CheckOptions %v, critical %v", drop, critical)
		}
		clean := append([]byte{}, b...)
		for i := 0; i+4 <= len(clean); i += 4 + int(clean[i+3]&0x1f)*4 {
			clean[i+3] &= 0x1f
		}
		if !bytes.Equal(re, clean) {
			t.Fatalf("re-encoded %x, want %x", re, clean)
		}
	})
}

// FuzzEncapDecap: any configuration NewEncapsulator accepts and any inner
// frame round-trip through Encap and Decap.
func FuzzEncapDecap(f *testing.F) {
	f.Add(uint32(5000), false, uint8(64), uint16(49152), uint16(65535), []byte{}, []byte("0123456789abcdef"))
	f.Add(uint32(1), true, uint8(1), uint16(1), uint16(1), []byte{1, 2, 0x80, 1, 9, 9, 9, 9}, make([]byte, 100))
	f.Fuzz(func(t *testing.T, vni uint32, v6 bool, ttl uint8, pmin, pmax uint16, opts, inner []byte) {
		if len(inner) < EthLen || len(inner) > 9000 {
			return
		}
		c := testConfig(v6)
		c.VNI, c.TTL, c.SrcPortMin, c.SrcPortMax = vni, ttl, pmin, pmax
		c.Options = parseOptions(opts)
		e, err := NewEncapsulator(c)
		if err != nil {
			return
		}
		f := encapsulate(e, inner)
		var d Decoded
		if drop := Decap(f, &d); drop != DropNone {
			t.Fatalf("Decap of own frame: %v", drop)
		}
		if d.VNI != vni || !bytes.Equal(f[d.InnerOff:d.InnerOff+d.InnerLen], inner) || d.Src != c.Src.Unmap() {
			t.Fatalf("round trip: %+v", d)
		}
		if e.IPv6() {
			if binary.BigEndian.Uint32(f[EthLen:])&0xfffff != InnerHash(inner)&0xfffff {
				t.Fatal("flow label")
			}
		} else if d.Dst != netip.MustParseAddr("198.18.0.2") {
			t.Fatal("dst")
		}
	})
}
