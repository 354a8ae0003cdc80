package xsk

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// These tests run the steering program through BPF_PROG_TEST_RUN on crafted
// frames. The XSKMAP is empty, so a frame the program accepts falls back to
// XDP_PASS through bpf_redirect_map and is counted in the "no socket" slot,
// while a frame it rejects is counted in the "passed" slot: the counter
// that moved tells the program's verdict.

var (
	steerV4Local  = netip.MustParseAddr("198.18.0.1")
	steerV4Local2 = netip.MustParseAddr("198.18.0.129") // high bit set in the last byte: a negative immediate
	steerV4Other  = netip.MustParseAddr("198.18.0.3")
	steerV6Local  = netip.MustParseAddr("2001:2::1")
	steerV6Local2 = netip.MustParseAddr("2001:2::ff01")
	steerV6Other  = netip.MustParseAddr("2001:2::3")
)

// steerTestProg loads the program (not attached) with its maps.
type steerTestProg struct {
	prog           *ebpf.Program
	xsks, counters *ebpf.Map
}

func newSteerTestProg(t testing.TB, role Role, local []netip.Addr) *steerTestProg {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to load BPF programs (CI runs it as root)")
	}
	s := &Steering{queues: 4}
	if err := s.load(SteerConfig{Role: role, LocalIPs: local}); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { s.release() })
	return &steerTestProg{prog: s.prog, xsks: s.xsks, counters: s.counters}
}

func (p *steerTestProg) counts(t testing.TB) [numCounters]uint64 {
	t.Helper()
	var sum [numCounters]uint64
	var vals []uint64
	for i := range sum {
		if err := p.counters.Lookup(uint32(i), &vals); err != nil {
			t.Fatalf("counter %d: %v", i, err)
		}
		for _, v := range vals {
			sum[i] += v
		}
	}
	return sum
}

// verdict runs frame through the program and returns true when the program
// chose to redirect it (false: passed to the kernel by the filter).
func (p *steerTestProg) verdict(t testing.TB, frame []byte) bool {
	t.Helper()
	before := p.counts(t)
	ret, err := p.prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	if ret != xdpPass {
		t.Fatalf("return %d, want XDP_PASS (%d) with an empty XSKMAP", ret, xdpPass)
	}
	after := p.counts(t)
	d := [numCounters]uint64{}
	for i := range d {
		d[i] = after[i] - before[i]
	}
	switch d {
	case [numCounters]uint64{ctrNoSocket: 1}:
		return true
	case [numCounters]uint64{ctrPassed: 1}:
		return false
	}
	t.Fatalf("counter deltas %v: want exactly one of passed / no_socket", d)
	return false
}

// steerFrame builds Ethernet [+ 802.1Q] / IPv4|IPv6 / UDP frames for the tests.
type steerFrame struct {
	vlan     bool
	dst      netip.Addr
	proto    uint8 // default UDP
	dport    uint16
	ipOpts   int    // IPv4: option bytes (multiple of 4)
	fragOff  uint16 // IPv4 flags|offset field
	ext      bool   // IPv6: a hop-by-hop header before UDP
	payload  int
	truncate int // bytes cut from the end
}

func (f steerFrame) bytes() []byte {
	b := make([]byte, 0, 128)
	b = append(b, 0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2)
	if f.vlan {
		b = append(b, 0x81, 0x00, 0x00, 0x07)
	}
	proto := f.proto
	if proto == 0 {
		proto = 17
	}
	udpLen := 8 + f.payload
	if f.dst.Is4() {
		b = append(b, 0x08, 0x00)
		ihl := 5 + f.ipOpts/4
		ip := make([]byte, ihl*4)
		ip[0] = 0x40 | byte(ihl)
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl*4+udpLen))
		binary.BigEndian.PutUint16(ip[6:], f.fragOff)
		ip[8] = 64
		ip[9] = proto
		copy(ip[12:16], []byte{198, 18, 0, 2})
		a := f.dst.As4()
		copy(ip[16:20], a[:])
		for i := 20; i < len(ip); i++ {
			ip[i] = 1 // NOP options
		}
		b = append(b, ip...)
	} else {
		b = append(b, 0x86, 0xdd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		n := udpLen
		next := proto
		if f.ext {
			n += 8
			next = 0 // hop-by-hop
		}
		binary.BigEndian.PutUint16(ip[4:], uint16(n))
		ip[6] = next
		ip[7] = 64
		s := netip.MustParseAddr("2001:2::2").As16()
		copy(ip[8:24], s[:])
		a := f.dst.As16()
		copy(ip[24:40], a[:])
		b = append(b, ip...)
		if f.ext {
			b = append(b, proto, 0, 1, 4, 0, 0, 0, 0) // hop-by-hop with PadN
		}
	}
	udp := make([]byte, udpLen)
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], f.dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen))
	b = append(b, udp...)
	return b[:len(b)-f.truncate]
}

