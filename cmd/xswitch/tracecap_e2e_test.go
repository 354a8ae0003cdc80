package main_test

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/geneve"
	"xswitch/internal/capture"
	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
	vswitch "xswitch/switch"
)

// opsSetup: h1 with bridge br1 (key 5000), a local port vm1 (a veth into
// namespace vm, 198.19.0.11) and a tunnel to h2, whose br1 is 198.19.0.2;
// a ping from the VM has taught both switches where everyone is.
type opsSetup struct {
	h1, h2 *e2e.Host
	x1     *e2e.Xswitch
	vm     string
	vmMAC  string
	br2MAC string // h2's internal port
	br1MAC string // h1's internal port
}

func newOpsSetup(t *testing.T) *opsSetup {
	t.Helper()
	_, hosts := e2e.Topology(t, 2)
	s := &opsSetup{h1: hosts[0], h2: hosts[1]}
	net := testnet.New(t)
	s.vm = net.NS("vm")
	// IPv4 only: the kernel's IPv6 neighbour and multicast listener
	// messages would cross the switch at any time and move the counters
	// the trace test says stay still.
	for _, ns := range []string{s.h1.NS, s.h2.NS, s.vm} {
		net.Run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	net.Veth(s.h1.NS, "vm1", s.vm, "eth0", 0)
	net.Run(s.vm, "ip", "addr", "add", "198.19.0.11/24", "dev", "eth0")
	net.Run(s.vm, "ethtool", "-K", "eth0", "tx", "off") // AF_XDP ports carry frames as they are
	s.x1 = e2e.StartXswitch(t, s.h1.NS, xsConfig(s.h1.Underlay, bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(1) + "/24"}, ports: []string{"vm1"}, remotes: []netip.Addr{s.h2.IP4}}))
	e2e.StartXswitch(t, s.h2.NS, xsConfig(s.h2.Underlay, bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(2) + "/24"}, remotes: []netip.Addr{s.h1.IP4}}))
	ping(t, s.vm, inner4(2), 2)
	s.vmMAC, s.br1MAC, s.br2MAC = linkMAC(t, s.vm, "eth0"), linkMAC(t, s.h1.NS, "br1"), linkMAC(t, s.h2.NS, "br1")
	return s
}

