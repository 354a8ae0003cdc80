package geneve

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"testing"

	"xswitch/internal/csumref"
)

func setIPv4Checksum(ip []byte) {
	ihl := int(ip[0]&0xf) * 4
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^csumref.Sum(ip[:ihl]))
}

// innerFrame builds a well-formed inner Ethernet/IPv4|IPv6/UDP frame with
// payload bytes of payload length.
func innerFrame(rng *rand.Rand, v6 bool, payload int) []byte {
	var f []byte
	f = append(f, 0x02, 0, 0, 0, 0, byte(rng.IntN(256)))             // dst MAC
	f = append(f, 0x02, 0, 0, 0, 1, byte(rng.IntN(256)))             // src MAC
	sport, dport := uint16(rng.IntN(65536)), uint16(rng.IntN(65536)) // inner ports
	udp := binary.BigEndian.AppendUint16(nil, sport)                 //
	udp = binary.BigEndian.AppendUint16(udp, dport)                  //
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+payload))      //
	udp = append(udp, 0, 0)                                          // no inner UDP checksum
	for i := 0; i < payload; i++ {
		udp = append(udp, byte(rng.IntN(256)))
	}
	if v6 {
		f = append(f, 0x86, 0xdd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
		ip[6], ip[7] = 17, 64
		copy(ip[8:], netip.MustParseAddr("2001:2::10").AsSlice())
		copy(ip[24:], netip.MustParseAddr("2001:2::20").AsSlice())
		ip[23], ip[39] = byte(rng.IntN(256)), byte(rng.IntN(256))
		f = append(f, ip...)
	} else {
		f = append(f, 0x08, 0x00)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		ip[8], ip[9] = 64, 17
		copy(ip[12:], []byte{198, 19, 0, byte(1 + rng.IntN(250))})
		copy(ip[16:], []byte{198, 19, 0, byte(1 + rng.IntN(250))})
		setIPv4Checksum(ip)
		f = append(f, ip...)
	}
	return append(f, udp...)
}

// encapsulate places inner behind HeaderLen bytes of headroom and encapsulates it.
func encapsulate(e *Encapsulator, inner []byte) []byte {
	buf := make([]byte, e.HeaderLen()+len(inner))
	copy(buf[e.HeaderLen():], inner)
	start := e.Encap(buf, e.HeaderLen(), len(inner))
	return buf[start:]
}

func testConfig(v6 bool) EncapConfig {
	c := DefaultEncapConfig()
	c.SrcMAC = [6]byte{0x02, 0xaa, 0, 0, 0, 1}
	c.DstMAC = [6]byte{0x02, 0xaa, 0, 0, 0, 2}
	if v6 {
		c.Src, c.Dst = netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2")
	} else {
		c.Src, c.Dst = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	}
	c.VNI = 5000
	return c
}

// fuzzConfig is testConfig with the addresses and options a fuzz input
// gives: addrs holds two IPv6 addresses (32 bytes or more) or two IPv4 ones
// (8 or more; shorter keeps testConfig's), opts options in wire format (as
// many as parse).
func fuzzConfig(addrs, opts []byte) EncapConfig {
	c := testConfig(len(addrs) >= 32)
	switch {
	case len(addrs) >= 32:
		c.Src, c.Dst = netip.AddrFrom16([16]byte(addrs[:16])), netip.AddrFrom16([16]byte(addrs[16:32]))
	case len(addrs) >= 8:
		c.Src, c.Dst = netip.AddrFrom4([4]byte(addrs[:4])), netip.AddrFrom4([4]byte(addrs[4:8]))
	}
	c.Options = parseOptions(opts)
	return c
}

// parseOptions returns the options in wire format in raw, as many as parse.
func parseOptions(raw []byte) []Option {
	var opts []Option
	it := Options(raw).Iter()
	for o, ok := it.Next(); ok; o, ok = it.Next() {
		opts = append(opts, o)
	}
	return opts
}

