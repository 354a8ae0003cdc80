package main_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
	vswitch "xswitch/switch"
)

// Live changes: reload (ctl reload, SIGHUP), static MACs, fdb-flush, ports
// whose interfaces come and go.

// contPing is a `ping -i 0.01` running in the background.
type contPing struct {
	cmd *exec.Cmd
	out e2e.SyncBuffer // read while ping writes it
}

func startPing(t *testing.T, ns, dst string) *contPing {
	t.Helper()
	p := &contPing{cmd: testnet.Cmd(ns, "ping", "-n", "-i", "0.01", dst)}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	return p
}

var icmpSeq = regexp.MustCompile(`icmp_seq=(\d+) `)

// stop ends the ping and returns the echo requests that had every chance
// of a reply (those up to the last one answered) and the lost ones among
// them: a request still in flight when ping is stopped is not a loss.
func (p *contPing) stop(t *testing.T) (sent int, lost []int) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	_ = p.cmd.Wait()
	got, last := p.replies()
	for i := 1; i <= last; i++ {
		if !got[i] {
			lost = append(lost, i)
		}
	}
	return last, lost
}

// replies are the echo requests answered so far, and the highest of them.
func (p *contPing) replies() (got map[int]bool, last int) {
	got = map[int]bool{}
	for _, m := range icmpSeq.FindAllStringSubmatch(p.out.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		got[n] = true
		last = max(last, n)
	}
	return got, last
}