func (s *opsSetup) trace(t *testing.T, args ...string) vswitch.TraceResult {
	t.Helper()
	var res vswitch.TraceResult
	if err := s.x1.CtlJSON(&res, append([]string{"trace", "br1"}, args...)...); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestTraceE2E: ctl trace on a running switch: a VM's frame to a MAC
// behind the tunnel gets the tunnel's real Geneve header (key, endpoints,
// next hop MAC); a frame from the tunnel claiming h1's own MAC would be
// refused; a whole Geneve frame given in hex on the underlay is
// decapsulated and goes to the VM; a new MAC is reported, not learned;
// no counter moves.
func TestTraceE2E(t *testing.T) {
	testnet.RequireRoot(t)
	s := newOpsSetup(t)
	before := stats(t, s.x1)

	res := s.trace(t, "in_port=vm1", "dl_src="+s.vmMAC, "dl_dst="+s.br2MAC, "nw_src=198.19.0.11", "nw_dst="+inner4(2))
	if res.Verdict != "unicast" || len(res.Outputs) != 1 {
		t.Fatalf("VM to h2's br1: %+v", res)
	}
	o := res.Outputs[0]
	nhMAC := linkMAC(t, s.h2.NS, s.h2.Underlay)
	if g := o.Geneve; o.Port != "tunnel:"+s.h2.IP4.String() || g == nil || g.VNI != 5000 || g.Src != s.h1.IP4.String() || g.Dst != s.h2.IP4.String() ||
		g.DstMAC != nhMAC || g.SrcMAC != linkMAC(t, s.h1.NS, s.h1.Underlay) || g.DstPort != 6081 || o.Len != 74+geneve.IPv4Overhead {
		t.Errorf("tunnel output %+v %+v (next hop %s)", o, o.Geneve, nhMAC)
	}
	text, err := s.x1.Ctl("trace", "br1", "in_port=vm1", "dl_src="+s.vmMAC, "dl_dst="+s.br2MAC, "nw_src=198.19.0.11", "nw_dst="+inner4(2))
	if err != nil || !strings.Contains(text, "verdict: unicast, 1 output(s)") || !strings.Contains(text, "Geneve vni 5000 proto 0x6558") {
		t.Errorf("text trace: %v\n%s", err, text)
	}
	t.Logf("ctl trace:\n%s", text)

	res = s.trace(t, "in_port=tunnel:"+s.h2.IP4.String(), "dl_src="+s.br1MAC, "dl_dst=ff:ff:ff:ff:ff:ff")
	if res.Drop != "own_mac" || !strings.Contains(res.Steps[len(res.Steps)-1].Detail, "counted on tunnel:") {
		t.Errorf("h1's own MAC from the tunnel: %+v", res)
	}

	// A Geneve frame as h2 sends it, in hex, on the underlay.
	inner := make([]byte, 60)
	vm, _ := net.ParseMAC(s.vmMAC)
	br2, _ := net.ParseMAC(s.br2MAC)
	copy(inner, vm)
	copy(inner[6:], br2)
	inner[12], inner[13] = 0x08, 0x06
	ec := geneve.DefaultEncapConfig()
	ec.Src, ec.Dst, ec.VNI = s.h2.IP4, s.h1.IP4, 5000
	enc, err := geneve.NewEncapsulator(ec)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, enc.HeaderLen()+len(inner))
	copy(buf[enc.HeaderLen():], inner)
	outer := buf[enc.Encap(buf, enc.HeaderLen(), len(inner)):]
	res = s.trace(t, "in_port="+s.h1.Underlay, "--hex", hex.EncodeToString(outer))
	if res.Verdict != "unicast" || len(res.Outputs) != 1 || res.Outputs[0].Port != "vm1" {
		t.Errorf("Geneve frame on the underlay: %+v", res)
	}

	newMAC := "02:00:00:00:99:99"
	res = s.trace(t, "in_port=vm1", "dl_src="+newMAC, "dl_dst=ff:ff:ff:ff:ff:ff")
	if res.Verdict != "flood" || !strings.Contains(res.Steps[1].Detail, "would learn "+newMAC+" on vm1") {
		t.Errorf("a new MAC: %+v", res)
	}
	if p := fdbPort(t, s.x1, "br1", newMAC); p != "" {
		t.Errorf("the trace learned %s on %s", newMAC, p)
	}
	after := stats(t, s.x1)
	for _, name := range []string{"vm1", "br1", s.h1.Underlay} {
		if b, a := portStats(before, name), portStats(after, name); a.RxPackets != b.RxPackets || a.TxPackets != b.TxPackets {
			t.Errorf("port %s counters moved during the traces: %+v -> %+v", name, b, a)
		}
	}
}

// startCapture runs `xswitch ctl capture args...` in ns in the background
// and returns once the capture runs (its first line on stderr).
func startCapture(t *testing.T, x *e2e.Xswitch, stdout io.Writer, args ...string) (*captureProc, error) {
	t.Helper()
	cmd := testnet.Cmd(x.NS(), e2e.Binary(t), append([]string{"ctl", "capture"}, args...)...)
	cmd.Stdout = stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &captureProc{cmd: cmd, done: make(chan struct{})}
	r := bufio.NewReader(errPipe)
	first, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "capturing on ") {
		rest, _ := io.ReadAll(r)
		_ = cmd.Wait()
		return nil, fmt.Errorf("ctl capture %v: %q%s %v", args, first, rest, err)
	}
	go func() {
		b, _ := io.ReadAll(r)
		p.stderr = string(b)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p, nil
}

type captureProc struct {
	cmd    *exec.Cmd
	done   chan struct{}
	stderr string
	err    error
}

func (p *captureProc) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("ctl capture did not end within %v", timeout)
	}
	if p.err != nil {
		t.Fatalf("ctl capture: %v: %s", p.err, p.stderr)
	}
	return p.stderr
}