// randomAddrs gives c two random addresses of its family. It reports false
// for IPv4-mapped IPv6 ones, which NewEncapsulator takes for IPv4.
func randomAddrs(rng *rand.Rand, c *EncapConfig, v6 bool) bool {
	if !v6 {
		c.Src, c.Dst = netip.AddrFrom4([4]byte(randomBytes(rng, 4))), netip.AddrFrom4([4]byte(randomBytes(rng, 4)))
		return true
	}
	c.Src, c.Dst = netip.AddrFrom16([16]byte(randomBytes(rng, 16))), netip.AddrFrom16([16]byte(randomBytes(rng, 16)))
	return !c.Src.Is4In6() && !c.Dst.Is4In6()
}

func mustEncap(t testing.TB, c EncapConfig) *Encapsulator {
	t.Helper()
	e, err := NewEncapsulator(c)
	if err != nil {
		t.Fatalf("NewEncapsulator: %v", err)
	}
	return e
}

// TestDropNames checks the counter names on properties the name table itself
// cannot vouch for: every reason has a name, names are snake_case and
// distinct (two reasons sharing a counter would hide one), and they are
// stable: the literal list below was written once from the documented
// counter names; renaming a counter breaks dashboards and must fail here.
// That each reason is produced by some input is TestDecapDrops' job.
func TestDropNames(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	seen := map[string]Drop{}
	for d := DropNone; d < NumDrops; d++ {
		name := d.String()
		if !snake.MatchString(name) {
			t.Errorf("Drop(%d).String() = %q: not a snake_case counter name", d, name)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("Drop(%d) and Drop(%d) share the name %q", prev, d, name)
		}
		seen[name] = d
	}
	stable := map[Drop]string{
		DropNone: "none", DropTooShort: "too_short", DropNotIP: "not_ip", DropBadIPHeader: "bad_ip_header",
		DropBadIPLength: "bad_ip_length", DropIPFragment: "ip_fragment", DropNotUDP: "not_udp",
		DropBadUDPLength: "bad_udp_length", DropNotGenevePort: "not_geneve_port", DropBadVersion: "bad_version",
		DropBadOptLength: "bad_opt_length", DropUnknownProto: "unknown_proto", DropCriticalOption: "critical_option",
		DropOAM: "oam",
	}
	if len(stable) != int(NumDrops) {
		t.Errorf("NumDrops = %d, %d names pinned: pin the new reason's name here", NumDrops, len(stable))
	}
	for d, w := range stable {
		if got := d.String(); got != w {
			t.Errorf("Drop(%d).String() = %q, pinned %q", d, got, w)
		}
	}
	for _, d := range []Drop{NumDrops, 255} { // out of range: a name, not a panic or a blank
		if got, want := d.String(), fmt.Sprintf("drop_%d", d); got != want {
			t.Errorf("out of range Drop(%d).String() = %q, want %q", uint8(d), got, want)
		}
		if _, clash := seen[d.String()]; clash {
			t.Errorf("out-of-range name %q clashes with a reason", d.String())
		}
	}
}

func TestHeaderLen(t *testing.T) {
	if IPv4Overhead != 50 || IPv6Overhead != 70 || IPv4HeaderLen(8) != 58 || IPv6HeaderLen(252) != 322 || MaxHeaderLen != 322 {
		t.Fatal("header length constants wrong")
	}
	for _, v6 := range []bool{false, true} {
		c := testConfig(v6)
		e := mustEncap(t, c)
		want := IPv4Overhead
		if v6 {
			want = IPv6Overhead
		}
		if e.HeaderLen() != want {
			t.Errorf("v6=%v HeaderLen %d want %d", v6, e.HeaderLen(), want)
		}
		c.Options = []Option{{Class: 0x0102, Type: 0x03, Data: make([]byte, 8)}}
		if e := mustEncap(t, c); e.HeaderLen() != want+12 {
			t.Errorf("v6=%v with 12 bytes of options HeaderLen %d want %d", v6, e.HeaderLen(), want+12)
		}
	}
}

