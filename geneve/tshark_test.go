package geneve

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"xswitch/internal/capture"
)

// TestTsharkDecodesEncap writes frames built by Encapsulator to a pcap and
// lets tshark (Wireshark's dissectors, an independent implementation)
// decode them; every outer field and checksum tshark reports must match.
func TestTsharkDecodesEncap(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Fatalf("tshark not found (apt-get install tshark; make deps installs it): %v", err)
	}
	type want struct {
		c     EncapConfig
		inner []byte
		hash  uint32
	}
	rng := rand.New(rand.NewPCG(21, 21))
	var cases []want
	add := func(c EncapConfig, innerV6 bool, payload int) {
		inner := innerFrame(rng, innerV6, payload)
		cases = append(cases, want{c, inner, InnerHash(inner)})
	}
	c := testConfig(false) // OVS's scenario: VNI 5000, no options
	add(c, false, 56)
	c = testConfig(false)
	c.VNI = 0
	add(c, true, 7)
	c = testConfig(false) // options (one critical), OAM, no DF, TTL, TOS, IPv4 UDP checksum, port range
	c.Options = []Option{
		{Class: 0x0102, Type: 0x80, Data: []byte{0xde, 0xad, 0xbe, 0xef}},
		{Class: 0xffff, Type: 0x05},
		{Class: 0x0103, Type: 0x7f, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	}
	c.OAM, c.DontFragment, c.TTL, c.TOS, c.IPv4UDPChecksum = true, false, 3, 0xb8, true
	c.SrcPortMin, c.SrcPortMax = 10000, 10009
	c.VNI = 0xffffff
	add(c, false, 300)
	c = testConfig(true) // IPv6, computed UDP checksum (default)
	add(c, false, 64)
	c = testConfig(true) // IPv6 with zero UDP checksum, options
	c.IPv6UDPChecksum = false
	c.TTL, c.TOS = 255, 0x20
	c.Options = []Option{{Class: 0x0101, Type: 0x01, Data: make([]byte, 124)}}
	add(c, true, 33)
	c = testConfig(true) // the template sum that lost a carry (TestEncapChecksumRegression)
	c.Src, c.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::75:0:1")
	c.Options = []Option{{Class: 0xbdfd, Type: 0x67, Data: []byte{0xff, 0xec, 0x77, 0xe8}}}
	add(c, false, 64)

	var frames [][]byte
	for _, w := range cases {
		frames = append(frames, encapsulate(mustEncap(t, w.c), w.inner))
	}
	pcap := filepath.Join(t.TempDir(), "encap.pcap")
	if err := capture.WritePcap(pcap, frames); err != nil {
		t.Fatal(err)
	}
	fields := []string{"geneve.version", "geneve.vni", "geneve.proto_type", "geneve.flags.oam", "geneve.flags.critical",
		"geneve.option.class", "geneve.option.type", "geneve.option.type.critical", "geneve.option.unknown.data",
		"udp.srcport", "udp.dstport", "udp.length", "udp.checksum.status", "ip.checksum.status", "ip.flags.df",
		"ip.ttl", "ip.dsfield", "ip.len", "ip.src", "ip.dst", "ipv6.flow", "ipv6.hlim", "ipv6.tclass", "ipv6.plen", "ipv6.src", "ipv6.dst",
		"eth.src", "eth.dst", "eth.type"}
	args := []string{"-r", pcap, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=/t"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("tshark printed %d lines for %d frames:\n%s", len(lines), len(cases), out)
	}
	for i, line := range lines {
		w := cases[i]
		v := strings.Split(line, "\t")
		get := func(name string) []string {
			for j, f := range fields {
				if f == name && j < len(v) && v[j] != "" {
					return strings.Split(v[j], "|")
				}
			}
			return nil
		}
		first := func(name string) string { // outer header: first occurrence
			if s := get(name); s != nil {
				return s[0]
			}
			return ""
		}
		num := func(name string) uint64 {
			s := first(name)
			n, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), map[bool]int{true: 16, false: 10}[strings.HasPrefix(s, "0x")], 64)
			if err != nil {
				t.Fatalf("frame %d: field %s = %q: %v\n%s", i, name, s, err, line)
			}
			return n
		}
		check := func(name string, got, want any) {
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("frame %d: %s = %v, want %v", i, name, got, want)
			}
		}
		c := w.c
		check("geneve.version", num("geneve.version"), 0)
		check("geneve.vni", num("geneve.vni"), c.VNI)
		check("geneve.proto_type", num("geneve.proto_type"), ProtoTEB)
		check("geneve.flags.oam", first("geneve.flags.oam") == "1" || first("geneve.flags.oam") == "True", c.OAM)
		crit := false
		var classes, types, crits, datas []string
		for _, o := range c.Options {
			crit = crit || o.Critical()
			classes = append(classes, fmt.Sprintf("0x%04x", o.Class))
			types = append(types, fmt.Sprintf("0x%02x", o.Type))
			crits = append(crits, map[bool]string{true: "1", false: "0"}[o.Critical()])
			if len(o.Data) > 0 {
				datas = append(datas, hex.EncodeToString(o.Data))
			}
		}
		check("geneve.flags.critical", first("geneve.flags.critical") == "1" || first("geneve.flags.critical") == "True", crit)
		check("geneve.option.class", strings.Join(get("geneve.option.class"), ","), strings.Join(classes, ","))
		check("geneve.option.type", strings.Join(get("geneve.option.type"), ","), strings.Join(types, ","))
		check("geneve.option.type.critical", strings.Join(get("geneve.option.type.critical"), ","), strings.Join(crits, ","))
		var gotData []string
		for _, d := range get("geneve.option.unknown.data") {
			if d != "<MISSING>" {
				gotData = append(gotData, d)
			}
		}
		check("geneve.option.unknown.data", strings.Join(gotData, ","), strings.Join(datas, ","))
		port := num("udp.srcport")
		min, max := uint64(c.SrcPortMin), uint64(c.SrcPortMax)
		if min == 0 && max == 0 {
			min, max = 49152, 65535
		}
		check("udp.srcport", port, min+uint64(w.hash)*(max-min+1)>>32)
		check("udp.dstport", num("udp.dstport"), Port)
		optLen := 0
		for _, o := range c.Options {
			optLen += 4 + len(o.Data)
		}
		udpLen := UDPLen + GeneveLen + optLen + len(w.inner)
		check("udp.length", num("udp.length"), udpLen)
		// udp.checksum.status: 1 good, 3 not present (zero).
		if c.Src.Is4() {
			check("udp.checksum.status", num("udp.checksum.status"), map[bool]int{true: 1, false: 3}[c.IPv4UDPChecksum])
			check("ip.checksum.status", num("ip.checksum.status"), 1)
			check("ip.flags.df", first("ip.flags.df") == "1" || first("ip.flags.df") == "True", c.DontFragment)
			check("ip.ttl", num("ip.ttl"), c.TTL)
			check("ip.dsfield", num("ip.dsfield"), c.TOS)
			check("ip.len", num("ip.len"), IPv4Len+udpLen)
			check("ip.src", first("ip.src"), c.Src)
			check("ip.dst", first("ip.dst"), c.Dst)
		} else {
			// Wireshark reports a zero UDP checksum over IPv6 as illegal (4): RFC 6935
			// permits it for tunnels, which is why it is opt-in here.
			check("udp.checksum.status", num("udp.checksum.status"), map[bool]int{true: 1, false: 4}[c.IPv6UDPChecksum])
			check("ipv6.flow", num("ipv6.flow"), w.hash&0xfffff)
			check("ipv6.hlim", num("ipv6.hlim"), c.TTL)
			check("ipv6.tclass", num("ipv6.tclass"), c.TOS)
			check("ipv6.plen", num("ipv6.plen"), udpLen)
			check("ipv6.src", netip.MustParseAddr(first("ipv6.src")), c.Src)
			check("ipv6.dst", netip.MustParseAddr(first("ipv6.dst")), c.Dst)
		}
		check("eth.src", first("eth.src"), "02:aa:00:00:00:01")
		check("eth.dst", first("eth.dst"), "02:aa:00:00:00:02")
		// The inner frame is dissected too: its EtherType is the second eth.type.
		if et := get("eth.type"); len(et) < 2 {
			t.Errorf("frame %d: inner Ethernet not dissected: %v", i, et)
		}
		t.Logf("frame %d: %s", i, line)
	}
}