func TestSteerProgramUnderlayVerdicts(t *testing.T) {
	p := newSteerTestProg(t, RoleUnderlay, []netip.Addr{steerV4Local, steerV4Local2, steerV6Local, steerV6Local2})
	arp := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 2, 0x08, 0x06}, make([]byte, 28)...)
	cases := []struct {
		name string
		data []byte
		want bool
	}{
		{"v4 geneve", steerFrame{dst: steerV4Local, dport: 6081, payload: 16}.bytes(), true},
		{"v4 geneve second local", steerFrame{dst: steerV4Local2, dport: 6081, payload: 16}.bytes(), true},
		{"v4 geneve vlan", steerFrame{vlan: true, dst: steerV4Local, dport: 6081, payload: 16}.bytes(), true},
		{"v4 geneve ip options", steerFrame{dst: steerV4Local, dport: 6081, ipOpts: 8, payload: 16}.bytes(), true},
		{"v4 geneve max ip options", steerFrame{dst: steerV4Local, dport: 6081, ipOpts: 40, payload: 16}.bytes(), true},
		{"v4 options: port 6081 where IHL=5 would look", steerFrame{dst: steerV4Local, dport: 6082, ipOpts: 4, payload: 16}.bytes(), false},
		{"v4 geneve DF set", steerFrame{dst: steerV4Local, dport: 6081, fragOff: 0x4000, payload: 16}.bytes(), true},
		{"v4 first fragment (MF)", steerFrame{dst: steerV4Local, dport: 6081, fragOff: 0x2000, payload: 16}.bytes(), false},
		{"v4 later fragment", steerFrame{dst: steerV4Local, dport: 6081, fragOff: 0x00b9, payload: 16}.bytes(), false},
		{"v4 other port", steerFrame{dst: steerV4Local, dport: 6082, payload: 16}.bytes(), false},
		{"v4 other address", steerFrame{dst: steerV4Other, dport: 6081, payload: 16}.bytes(), false},
		{"v4 tcp to 6081", steerFrame{dst: steerV4Local, proto: 6, dport: 6081, payload: 16}.bytes(), false},
		{"v4 truncated udp", steerFrame{dst: steerV4Local, dport: 6081, truncate: 5}.bytes(), false},
		{"v4 options truncated before udp", steerFrame{dst: steerV4Local, dport: 6081, ipOpts: 40, truncate: 8}.bytes(), false},
		{"v6 geneve", steerFrame{dst: steerV6Local, dport: 6081, payload: 16}.bytes(), true},
		{"v6 geneve second local", steerFrame{dst: steerV6Local2, dport: 6081, payload: 16}.bytes(), true},
		{"v6 geneve vlan", steerFrame{vlan: true, dst: steerV6Local, dport: 6081, payload: 16}.bytes(), true},
		{"v6 other port", steerFrame{dst: steerV6Local, dport: 6082, payload: 16}.bytes(), false},
		{"v6 other address", steerFrame{dst: steerV6Other, dport: 6081, payload: 16}.bytes(), false},
		{"v6 extension header", steerFrame{dst: steerV6Local, dport: 6081, ext: true, payload: 16}.bytes(), false},
		{"v6 icmpv6", steerFrame{dst: steerV6Local, proto: 58, dport: 6081, payload: 16}.bytes(), false},
		{"v6 truncated udp", steerFrame{dst: steerV6Local, dport: 6081, truncate: 7}.bytes(), false},
		{"arp", arp, false},
		{"ethernet only", arp[:14], false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := p.verdict(t, c.data); got != c.want {
				t.Errorf("redirect = %v, want %v (frame % x)", got, c.want, c.data)
			}
			if got := steerReference(c.data, []netip.Addr{steerV4Local, steerV4Local2, steerV6Local, steerV6Local2}); got != c.want {
				t.Errorf("reference classifier says %v, want %v", got, c.want)
			}
		})
	}
}