func TestNewEncapsulatorErrors(t *testing.T) {
	bad := map[string]func(c *EncapConfig){
		"no addresses":  func(c *EncapConfig) { c.Src, c.Dst = netip.Addr{}, netip.Addr{} },
		"mixed family":  func(c *EncapConfig) { c.Dst = netip.MustParseAddr("2001:2::2") },
		"vni too big":   func(c *EncapConfig) { c.VNI = 1 << 24 },
		"port range":    func(c *EncapConfig) { c.SrcPortMin, c.SrcPortMax = 2000, 1000 },
		"option length": func(c *EncapConfig) { c.Options = []Option{{Data: make([]byte, 3)}} },
		"option big":    func(c *EncapConfig) { c.Options = []Option{{Data: make([]byte, 128)}} },
		"options > 252": func(c *EncapConfig) {
			for i := 0; i < 3; i++ { // 3 * (4+124) = 384
				c.Options = append(c.Options, Option{Class: 1, Data: make([]byte, 124)})
			}
		},
	}
	for name, mod := range bad {
		c := testConfig(false)
		mod(&c)
		if _, err := NewEncapsulator(c); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Exactly 252 bytes of options is allowed: (4+124) + (4+120) = 252.
	c := testConfig(false)
	c.Options = []Option{{Class: 1, Data: make([]byte, 124)}, {Class: 2, Data: make([]byte, 120)}}
	e := mustEncap(t, c)
	if e.HeaderLen() != IPv4HeaderLen(252) {
		t.Fatalf("HeaderLen %d", e.HeaderLen())
	}
	f := encapsulate(e, innerFrame(rand.New(rand.NewPCG(1, 1)), false, 10))
	var d Decoded
	if drop := Decap(f, &d); drop != DropNone || d.OptLen != 252 {
		t.Fatalf("252-byte options: drop %v optlen %d", drop, d.OptLen)
	}
	// IPv4-mapped IPv6 addresses are IPv4.
	c = testConfig(false)
	c.Src = netip.AddrFrom16(c.Src.As16())
	if e := mustEncap(t, c); e.IPv6() || e.HeaderLen() != 50 {
		t.Fatal("IPv4-mapped source not treated as IPv4")
	}
}

// TestRoundTrip encodes random inner frames with random configurations and
// decodes them again.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 1))
	for i := 0; i < 3000; i++ {
		v6 := rng.IntN(2) == 1
		c := testConfig(v6)
		c.VNI = rng.Uint32() & 0xffffff
		c.TTL = uint8(rng.IntN(256))
		c.TOS = uint8(rng.IntN(256))
		c.DontFragment = rng.IntN(2) == 1
		c.OAM = rng.IntN(4) == 0
		c.IPv4UDPChecksum = rng.IntN(2) == 1
		c.IPv6UDPChecksum = rng.IntN(2) == 1
		c.SrcPortMin = uint16(rng.IntN(65536))
		c.SrcPortMax = c.SrcPortMin + uint16(rng.IntN(int(65536-int(c.SrcPortMin))))
		var optBytes int
		for n := rng.IntN(5); n > 0; n-- {
			dl := 4 * rng.IntN(32)
			if optBytes+4+dl > MaxOptionsLen {
				break
			}
			o := Option{Class: uint16(rng.IntN(65536)), Type: uint8(rng.IntN(256)), Data: make([]byte, dl)}
			for j := range o.Data {
				o.Data[j] = byte(rng.IntN(256))
			}
			c.Options = append(c.Options, o)
			optBytes += 4 + dl
		}
		e := mustEncap(t, c)
		inner := innerFrame(rng, rng.IntN(2) == 1, rng.IntN(1400))
		if rng.IntN(8) == 0 { // arbitrary bytes, odd lengths
			inner = inner[:EthLen+rng.IntN(len(inner)-EthLen)]
		}
		f := encapsulate(e, inner)
		var d Decoded
		if drop := Decap(f, &d); drop != DropNone {
			t.Fatalf("iter %d: Decap: %v", i, drop)
		}
		ttl := c.TTL
		if ttl == 0 {
			ttl = 64
		}
		wantCrit := false
		for _, o := range c.Options {
			wantCrit = wantCrit || o.Critical()
		}
		if d.VNI != c.VNI || d.Proto != ProtoTEB || d.OAM != c.OAM || d.Critical != wantCrit ||
			d.Src != c.Src || d.Dst != c.Dst || d.OptLen != optBytes || d.InnerLen != len(inner) ||
			!bytes.Equal(f[d.InnerOff:d.InnerOff+d.InnerLen], inner) {
			t.Fatalf("iter %d: decoded %+v from config %+v", i, d, c)
		}
		if d.SrcPort < c.SrcPortMin || d.SrcPort > c.SrcPortMax {
			t.Fatalf("iter %d: src port %d outside %d..%d", i, d.SrcPort, c.SrcPortMin, c.SrcPortMax)
		}
		it := d.Options(f).Iter()
		for j := 0; ; j++ {
			o, ok := it.Next()
			if !ok {
				if j != len(c.Options) || it.Err() != nil {
					t.Fatalf("iter %d: %d options decoded of %d, err %v", i, j, len(c.Options), it.Err())
				}
				break
			}
			w := c.Options[j]
			if o.Class != w.Class || o.Type != w.Type || !bytes.Equal(o.Data, w.Data) {
				t.Fatalf("iter %d: option %d = %+v want %+v", i, j, o, w)
			}
		}
		hash := InnerHash(inner)
		udp := f[e.udpOff:]
		udpLen := int(binary.BigEndian.Uint16(udp[4:]))
		csum := binary.BigEndian.Uint16(udp[6:])
		var pseudo []byte
		if v6 {
			if fl := binary.BigEndian.Uint32(f[EthLen:]); fl != 6<<28|uint32(c.TOS)<<20|hash&0xfffff {
				t.Fatalf("iter %d: IPv6 first word %08x", i, fl)
			}
			if f[EthLen+7] != ttl {
				t.Fatalf("hop limit %d", f[EthLen+7])
			}
			pseudo = append(append([]byte{}, f[EthLen+8:EthLen+40]...), 0, 0, byte(udpLen>>8), byte(udpLen), 0, 0, 0, 17)
		} else {
			ip := f[EthLen:]
			if ip[8] != ttl || ip[1] != c.TOS || (ip[6]&0x40 != 0) != c.DontFragment {
				t.Fatalf("iter %d: IPv4 header %x", i, ip[:20])
			}
			pseudo = append(append([]byte{}, ip[12:20]...), 0, 17, byte(udpLen>>8), byte(udpLen))
		}
		wantCsum := (v6 && c.IPv6UDPChecksum) || (!v6 && c.IPv4UDPChecksum)
		if !wantCsum && csum != 0 {
			t.Fatalf("iter %d: UDP checksum %04x, want zero", i, csum)
		}
		if wantCsum && (csum == 0 || csumref.Sum(pseudo, udp[:udpLen]) != 0xffff) {
			t.Fatalf("iter %d: UDP checksum %04x does not verify", i, csum)
		}
	}
}