// reloadTo writes cfg over x's configuration file and runs ctl reload.
func reloadTo(t *testing.T, x *e2e.Xswitch, cfg string) string {
	t.Helper()
	if err := os.WriteFile(x.ConfigPath(), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := x.Ctl("reload")
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	return out
}

func show(t *testing.T, x *e2e.Xswitch) vswitch.Status {
	t.Helper()
	var s vswitch.Status
	if err := x.CtlJSON(&s, "show"); err != nil {
		t.Fatal(err)
	}
	return s
}

// hasPort reports whether bridge br of s has port name, and its state.
func portState(s vswitch.Status, br, name string) (string, bool) {
	for _, b := range s.Bridges {
		if b.Name != br {
			continue
		}
		for _, p := range b.Ports {
			if p.Name == name {
				return p.State, true
			}
		}
	}
	return "", false
}

func hasBridge(s vswitch.Status, br string) bool {
	for _, b := range s.Bridges {
		if b.Name == br {
			return true
		}
	}
	return false
}

func hasTunnel(s vswitch.Status, br string, remote netip.Addr) bool {
	for _, b := range s.Bridges {
		for _, tn := range b.Tunnels {
			if b.Name == br && tn.Remote == remote.String() {
				return true
			}
		}
	}
	return false
}

// addVM makes a namespace with a veth "eth0" (addr) whose peer is port in
// ns sw (checksum offload off, so that the frames are complete).
func addVM(net *testnet.Net, sw, port, label, addr string) string {
	vm := net.NS(label)
	net.Veth(sw, port, vm, "eth0", 0)
	net.Run(vm, "ip", "addr", "add", addr, "dev", "eth0")
	net.Run(vm, "ethtool", "-K", "eth0", "tx", "off")
	return vm
}

// TestReloadKeepsForwarding: five reloads add and remove a tunnel, a local
// port, a bridge and change fdb.max_entries while a VM pings the other
// host every 10 ms through a local port and a tunnel that never change:
// no echo request is lost; what is added works, what is removed is gone.
func TestReloadKeepsForwarding(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 3)
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	net := testnet.New(t)
	vm1 := addVM(net, h1.NS, "vm1", "vm1", "198.19.0.11/24")
	vm2 := addVM(net, h1.NS, "vm2", "vm2", "198.19.0.12/24")

	br1 := bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, ports: []string{"vm1"}, remotes: []netip.Addr{h2.IP4}}
	base := xsConfig(h1.Underlay, br1)
	x1 := e2e.StartXswitch(t, h1.NS, base)
	e2e.StartXswitch(t, h2.NS, xsConfig(h2.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(2) + "/24"}, remotes: []netip.Addr{h1.IP4}}))
	e2e.StartXswitch(t, h3.NS, xsConfig(h3.Underlay,
		bridgeSpec{name: "br1", addrs: []string{inner4(3) + "/24"}, remotes: []netip.Addr{h1.IP4}},
		bridgeSpec{name: "br2", key: 7, addrs: []string{"198.19.1.3/24"}, remotes: []netip.Addr{h1.IP4}}))
	ping(t, vm1, inner4(2), 3)
	free0 := show(t, x1).UMEM.FreeFrames
	rx0 := portStats(stats(t, x1), "vm1").RxPackets

	p := startPing(t, vm1, inner4(2))
	steps := []struct {
		name  string
		cfg   string
		check func(t *testing.T)
	}{
		{"add tunnel to h3", xsConfig(h1.Underlay, withRemotes(br1, h2.IP4, h3.IP4)), func(t *testing.T) {
			ping(t, vm1, inner4(3), 3)
		}},
		{"add port vm2", xsConfig(h1.Underlay, withPorts(withRemotes(br1, h2.IP4, h3.IP4), "vm1", "vm2")), func(t *testing.T) {
			ping(t, vm2, "198.19.0.11", 3)
		}},
		{"add bridge br2", xsConfig(h1.Underlay, withPorts(withRemotes(br1, h2.IP4, h3.IP4), "vm1", "vm2"),
			bridgeSpec{name: "br2", key: 7, addrs: []string{"198.19.1.1/24"}, remotes: []netip.Addr{h3.IP4}}), func(t *testing.T) {
			ping(t, h1.NS, "198.19.1.3", 3)
		}},
		{"fdb max_entries", xsConfig(h1.Underlay, withPorts(withRemotes(br1, h2.IP4, h3.IP4), "vm1", "vm2"),
			bridgeSpec{name: "br2", key: 7, addrs: []string{"198.19.1.1/24"}, remotes: []netip.Addr{h3.IP4}}) + "fdb:\n  max_entries: 4096\n", func(t *testing.T) {
			if p := fdbPort(t, x1, "br1", linkMAC(t, vm1, "eth0")); p != "vm1" {
				t.Errorf("vm1's MAC on %q after the MAC tables were rebuilt, want vm1 (learned entries kept)", p)
			}
		}},
		{"remove tunnel, port, bridge", base + "fdb:\n  max_entries: 4096\n", func(t *testing.T) {
			s := show(t, x1)
			if hasBridge(s, "br2") || hasTunnel(s, "br1", h3.IP4) {
				t.Errorf("br2 or the tunnel to h3 still in ctl show: %+v", s.Bridges)
			}
			if _, ok := portState(s, "br1", "vm2"); ok {
				t.Errorf("vm2 still in ctl show")
			}
			if _, err := testnet.Try(h1.NS, "ip", "link", "show", "br2"); err == nil {
				t.Errorf("internal port br2 still exists")
			}
			pingFails(t, vm2, "198.19.0.11")
		}},
	}
	for i, st := range steps {
		out := reloadTo(t, x1, st.cfg)
		t.Logf("reload %d (%s):\n%s", i+1, st.name, out)
		if !strings.Contains(out, "reloaded (generation") {
			t.Errorf("reload %d: no summary:\n%s", i+1, out)
		}
		st.check(t)
	}
	// A few more echo requests answered after the last reload.
	_, after := p.replies()
	wait.For(t, 10*time.Second, "20 more echo replies after the last reload", func() bool {
		_, last := p.replies()
		return last >= after+20
	})
	sent, lost := p.stop(t)
	t.Logf("continuous ping vm1 -> h2 through the unchanged port and tunnel: %d echo requests, %d lost %v", sent, len(lost), lost)
	if sent < 100 || len(lost) != 0 {
		t.Errorf("continuous ping: %d sent, lost %v; want none lost\n%s", sent, lost, lastLines(p.out.String(), 20))
	}
	s := stats(t, x1)
	if rx := portStats(s, "vm1").RxPackets; rx < rx0+uint64(sent) {
		t.Errorf("vm1 rx counter %d, was %d before %d pings: the counters of a kept port went back", rx, rx0, sent)
	}
	// The removed port's frames are back: ctl show's free count is where
	// it was, give or take the pollers' working stocks (up to 2*64 frames
	// each, outside the count).
	wait.For(t, 5*time.Second, "UMEM frames back", func() bool {
		return show(t, x1).UMEM.FreeFrames >= free0-2*64*4
	})
	t.Logf("UMEM free frames: %d before, %d after five reloads", free0, show(t, x1).UMEM.FreeFrames)
}