func TestSteerProgramFamilies(t *testing.T) {
	// Only IPv4 locals: IPv6 Geneve is passed, and vice versa.
	p4 := newSteerTestProg(t, RoleUnderlay, []netip.Addr{steerV4Local})
	if !p4.verdict(t, steerFrame{dst: steerV4Local, dport: 6081}.bytes()) {
		t.Error("v4-only program: IPv4 Geneve not redirected")
	}
	if p4.verdict(t, steerFrame{dst: steerV6Local, dport: 6081}.bytes()) {
		t.Error("v4-only program: IPv6 Geneve redirected")
	}
	p6 := newSteerTestProg(t, RoleUnderlay, []netip.Addr{steerV6Local})
	if p6.verdict(t, steerFrame{dst: steerV4Local, dport: 6081}.bytes()) {
		t.Error("v6-only program: IPv4 Geneve redirected")
	}
	if !p6.verdict(t, steerFrame{dst: steerV6Local, dport: 6081}.bytes()) {
		t.Error("v6-only program: IPv6 Geneve not redirected")
	}
	// The maximum number of addresses loads (verifier accepts the size).
	var many []netip.Addr
	for i := 0; i < maxLocalIPv4; i++ {
		many = append(many, netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}))
	}
	for i := 0; i < maxLocalIPv6; i++ {
		many = append(many, netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: byte(i + 1)}))
	}
	pm := newSteerTestProg(t, RoleUnderlay, many)
	for _, a := range many {
		if !pm.verdict(t, steerFrame{dst: a, dport: 6081}.bytes()) {
			t.Errorf("%v: not redirected", a)
		}
	}
	// IPv4-mapped IPv6 addresses count as IPv4.
	pmap := newSteerTestProg(t, RoleUnderlay, []netip.Addr{netip.MustParseAddr("::ffff:198.18.0.1")})
	if !pmap.verdict(t, steerFrame{dst: steerV4Local, dport: 6081}.bytes()) {
		t.Error("IPv4-mapped local address: IPv4 Geneve not redirected")
	}
}

func TestSteerProgramLocalRedirectsAll(t *testing.T) {
	p := newSteerTestProg(t, RoleLocal, nil)
	for _, f := range [][]byte{
		steerFrame{dst: steerV4Other, dport: 22}.bytes(),
		steerFrame{dst: steerV6Other, proto: 58}.bytes(),
		append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 2, 0x08, 0x06}, make([]byte, 28)...),
	} {
		if !p.verdict(t, f) {
			t.Errorf("role local did not redirect % x", f)
		}
	}
}

func TestSteerConfigErrors(t *testing.T) {
	_, err := steerInstructions(RoleUnderlay, nil, 1, 2)
	if err == nil {
		t.Error("underlay without local IPs accepted")
	}
	var tooMany []netip.Addr
	for i := 0; i <= maxLocalIPv4; i++ {
		tooMany = append(tooMany, netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}))
	}
	if _, err := steerInstructions(RoleUnderlay, tooMany, 1, 2); err == nil {
		t.Errorf("%d IPv4 local IPs accepted", len(tooMany))
	}
	if _, err := steerInstructions(RoleUnderlay, []netip.Addr{{}}, 1, 2); err == nil {
		t.Error("invalid address accepted")
	}
	if _, err := steerInstructions(Role(7), nil, 1, 2); err == nil {
		t.Error("unknown role accepted")
	}
	if _, err := AttachSteering(SteerConfig{Ifindex: 1, Role: RoleUnderlay}); err == nil {
		t.Error("AttachSteering: underlay without LocalIPs accepted")
	}
	if _, err := AttachSteering(SteerConfig{Ifindex: 0}); err == nil {
		t.Error("AttachSteering: ifindex 0 accepted")
	}
	if _, err := AttachSteering(SteerConfig{Ifindex: 1, Mode: XDPMode(9)}); err == nil {
		t.Error("AttachSteering: unknown mode accepted")
	}
}