// TestCaptureE2E: ctl capture of the VM's port during a ping writes a
// pcapng file tshark reads: echo requests received (inbound), replies
// sent (outbound), exactly -c frames.
func TestCaptureE2E(t *testing.T) {
	testnet.RequireRoot(t)
	s := newOpsSetup(t)
	file := filepath.Join(t.TempDir(), "vm1.pcapng")
	p, err := startCapture(t, s.x1, nil, "vm1", "-c", "10", "-w", file)
	if err != nil {
		t.Fatal(err)
	}
	// Ping until the capture has its 10 frames (a few others, IPv6
	// neighbour discovery of the bridges, may be among them).
	pinger := testnet.Cmd(s.vm, "ping", "-i", "0.1", "-c", "100", inner4(2))
	if err := pinger.Start(); err != nil {
		t.Fatal(err)
	}
	summary := p.wait(t, 30*time.Second)
	_ = pinger.Process.Kill()
	_ = pinger.Wait()
	if !strings.Contains(summary, "10 frames captured on vm1") {
		t.Errorf("summary: %s", summary)
	}
	out, err := capture.Tshark(file, "-T", "fields", "-E", "separator=,", "-e", "frame.interface_name", "-e", "frame.packet_flags_direction",
		"-e", "eth.src", "-e", "icmp.type", "-e", "ip.src", "-e", "ip.dst")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tshark -r %s:\n%s", file, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 10 {
		t.Fatalf("tshark read %d frames, want 10", len(lines))
	}
	req, rep := 0, 0
	for _, l := range lines {
		f := strings.Split(l, ",")
		if f[0] != "vm1" {
			t.Errorf("interface %q: %s", f[0], l)
		}
		switch {
		case f[3] == "8" && f[1] == "0x00000001" && f[2] == s.vmMAC && f[4] == "198.19.0.11":
			req++
		case f[3] == "0" && f[1] == "0x00000002" && f[4] == inner4(2) && f[5] == "198.19.0.11":
			rep++
		case f[3] == "8" || f[3] == "0":
			t.Errorf("ICMP frame with the wrong direction or addresses: %s", l)
		}
	}
	if req < 3 || rep < 3 {
		t.Errorf("%d echo requests inbound and %d replies outbound in the capture, want 3 or more of each", req, rep)
	}
}

// TestCaptureSlowReader: a capture whose reader does not read while the VM
// floods pings loses copies (counted, in the client's summary and the
// pcapng statistics block); the switch loses no frame: ping sees no loss
// and no port or tunnel counts a drop.
func TestCaptureSlowReader(t *testing.T) {
	testnet.RequireRoot(t)
	s := newOpsSetup(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	p, err := startCapture(t, s.x1, pw, "vm1", "-w", "-")
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	out, err := testnet.Try(s.vm, "ping", "-f", "-c", strconv.Itoa(n), "-s", "1000", "-W", "1", inner4(2))
	if err != nil || !strings.Contains(out, fmt.Sprintf("%d packets transmitted, %d received", n, n)) {
		t.Errorf("flood ping through the captured port: %v\n%s", err, out)
	}
	// Now read, and ask the client to stop (ctrl-C).
	file := filepath.Join(t.TempDir(), "slow.pcapng")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan error, 1)
	go func() { _, err := io.Copy(f, pr); copied <- err }()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	summary := p.wait(t, 60*time.Second)
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	f.Close()
	m := regexp.MustCompile(`(\d+) frames captured on vm1 \((\d+) received, (\d+) sent\); (\d+) copies lost`).FindStringSubmatch(summary)
	if m == nil {
		t.Fatalf("summary reports no lost copies: %q", summary)
	}
	got, _ := strconv.Atoi(m[1])
	lost, _ := strconv.Atoi(m[4])
	t.Logf("%s", strings.TrimSpace(summary))
	if lost == 0 || got+lost < 2*n {
		t.Errorf("captured %d + lost %d < %d frames through vm1", got, lost, 2*n)
	}
	st := stats(t, s.x1)
	for _, ps := range st.Ports {
		if dropSum(ps.Drops) != 0 {
			t.Errorf("port %s dropped frames: %v", ps.Name, ps.Drops)
		}
	}
	for _, ts := range st.Tunnels {
		if dropSum(ts.Drops) != 0 {
			t.Errorf("tunnel %s dropped frames: %v", ts.Remote, ts.Drops)
		}
	}
	// The file is whole: tshark reads every frame the client counted.
	out, err = capture.Tshark(file, "-T", "fields", "-e", "frame.number")
	if err != nil {
		t.Fatal(err)
	}
	if k := len(strings.Fields(out)); k != got {
		t.Errorf("tshark read %d frames, the client wrote %d", k, got)
	}
}

func dropSum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