func withRemotes(b bridgeSpec, r ...netip.Addr) bridgeSpec { b.remotes = r; return b }
func withPorts(b bridgeSpec, p ...string) bridgeSpec       { b.ports = p; return b }

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// TestReloadInvalid: an invalid file, a restart-only change and a port
// without interface are refused with the reason; nothing changes.
func TestReloadInvalid(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	cfg := xsConfig(h.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, remotes: []netip.Addr{hosts[1].IP4}})
	x := e2e.StartXswitch(t, h.NS, cfg)
	e2e.StartXswitch(t, hosts[1].NS, xsConfig(hosts[1].Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(2) + "/24"}, remotes: []netip.Addr{h.IP4}}))
	ping(t, h.NS, inner4(2), 2)
	before := show(t, x)
	for _, c := range []struct{ name, cfg, want string }{
		{"bad key", cfg + "bogus: 1\n", "bogus"},
		{"bad tunnel", strings.Replace(cfg, "remote_ip: "+hosts[1].IP4.String(), "remote_ip: 300.1.1.1", 1), "bridges[0].tunnels[0].remote_ip"},
		{"restart only", strings.Replace(cfg, "cpus: [1]", "cpus: [0]", 1), "cpus: changed, but a reload does not apply it"},
		{"missing port", cfg + "  - name: br9\n    ports: [nosuchif]\n", `bridges[1].ports[0]: no interface "nosuchif"`},
		{"static to unknown port", strings.Replace(cfg, "  - name: br1\n", "  - name: br1\n    static_macs: [{mac: \"02:00:00:00:aa:01\", port: vmx}]\n", 1), "bridges[0].static_macs[0].port"},
	} {
		if err := os.WriteFile(x.ConfigPath(), []byte(c.cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := x.Ctl("reload")
		t.Logf("%s: %s", c.name, out)
		if err == nil || !strings.Contains(out, c.want) || !strings.Contains(out, "nothing was changed") {
			t.Errorf("%s: ctl reload: err %v, output lacks %q:\n%s", c.name, err, c.want, out)
		}
		if after := show(t, x); after.Generation != before.Generation || len(after.Bridges) != len(before.Bridges) {
			t.Errorf("%s: generation %d -> %d, bridges %d -> %d: something changed", c.name, before.Generation, after.Generation, len(before.Bridges), len(after.Bridges))
		}
	}
	if _, err := testnet.Try(h.NS, "ip", "link", "show", "br9"); err == nil {
		t.Errorf("br9 was created by a refused reload")
	}
	ping(t, h.NS, inner4(2), 2) // the tunnel still works
}

// TestSIGHUPReloads: SIGHUP re-reads the file and applies it.
func TestSIGHUPReloads(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	br1 := bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, remotes: []netip.Addr{hosts[1].IP4}}
	x := e2e.StartXswitch(t, h.NS, xsConfig(h.Underlay, br1))
	cfg := xsConfig(h.Underlay, br1, bridgeSpec{name: "br2", key: 7, addrs: []string{"198.19.1.1/24"}})
	if err := os.WriteFile(x.ConfigPath(), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(x.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, x.Log, "reloaded")
	if !hasBridge(show(t, x), "br2") {
		t.Errorf("br2 not added by SIGHUP")
	}
	if _, err := testnet.Try(h.NS, "ip", "addr", "show", "br2"); err != nil {
		t.Errorf("br2's internal port missing: %v", err)
	}
	if err := x.Stop(); err != nil {
		t.Fatalf("stop after SIGHUP: %v", err)
	}
}

// fdbEntry returns the entry of mac in bridge br.
func fdbEntry(t *testing.T, x *e2e.Xswitch, br, mac string) (vswitch.FDBEntry, bool) {
	t.Helper()
	for _, e := range fdb(t, x) {
		if e.Bridge == br && strings.EqualFold(e.MAC, mac) {
			return e, true
		}
	}
	return vswitch.FDBEntry{}, false
}

// TestStaticMACs: static_macs to a local port and to a tunnel are in ctl
// fdb as static, a frame claiming them from another port is dropped
// (static_mac) and moves nothing, and fdb-flush forgets only the learned
// entries.
func TestStaticMACs(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h1, h2 := hosts[0], hosts[1]
	net := testnet.New(t)
	vm1 := addVM(net, h1.NS, "vm1", "vm1", "198.19.0.11/24")
	vm2 := addVM(net, h1.NS, "vm2", "vm2", "198.19.0.12/24")
	const s1, s2 = "02:00:00:00:aa:01", "02:00:00:00:aa:02"
	cfg := strings.Replace(xsConfig(h1.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, ports: []string{"vm1", "vm2"}, remotes: []netip.Addr{h2.IP4}}),
		"  - name: br1\n", fmt.Sprintf("  - name: br1\n    static_macs:\n      - {mac: %q, port: vm1}\n      - {mac: %q, tunnel: %s}\n", s1, s2, h2.IP4), 1)
	x := e2e.StartXswitch(t, h1.NS, cfg)
	e2e.StartXswitch(t, h2.NS, xsConfig(h2.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(2) + "/24"}, remotes: []netip.Addr{h1.IP4}}))
	ping(t, vm1, "198.19.0.12", 2)
	ping(t, vm1, inner4(2), 2)
	want := map[string]string{s1: "vm1", s2: "tunnel:" + h2.IP4.String()}
	checkStatics := func(when string) {
		t.Helper()
		for mac, port := range want {
			if e, ok := fdbEntry(t, x, "br1", mac); !ok || !e.Static || e.Port != port {
				t.Errorf("%s: %s in ctl fdb: %+v (found %v), want static on %s", when, mac, e, ok, port)
			}
		}
	}
	checkStatics("at start")
	fdbText, _ := x.Ctl("fdb")
	t.Logf("ctl fdb:\n%s", fdbText)
	// vm2 spoofs both: its ARP requests carry the static MACs as source.
	for _, mac := range []string{s1, s2} {
		before := portStats(stats(t, x), "vm2").Drops["static_mac"]
		net.Run(vm2, "ip", "link", "set", "eth0", "address", mac)
		pingFails(t, vm2, "198.19.0.11")
		if d := portStats(stats(t, x), "vm2").Drops["static_mac"]; d <= before {
			t.Errorf("frames from vm2 claiming %s: static_mac drops %d -> %d, want more", mac, before, d)
		}
	}
	checkStatics("after spoofing")
	vm2MAC := "02:00:00:00:bb:02"
	net.Run(vm2, "ip", "link", "set", "eth0", "address", vm2MAC)
	ping(t, vm2, "198.19.0.11", 2)
	vm1MAC := linkMAC(t, vm1, "eth0")
	for _, mac := range []string{vm1MAC, vm2MAC} {
		if e, ok := fdbEntry(t, x, "br1", mac); !ok || e.Static {
			t.Errorf("%s: %+v (found %v), want a learned entry", mac, e, ok)
		}
	}
	out, err := x.Ctl("fdb-flush", "br1")
	t.Logf("ctl fdb-flush br1: %s", out)
	if err != nil || !strings.Contains(out, "learned MAC entries (bridge br1); static entries stay") {
		t.Errorf("fdb-flush: %v %s", err, out)
	}
	for _, mac := range []string{vm1MAC, vm2MAC} {
		if e, ok := fdbEntry(t, x, "br1", mac); ok {
			t.Errorf("learned %s survived fdb-flush: %+v", mac, e)
		}
	}
	checkStatics("after fdb-flush")
	if e, ok := fdbEntry(t, x, "br1", linkMAC(t, h1.NS, "br1")); !ok || !e.Static {
		t.Errorf("the internal port's MAC after fdb-flush: %+v (found %v), want static", e, ok)
	}
	if out, err := x.Ctl("fdb-flush", "nosuch"); err == nil || !strings.Contains(out, `no bridge "nosuch"`) {
		t.Errorf("fdb-flush of an unknown bridge: %v %s", err, out)
	}
	// A reload that drops a static entry lets the MAC be learned.
	reloadTo(t, x, strings.Replace(cfg, fmt.Sprintf("      - {mac: %q, port: vm1}\n", s1), "", 1))
	if e, ok := fdbEntry(t, x, "br1", s1); ok {
		t.Errorf("%s still in ctl fdb after its static_macs entry was removed: %+v", s1, e)
	}
	net.Run(vm2, "ip", "link", "set", "eth0", "address", s1)
	ping(t, vm2, "198.19.0.11", 2)
	if p := fdbPort(t, x, "br1", s1); p != "vm2" {
		t.Errorf("%s learned on %q, want vm2 (no longer static)", s1, p)
	}
}