// steerReference is the Go statement of the underlay rule, for the tests and
// the fuzz target: Ethernet [+ one 802.1Q tag] / unfragmented IPv4 (any IHL)
// or IPv6 with UDP as next header / UDP destination port 6081, to a local
// address, with every header complete.
func steerReference(f []byte, local []netip.Addr) bool {
	if len(f) < 14 {
		return false
	}
	et := binary.BigEndian.Uint16(f[12:])
	off := 14
	if et == 0x8100 {
		if len(f) < 18 {
			return false
		}
		et = binary.BigEndian.Uint16(f[16:])
		off = 18
	}
	var dst netip.Addr
	switch et {
	case 0x0800:
		if len(f) < off+20 || f[off]>>4 != 4 || f[off]&0xf < 5 || f[off+9] != 17 ||
			binary.BigEndian.Uint16(f[off+6:])&0x3fff != 0 {
			return false
		}
		dst = netip.AddrFrom4([4]byte(f[off+16 : off+20]))
		off += int(f[off]&0xf) * 4
	case 0x86dd:
		if len(f) < off+40 || f[off]>>4 != 6 || f[off+6] != 17 {
			return false
		}
		dst = netip.AddrFrom16([16]byte(f[off+24 : off+40]))
		off += 40
	default:
		return false
	}
	found := false
	for _, a := range local {
		if a.Unmap() == dst {
			found = true
		}
	}
	if !found || len(f) < off+8 {
		return false
	}
	return binary.BigEndian.Uint16(f[off+2:]) == 6081
}

// FuzzSteerProgram checks the BPF program against steerReference on
// arbitrary frames (and that the verifier-approved bounds checks hold: the
// kernel would reject an out-of-bounds access at load, not at run time).
func FuzzSteerProgram(f *testing.F) {
	local := []netip.Addr{steerV4Local, steerV4Local2, steerV6Local}
	for _, s := range []steerFrame{
		{dst: steerV4Local, dport: 6081, payload: 8},
		{dst: steerV4Local, dport: 6081, ipOpts: 12, payload: 8},
		{vlan: true, dst: steerV4Local2, dport: 6081},
		{dst: steerV6Local, dport: 6081, payload: 8},
		{vlan: true, dst: steerV6Local, dport: 6081, ext: true},
		{dst: steerV4Local, dport: 6081, fragOff: 0x2000},
	} {
		f.Add(s.bytes())
	}
	p := newSteerTestProg(f, RoleUnderlay, local)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 1500 {
			return // BPF_PROG_TEST_RUN wants at least an Ethernet header
		}
		if got, want := p.verdict(t, frame), steerReference(frame, local); got != want {
			t.Fatalf("program redirect=%v, reference %v for % x", got, want, frame)
		}
	})
}

// BenchmarkSteerProgram measures the program per frame in the kernel
// (BPF_PROG_TEST_RUN with repeat), next to a bare XDP_PASS program measured
// in the same run as the peer: the difference is the steering's own cost.
func BenchmarkSteerProgram(b *testing.B) {
	local := []netip.Addr{steerV4Local, steerV4Local2, steerV6Local, steerV6Local2}
	underlay := newSteerTestProg(b, RoleUnderlay, local)
	localRole := newSteerTestProg(b, RoleLocal, nil)
	bare, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	frames := []struct {
		name string
		data []byte
	}{
		{"v4_geneve", steerFrame{dst: steerV4Local2, dport: 6081, payload: 64}.bytes()},
		{"v6_geneve", steerFrame{dst: steerV6Local2, dport: 6081, payload: 64}.bytes()},
		{"v4_other_udp", steerFrame{dst: steerV4Other, dport: 53, payload: 64}.bytes()},
	}
	progs := []struct {
		name string
		p    *ebpf.Program
	}{{"bare_pass", bare}, {"underlay", underlay.prog}, {"local", localRole.prog}}
	for _, f := range frames {
		for _, p := range progs {
			b.Run(f.name+"/"+p.name, func(b *testing.B) {
				// One syscall runs the program b.N times; the kernel times it.
				_, d, err := p.p.Benchmark(f.data, b.N, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(d.Nanoseconds()), "kernel-ns/frame")
			})
		}
	}
}