func TestEncapInPlaceKeepsRest(t *testing.T) {
	// Encap writes only the headroom and does not touch bytes around it.
	e := mustEncap(t, testConfig(false))
	inner := innerFrame(rand.New(rand.NewPCG(3, 3)), false, 64)
	buf := bytes.Repeat([]byte{0xee}, 256+len(inner)+32)
	copy(buf[256:], inner)
	start := e.Encap(buf, 256, len(inner))
	if start != 256-50 {
		t.Fatalf("start %d", start)
	}
	for i := 0; i < start; i++ {
		if buf[i] != 0xee {
			t.Fatalf("byte %d before the header changed", i)
		}
	}
	if !bytes.Equal(buf[256:256+len(inner)], inner) {
		t.Fatal("inner frame changed")
	}
	for i := 256 + len(inner); i < len(buf); i++ {
		if buf[i] != 0xee {
			t.Fatalf("byte %d after the frame changed", i)
		}
	}
}

func TestInnerHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	a := innerFrame(rng, false, 100)
	b := append([]byte{}, a...)
	b[len(b)-1] ^= 0xff // payload differs: same flow
	if InnerHash(a) != InnerHash(b) {
		t.Fatal("payload changed the flow hash")
	}
	ports := map[uint16]bool{}
	e := mustEncap(t, testConfig(false))
	for i := 0; i < 200; i++ {
		f := innerFrame(rng, i%2 == 0, 20)
		var d Decoded
		if Decap(encapsulate(e, f), &d) != DropNone {
			t.Fatal("decap")
		}
		ports[d.SrcPort] = true
	}
	if len(ports) < 150 { // 200 random flows over 16384 ports: almost all distinct
		t.Fatalf("only %d distinct source ports for 200 flows", len(ports))
	}
	for n := 0; n < EthLen+50; n++ { // short and partial frames must not panic
		InnerHash(a[:n])
	}
	// Flow fields change the hash.
	c := append([]byte{}, a...)
	c[EthLen+20] ^= 1 // inner UDP source port
	if InnerHash(a) == InnerHash(c) {
		t.Fatal("inner port ignored by the hash")
	}
}