// TestLinkEvents: a local port whose veth is deleted is shown absent, its
// frames count as port_absent and the log says so; the veth created again
// with the same name is attached again without a restart; a port set down
// is shown down with a warning.
func TestLinkEvents(t *testing.T) {
	testnet.RequireRoot(t)
	net := testnet.New(t)
	sw := net.NS("sw")
	vm1 := addVM(net, sw, "vm1", "vm1", "198.19.0.11/24")
	vm2 := addVM(net, sw, "vm2", "vm2", "198.19.0.12/24")
	// The VM keeps its MAC when its interface is made again (as a VM's
	// does): vm1's neighbour entry stays right.
	const vm2MAC = "02:00:00:00:12:12"
	net.Run(vm2, "ip", "link", "set", "eth0", "address", vm2MAC)
	x := e2e.StartXswitch(t, sw, xsConfig("", bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, ports: []string{"vm1", "vm2"}}))
	ping(t, vm1, "198.19.0.12", 2)
	state := func() string { st, _ := portState(show(t, x), "br1", "vm2"); return st }
	if st := state(); st != "up" {
		t.Errorf("vm2 state %q at start, want up", st)
	}
	free0 := show(t, x).UMEM.FreeFrames
	for round := 1; round <= 3; round++ {
		net.Run(sw, "ip", "link", "del", "vm2")
		wait.For(t, 10*time.Second, "vm2 absent in ctl show", func() bool { return state() == "absent" })
		waitLog(t, x.Log, "port absent")
		before := portStats(stats(t, x), "vm2").Drops["port_absent"]
		pingFails(t, vm1, "198.19.0.12")
		if d := portStats(stats(t, x), "vm2").Drops["port_absent"]; d <= before {
			t.Errorf("round %d: port_absent drops of vm2 %d -> %d, want more", round, before, d)
		}
		if out, _ := x.Ctl("show"); !strings.Contains(out, "port vm2 (local, absent)") || !strings.Contains(out, "warning: port vm2 is absent") {
			t.Errorf("round %d: ctl show:\n%s", round, out)
		}
		net.Veth(sw, "vm2", vm2, "eth0", 0)
		net.Run(vm2, "ip", "link", "set", "eth0", "address", vm2MAC)
		net.Run(vm2, "ip", "addr", "add", "198.19.0.12/24", "dev", "eth0")
		net.Run(vm2, "ethtool", "-K", "eth0", "tx", "off")
		wait.For(t, 10*time.Second, "vm2 up again", func() bool { return state() == "up" })
		waitLog(t, x.Log, "port re-attached")
		ping(t, vm1, "198.19.0.12", 2)
	}
	if n := strings.Count(x.Log(), "port re-attached"); n != 3 {
		t.Errorf("%d re-attach log lines, want 3", n)
	}
	wait.For(t, 5*time.Second, "UMEM frames back after three detach/attach rounds", func() bool {
		return show(t, x).UMEM.FreeFrames >= free0-2*64*4
	})
	t.Logf("UMEM free frames: %d at start, %d after three rounds", free0, show(t, x).UMEM.FreeFrames)
	net.Run(sw, "ip", "link", "set", "vm2", "down")
	wait.For(t, 10*time.Second, "vm2 down in ctl show", func() bool { return state() == "down" })
	waitLog(t, x.Log, "port down")
	out, _ := x.Ctl("show")
	t.Logf("ctl show with vm2 down:\n%s", out)
	if !strings.Contains(out, "warning: port vm2 is down") {
		t.Errorf("ctl show does not warn about vm2 down:\n%s", out)
	}
	net.Run(sw, "ip", "link", "set", "vm2", "up")
	wait.For(t, 10*time.Second, "vm2 up in ctl show", func() bool { return state() == "up" })
	ping(t, vm1, "198.19.0.12", 2)
}