func TestVLANAndPadding(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, v6 := range []bool{false, true} {
		e := mustEncap(t, testConfig(v6))
		inner := innerFrame(rng, false, 30)
		f := encapsulate(e, inner)
		tagged := append(append(append([]byte{}, f[:12]...), 0x81, 0x00, 0x00, 0x64), f[12:]...)
		padded := append(append([]byte{}, tagged...), make([]byte, 17)...) // Ethernet padding after the IP packet
		for _, fr := range [][]byte{tagged, padded} {
			var d Decoded
			if drop := Decap(fr, &d); drop != DropNone {
				t.Fatalf("v6=%v: %v", v6, drop)
			}
			if !bytes.Equal(fr[d.InnerOff:d.InnerOff+d.InnerLen], inner) || d.VNI != 5000 {
				t.Fatalf("v6=%v: inner wrong %+v", v6, d)
			}
		}
	}
}

func TestIPv4HeaderOptions(t *testing.T) {
	// A valid outer IPv4 header with options (IHL 6) decodes; the options are skipped.
	inner := innerFrame(rand.New(rand.NewPCG(4, 4)), false, 30)
	f := encapsulate(mustEncap(t, testConfig(false)), inner)
	g := append(append(append([]byte{}, f[:EthLen+20]...), 1, 1, 1, 0), f[EthLen+20:]...) // NOP NOP NOP EOL
	g[EthLen] = 0x46
	binary.BigEndian.PutUint16(g[EthLen+2:], binary.BigEndian.Uint16(g[EthLen+2:])+4)
	setIPv4Checksum(g[EthLen:])
	var d Decoded
	if drop := Decap(g, &d); drop != DropNone || d.VNI != 5000 || !bytes.Equal(g[d.InnerOff:d.InnerOff+d.InnerLen], inner) {
		t.Fatalf("IHL 6: %v %+v", drop, d)
	}
}

func TestOptions(t *testing.T) {
	var b []byte
	var err error
	opts := []Option{
		{Class: 0x0102, Type: 0x80, Data: []byte{1, 2, 3, 4}},
		{Class: 0xffff, Type: 0x7f, Data: nil},
		{Class: 0x0000, Type: 0xff, Data: bytes.Repeat([]byte{9}, 124)},
	}
	for _, o := range opts {
		if b, err = AppendOption(b, o); err != nil {
			t.Fatal(err)
		}
	}
	want := []byte{0x01, 0x02, 0x80, 0x01, 1, 2, 3, 4, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x00, 0xff, 31}
	if !bytes.Equal(b[:len(want)], want) || len(b) != 8+4+128 {
		t.Fatalf("wire form %x", b)
	}
	it := Options(b).Iter()
	for i := 0; ; i++ {
		o, ok := it.Next()
		if !ok {
			if i != 3 || it.Err() != nil {
				t.Fatalf("stopped at %d: %v", i, it.Err())
			}
			break
		}
		if o.Class != opts[i].Class || o.Type != opts[i].Type || !bytes.Equal(o.Data, opts[i].Data) || o.Critical() != (opts[i].Type >= 0x80) {
			t.Fatalf("option %d: %+v", i, o)
		}
	}
	// Reserved bits in the length byte are ignored.
	r := append([]byte{}, b...)
	r[3] |= 0xe0
	if CheckOptions(r, nil) != DropCriticalOption { // first is critical and unknown
		t.Fatal("reserved bits changed parsing")
	}
	// Truncated areas: every strict prefix that cuts an option is an error.
	for n := 1; n < len(b); n++ {
		if n == 8 || n == 12 {
			continue // option boundaries
		}
		it := Options(b[:n]).Iter()
		for _, ok := it.Next(); ok; _, ok = it.Next() {
		}
		if it.Err() == nil {
			t.Fatalf("prefix %d: no error", n)
		}
		if d := CheckOptions(b[:n], nil); d != DropBadOptLength && d != DropCriticalOption {
			t.Fatalf("prefix %d: %v", n, d)
		}
		if n > 8 {
			var k KnownOptions
			k.Add(0x0102, 0x80)
			k.Add(0, 0xff)
			if d := CheckOptions(b[:n], &k); d != DropBadOptLength {
				t.Fatalf("prefix %d with all known: %v", n, d)
			}
		}
	}
	var zero OptionIter
	if _, ok := zero.Next(); ok || zero.Err() != nil {
		t.Fatal("zero iterator")
	}
}

func TestCheckOptions(t *testing.T) {
	var b []byte
	b, _ = AppendOption(b, Option{Class: 0x0102, Type: 0x01, Data: make([]byte, 4)}) // not critical
	b, _ = AppendOption(b, Option{Class: 0x0103, Type: 0x85, Data: make([]byte, 8)}) // critical
	if d := CheckOptions(b[:8], nil); d != DropNone {
		t.Fatalf("non-critical unknown option dropped: %v", d)
	}
	if d := CheckOptions(b, nil); d != DropCriticalOption {
		t.Fatalf("unknown critical option: %v", d)
	}
	var k KnownOptions
	if err := k.Add(0x0103, 0x05); err != nil { // same type without the critical bit is another option
		t.Fatal(err)
	}
	if d := CheckOptions(b, &k); d != DropCriticalOption {
		t.Fatalf("critical bit ignored: %v", d)
	}
	k.Add(0x0103, 0x85)
	k.Add(0x0103, 0x85) // duplicate: no second entry
	if d := CheckOptions(b, &k); d != DropNone || k.Len() != 2 {
		t.Fatalf("known critical option: %v, len %d", d, k.Len())
	}
	for i := k.Len(); i < MaxKnownOptions; i++ {
		if err := k.Add(uint16(i+100), 0x80); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Add(0xffff, 0xff); err == nil {
		t.Fatal("full set accepted an entry")
	}
	if CheckOptions(nil, nil) != DropNone {
		t.Fatal("empty options")
	}
}

// TestDecapDrops produces every drop reason from a valid frame.
func TestDecapDrops(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	c4 := testConfig(false)
	c4.Options = []Option{{Class: 0x0102, Type: 0x80, Data: make([]byte, 4)}}
	v4 := encapsulate(mustEncap(t, c4), innerFrame(rng, false, 40))
	v6 := encapsulate(mustEncap(t, testConfig(true)), innerFrame(rng, false, 40))
	const ip, udp4, gen4 = EthLen, EthLen + 20, EthLen + 28
	const udp6, gen6 = EthLen + 40, EthLen + 48
	cases := []struct {
		name string
		base []byte
		mod  func(f []byte) []byte
		want Drop
	}{
		{"valid v4", v4, func(f []byte) []byte { return f }, DropNone},
		{"valid v6", v6, func(f []byte) []byte { return f }, DropNone},
		{"empty", v4, func(f []byte) []byte { return f[:0] }, DropTooShort},
		{"eth short", v4, func(f []byte) []byte { return f[:13] }, DropTooShort},
		{"vlan short", v4, func(f []byte) []byte { f[12], f[13] = 0x81, 0; return f[:17] }, DropTooShort},
		{"arp", v4, func(f []byte) []byte { f[12], f[13] = 0x08, 0x06; return f }, DropNotIP},
		{"vlan arp", v4, func(f []byte) []byte { return append(append(f[:12:12], 0x81, 0, 0, 1, 0x08, 0x06), f[14:]...) }, DropNotIP},
		{"ipv4 short", v4, func(f []byte) []byte { return f[:ip+19] }, DropTooShort},
		{"ipv4 version", v4, func(f []byte) []byte { f[ip] = 0x65; return f }, DropBadIPHeader},
		{"ipv4 ihl 4", v4, func(f []byte) []byte { f[ip] = 0x44; return f }, DropBadIPHeader},
		{"ipv4 ihl past frame", v4, func(f []byte) []byte { f[ip] = 0x4f; return f[:ip+40] }, DropTooShort},
		{"ipv4 checksum", v4, func(f []byte) []byte { f[ip+10] ^= 1; return f }, DropBadIPHeader},
		{"ipv4 checksum with options", v4, func(f []byte) []byte {
			g := append(append(append([]byte{}, f[:ip+20]...), 1, 1, 1, 0), f[ip+20:]...) // NOP NOP NOP EOL
			g[ip] = 0x46
			binary.BigEndian.PutUint16(g[ip+2:], binary.BigEndian.Uint16(g[ip+2:])+4)
			setIPv4Checksum(g[ip:])
			g[ip+10] ^= 0x10
			return g
		}, DropBadIPHeader},
		{"ipv4 total > frame", v4, func(f []byte) []byte { return f[:len(f)-1] }, DropBadIPLength},
		{"ipv4 total < ihl", v4, func(f []byte) []byte { binary.BigEndian.PutUint16(f[ip+2:], 19); setIPv4Checksum(f[ip:]); return f }, DropBadIPLength},
		{"ipv4 MF", v4, func(f []byte) []byte { f[ip+6] |= 0x20; setIPv4Checksum(f[ip:]); return f }, DropIPFragment},
		{"ipv4 offset", v4, func(f []byte) []byte { f[ip+6], f[ip+7] = 0x00, 0x10; setIPv4Checksum(f[ip:]); return f }, DropIPFragment},
		{"ipv4 tcp", v4, func(f []byte) []byte { f[ip+9] = 6; setIPv4Checksum(f[ip:]); return f }, DropNotUDP},
		{"udp short", v4, func(f []byte) []byte {
			binary.BigEndian.PutUint16(f[ip+2:], 27)
			setIPv4Checksum(f[ip:])
			return f[:ip+27]
		}, DropTooShort},
		{"udp len 7", v4, func(f []byte) []byte { f[udp4+4], f[udp4+5] = 0, 7; return f }, DropBadUDPLength},
		{"udp len > ip", v4, func(f []byte) []byte {
			binary.BigEndian.PutUint16(f[udp4+4:], binary.BigEndian.Uint16(f[udp4+4:])+1)
			return f
		}, DropBadUDPLength},
		{"vxlan port", v4, func(f []byte) []byte { binary.BigEndian.PutUint16(f[udp4+2:], 4789); return f }, DropNotGenevePort},
		{"geneve short", v4, func(f []byte) []byte { binary.BigEndian.PutUint16(f[udp4+4:], 15); return f }, DropTooShort},
		{"version 1", v4, func(f []byte) []byte { f[gen4] |= 0x40; return f }, DropBadVersion},
		{"version 3", v4, func(f []byte) []byte { f[gen4] |= 0xc0; return f }, DropBadVersion},
		{"optlen past packet", v4, func(f []byte) []byte { f[gen4] = 0x3f; return f }, DropBadOptLength},
		{"proto ipv4", v4, func(f []byte) []byte { f[gen4+2], f[gen4+3] = 0x08, 0x00; return f }, DropUnknownProto},
		{"inner too short", v4, func(f []byte) []byte {
			cut := len(f) - (gen4 + 12 + 13) // leave 13 inner bytes
			binary.BigEndian.PutUint16(f[ip+2:], binary.BigEndian.Uint16(f[ip+2:])-uint16(cut))
			binary.BigEndian.PutUint16(f[udp4+4:], binary.BigEndian.Uint16(f[udp4+4:])-uint16(cut))
			setIPv4Checksum(f[ip:])
			return f[:len(f)-cut]
		}, DropTooShort},
		{"ipv6 short", v6, func(f []byte) []byte { return f[:ip+39] }, DropTooShort},
		{"ipv6 version", v6, func(f []byte) []byte { f[ip] = 0x40; return f }, DropBadIPHeader},
		{"ipv6 payload > frame", v6, func(f []byte) []byte { return f[:len(f)-1] }, DropBadIPLength},
		{"ipv6 hop-by-hop", v6, func(f []byte) []byte { f[ip+6] = 0; return f }, DropNotUDP},
		{"ipv6 udp len > payload", v6, func(f []byte) []byte { f[udp6+5]++; return f }, DropBadUDPLength},
		{"ipv6 version 2", v6, func(f []byte) []byte { f[gen6] |= 0x80; return f }, DropBadVersion},
		{"ipv6 proto", v6, func(f []byte) []byte { f[gen6+3] = 0x59; return f }, DropUnknownProto},
	}
	seen := map[Drop]bool{}
	for _, tc := range cases {
		f := tc.mod(append([]byte{}, tc.base...))
		var d Decoded
		got := Decap(f, &d)
		if got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
		seen[got] = true
	}
	// Reserved bits are ignored on receive.
	f := append([]byte{}, v4...)
	f[gen4+1] |= 0x3f // reserved flag bits
	f[gen4+7] = 0xab  // reserved byte after the VNI
	var d Decoded
	if drop := Decap(f, &d); drop != DropNone || d.VNI != 5000 || !d.Critical || d.OAM {
		t.Fatalf("reserved bits: %v %+v", drop, d)
	}
	// Unknown proto still reports the header.
	f[gen4+2], f[gen4+3] = 0x08, 0x00
	if Decap(f, &d) != DropUnknownProto || d.Proto != 0x0800 || d.VNI != 5000 {
		t.Fatalf("unknown proto: %+v", d)
	}
	// The caller's drops: critical option (CheckOptions) and OAM (its O bit).
	f = append([]byte{}, v4...)
	if Decap(f, &d) != DropNone || !d.Critical || CheckOptions(d.Options(f), nil) != DropCriticalOption {
		t.Fatal("critical option not reported")
	}
	seen[DropCriticalOption] = true
	f[gen4+1] |= 0x80
	if Decap(f, &d) != DropNone || !d.OAM {
		t.Fatal("O bit not reported")
	}
	seen[DropOAM] = true // DropOAM is the caller's counter for d.OAM frames
	for dr := DropNone; dr < NumDrops; dr++ {
		if !seen[dr] {
			t.Errorf("drop %v not tested", dr)
		}
	}
}

func TestAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	for _, v6 := range []bool{false, true} {
		c := testConfig(v6)
		c.Options = []Option{{Class: 0x0102, Type: 0x80, Data: make([]byte, 8)}, {Class: 1, Type: 2}}
		e := mustEncap(t, c)
		inner := innerFrame(rng, false, 64)
		buf := make([]byte, 256+len(inner))
		copy(buf[256:], inner)
		var known KnownOptions
		known.Add(0x0102, 0x80)
		var d Decoded
		var sink int
		if a := testing.AllocsPerRun(1000, func() { sink += e.Encap(buf, 256, len(inner)) }); a != 0 {
			t.Errorf("v6=%v Encap: %v allocs", v6, a)
		}
		start := e.Encap(buf, 256, len(inner))
		f := buf[start:]
		if a := testing.AllocsPerRun(1000, func() {
			if Decap(f, &d) != DropNone {
				panic("decap")
			}
		}); a != 0 {
			t.Errorf("v6=%v Decap: %v allocs", v6, a)
		}
		if a := testing.AllocsPerRun(1000, func() {
			it := d.Options(f).Iter()
			for o, ok := it.Next(); ok; o, ok = it.Next() {
				sink += int(o.Class) + len(o.Data)
			}
			if CheckOptions(d.Options(f), &known) != DropNone {
				panic("check")
			}
		}); a != 0 {
			t.Errorf("v6=%v options: %v allocs", v6, a)
		}
		_ = sink
	}
}
