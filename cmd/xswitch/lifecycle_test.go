package main_test

// End-to-end tests of the daemon's life cycle: start-up failures, signals,
// a port that disappears under the running switch, and the too_big
// warning. Real namespaces, veth, XDP and the built binary.

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
	"xswitch/internal/xdpcount"
	vswitch "xswitch/switch"
)

// daemon is an `xswitch run` expected to fail or to be stopped by the test
// itself (e2e.StartXswitch treats any failure as a test failure).
type daemon struct {
	ns   string
	cmd  *exec.Cmd
	out  e2e.SyncBuffer
	done chan struct{}
	err  error
}

// runDaemon starts `xswitch run` in ns with configYAML and extra
// environment; it is killed at cleanup if still running.
func runDaemon(t *testing.T, ns, configYAML string, env ...string) *daemon {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "xswitch.yaml")
	if err := os.WriteFile(cfg, []byte(configYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &daemon{ns: ns, done: make(chan struct{})}
	d.cmd = testnet.Cmd(ns, e2e.Binary(t), "run", "--config", cfg)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("xswitch in %s, config:\n%s\n--- log ---\n%s", ns, configYAML, d.out.String())
		}
	})
	return d
}

// exitCode waits (at most timeout) for the daemon to exit and returns its
// exit status, or fails t.
func (d *daemon) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		t.Fatalf("xswitch still running after %v:\n%s", timeout, d.out.String())
	}
	if d.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(d.err, &ee) {
		t.Fatalf("wait: %v", d.err)
	}
	return ee.ExitCode()
}

// ready waits until the daemon's control socket (sock, "" = default)
// answers.
func (d *daemon) ready(t *testing.T, sock string) {
	t.Helper()
	args := []string{"ctl", "show"}
	if sock != "" {
		args = []string{"ctl", "--socket", sock, "show"}
	}
	for deadline := time.Now().Add(e2e.ReadyTimeout); ; {
		if _, err := testnet.Try(d.ns, e2e.Binary(t), args...); err == nil {
			return
		}
		select {
		case <-d.done:
			t.Fatalf("xswitch exited during start: %v\n%s", d.err, d.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("xswitch not ready after %v:\n%s", e2e.ReadyTimeout, d.out.String())
		}
	}
}

// waitLog waits (at most 10 s) for the log to contain want.
func waitLog(t *testing.T, log func() string, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q:\n%s", want, log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var xdpProgID = regexp.MustCompile(`prog/xdp id (\d+)`)

// xdpProg is the id of the XDP program on dev in ns, "" if none.
func xdpProg(t *testing.T, ns, dev string) string {
	t.Helper()
	out, err := testnet.Try(ns, "ip", "-d", "link", "show", dev)
	if err != nil {
		t.Fatal(err)
	}
	if m := xdpProgID.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// noLink asserts that dev does not exist in ns.
func noLink(t *testing.T, ns, dev string) {
	t.Helper()
	if out, err := testnet.Try(ns, "ip", "link", "show", dev); err == nil {
		t.Errorf("%s left behind:\n%s", dev, out)
	}
}

// noManagedNeigh asserts that no managed neighbour entry is on dev.
func noManagedNeigh(t *testing.T, ns, dev string) {
	t.Helper()
	for _, fam := range []string{"-4", "-6"} {
		if out, _ := testnet.Try(ns, "ip", fam, "neigh", "show", "dev", dev); strings.Contains(out, "managed") {
			t.Errorf("managed neighbour entries left on %s:\n%s", dev, out)
		}
	}
}

// TestStartFailures: a start that fails after validation prints the real
// error (no panic), exits 1 and removes everything it created: the
// internal port, XDP programs, sockets, neighbour entries.
func TestStartFailures(t *testing.T) {
	testnet.RequireRoot(t)
	check := func(t *testing.T, d *daemon, want string) {
		t.Helper()
		if code := d.exitCode(t, 60*time.Second); code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		out := d.out.String()
		t.Logf("xswitch run:\n%s", out)
		if !strings.Contains(out, "cannot start") || !strings.Contains(out, want) {
			t.Errorf("the log lacks `cannot start` and %q:\n%s", want, out)
		}
		for _, bad := range []string{"panic", "goroutine ", "nil pointer"} {
			if strings.Contains(out, bad) {
				t.Errorf("the log has %q:\n%s", bad, out)
			}
		}
	}

	t.Run("foreign-xdp-program", func(t *testing.T) {
		_, hosts := e2e.Topology(t, 2)
		h := hosts[0]
		var c *xdpcount.Counter
		if err := testnet.Do(h.NS, func() (err error) { c, err = xdpcount.Attach(h.Underlay, "native"); return err }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		prog := xdpProg(t, h.NS, h.Underlay)
		d := runDaemon(t, h.NS, xsConfig(h.Underlay, bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(1) + "/24"}, remotes: others(hosts, h, false)}))
		check(t, d, "interface eth0 already has an XDP program attached")
		noLink(t, h.NS, "br1")
		if p := xdpProg(t, h.NS, h.Underlay); p != prog {
			t.Errorf("the other XDP program (id %s) was replaced or removed: now %q", prog, p)
		}
		noManagedNeigh(t, h.NS, h.Underlay)
	})

	t.Run("second-instance", func(t *testing.T) {
		_, hosts := e2e.Topology(t, 2)
		h := hosts[0]
		first := e2e.StartXswitch(t, h.NS, xsConfig(h.Underlay, bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(1) + "/24"}, remotes: others(hosts, h, false)}))
		prog := xdpProg(t, h.NS, h.Underlay)
		if prog == "" {
			t.Fatal("the first instance has no XDP program on eth0")
		}
		sock := fmt.Sprintf("@xswitch-second-%d", os.Getpid())
		d := runDaemon(t, h.NS, "control_socket: \""+sock+"\"\n"+
			xsConfig(h.Underlay, bridgeSpec{name: "br2", key: 6000, addrs: []string{"198.19.1.1/24"}, remotes: others(hosts, h, false)}))
		check(t, d, "interface eth0 already has an XDP program attached")
		noLink(t, h.NS, "br2")
		if p := xdpProg(t, h.NS, h.Underlay); p != prog {
			t.Errorf("the first instance's XDP program (id %s) was touched: now %q", prog, p)
		}
		if _, err := first.Ctl("show"); err != nil {
			t.Errorf("the first instance no longer answers: %v", err)
		}
		if out, err := testnet.Try(h.NS, e2e.Binary(t), "ctl", "--socket", sock, "show"); err == nil {
			t.Errorf("the second instance's control socket still answers:\n%s", out)
		}
	})

	t.Run("native-xdp-on-a-bridge", func(t *testing.T) {
		n := testnet.New(t)
		ns := n.NS("nb")
		n.Run(ns, "ip", "link", "add", "ub0", "type", "bridge")
		n.Run(ns, "ip", "addr", "add", "198.18.9.1/24", "dev", "ub0")
		n.Run(ns, "ip", "link", "set", "ub0", "up")
		d := runDaemon(t, ns, "underlay:\n  interface: ub0\n  xdp_mode: native\n"+
			strings.TrimPrefix(xsConfig("", bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(1) + "/24"}, remotes: []netip.Addr{netip.MustParseAddr("198.18.9.2")}}), ""))
		check(t, d, "port ub0: steering on ub0: native (driver) XDP is not available")
		if out := d.out.String(); !strings.Contains(out, "set underlay.xdp_mode to auto or generic") {
			t.Errorf("the error does not say which setting to change:\n%s", out)
		}
		noLink(t, ns, "br1")
		if p := xdpProg(t, ns, "ub0"); p != "" {
			t.Errorf("XDP program %s left on ub0", p)
		}
		noManagedNeigh(t, ns, "ub0")
	})
}

// TestSIGHUPUnchanged: SIGHUP reloads the configuration (here unchanged:
// nothing added or removed); the daemon keeps serving and stops cleanly at
// SIGTERM. TestSIGHUPReloads (reload_e2e_test.go) applies a change.
func TestSIGHUPUnchanged(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	x := e2e.StartXswitch(t, h.NS, xsConfig(h.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, remotes: others(hosts, h, false)}))
	if err := syscall.Kill(x.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, x.Log, "reloaded")
	if _, err := x.Ctl("show"); err != nil || x.Exited() {
		t.Fatalf("after SIGHUP: exited %v, ctl show: %v", x.Exited(), err)
	}
	if err := x.Stop(); err != nil {
		t.Fatalf("stop after SIGHUP: %v\n%s", err, x.Log())
	}
	checkClean(t, h)
}

// TestSecondSignalForcesExit: a second SIGTERM during a shutdown that hangs
// (made to hang by a test hook) ends the process with status 1 and says so.
func TestSecondSignalForcesExit(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	d := runDaemon(t, h.NS, xsConfig(h.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, remotes: others(hosts, h, false)}),
		"XSWITCH_TEST_STALL_SHUTDOWN=1")
	d.ready(t, "")
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, d.out.String, "the shutdown stalls here")
	select {
	case <-d.done:
		t.Fatalf("exited before the second signal: %v", d.err)
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := d.exitCode(t, 10*time.Second); code != 1 {
		t.Errorf("exit status %d after the second signal, want 1", code)
	}
	if out := d.out.String(); !strings.Contains(out, "second stop signal: exiting now, without clean-up") {
		t.Errorf("the log does not say why it exited:\n%s", out)
	}
}

// TestPortDeletedFails: when the internal port or the underlay is deleted
// under the switch, the daemon exits 1 with an error naming the port, and
// cleans up the rest. (A local port deleted becomes absent and comes back:
// TestLinkEvents.)
func TestPortDeletedFails(t *testing.T) {
	testnet.RequireRoot(t)
	for _, c := range []struct{ name, dev, want string }{
		{"internal", "br1", "internal port br1: read:"},
		{"underlay", "eth0", "underlay port eth0 queue "},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, hosts := e2e.Topology(t, 2)
			h := hosts[0]
			n := testnet.New(t)
			vm := n.NS("vm")
			n.Veth(h.NS, "vm1", vm, "eth0", 1)
			d := runDaemon(t, h.NS, xsConfig(h.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, ports: []string{"vm1"}, remotes: others(hosts, h, false)}))
			d.ready(t, "")
			testnetRun(t, h.NS, "ip", "link", "del", c.dev)
			if code := d.exitCode(t, 10*time.Second); code != 1 {
				t.Errorf("exit status %d after %s was deleted, want 1", code, c.dev)
			}
			out := d.out.String()
			if !strings.Contains(out, "switch failed") || !strings.Contains(out, c.want) || !strings.Contains(out, "deleted?") {
				t.Errorf("the log does not name the cause (%q):\n%s", c.want, out)
			}
			noLink(t, h.NS, "br1")
			if c.dev != h.Underlay {
				if p := xdpProg(t, h.NS, h.Underlay); p != "" {
					t.Errorf("XDP program %s left on %s", p, h.Underlay)
				}
				noManagedNeigh(t, h.NS, h.Underlay)
			}
		})
	}
}

// TestQueuesCheckedUpFront: a queue count that does not match the device
// is refused by `check`, and by `run` before anything is created.
func TestQueuesCheckedUpFront(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	cfg := filepath.Join(t.TempDir(), "x.yaml")
	yaml := strings.Replace(xsConfig(h.Underlay, bridgeSpec{name: "br1", remotes: others(hosts, h, false)}),
		"interface: eth0\n", "interface: eth0\n  queues: 1\n", 1)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("underlay.queues: 1, but eth0 has %d RX queues", e2e.UnderlayQueues)
	for _, verb := range []string{"check", "run"} {
		out, err := testnet.Cmd(h.NS, e2e.Binary(t), verb, "--config", cfg).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "nothing was changed") {
			t.Errorf("xswitch %s: %v, want an error with %q:\n%s", verb, err, want, out)
		}
	}
	noLink(t, h.NS, "br1")
}

func testnetRun(t *testing.T, ns string, name string, args ...string) {
	t.Helper()
	if out, err := testnet.Try(ns, name, args...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestTooBigLogged: a VM with MTU 1500 behind a local port sends frames
// the tunnel (underlay MTU 1500) cannot carry: they are counted as too_big
// and the log says which port and which MTU works.
func TestTooBigLogged(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	n, vm := vmFloodingIntoTunnel(t, h)
	x := e2e.StartXswitch(t, h.NS, xsConfig(h.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, ports: []string{"vm1"}, remotes: others(hosts, h, false)}))
	for deadline := time.Now().Add(10 * time.Second); ; {
		var st vswitch.Status
		if err := x.CtlJSON(&st, "show"); err != nil {
			t.Fatal(err)
		}
		if st.Bridges[0].Tunnels[0].NextHop.State == "resolved" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tunnel's next hop is not resolved: %+v", st.Bridges[0].Tunnels[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	// 1472 bytes of ICMP payload: a 1514-byte frame, 1450 + 14 fit.
	_, _ = testnet.Try(vm, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1472", "198.19.0.99")
	if ts := tunnelStats(stats(t, x), "br1", hosts[1].IP4); ts.Drops["too_big"] < 3 {
		t.Fatalf("tunnel drops %v, want too_big >= 3", ts.Drops)
	}
	waitLog(t, x.Log, "frames too big for a tunnel were dropped")
	var line string
	for _, l := range strings.Split(x.Log(), "\n") {
		if strings.Contains(l, "frames too big for a tunnel") {
			line = l
		}
	}
	for _, want := range []string{`"mtu": 1450`, `"local_ports": ["vm1"]`, `"tunnel": "198.18.0.2"`, `"bridge": "br1"`, "WARN"} {
		if !strings.Contains(line, want) {
			t.Errorf("the warning lacks %s:\n%s", want, line)
		}
	}
	// Small frames still pass: the MTU named works.
	n.Run(vm, "ip", "link", "set", "eth0", "mtu", "1450")
	before := tunnelStats(stats(t, x), "br1", hosts[1].IP4)
	_, _ = testnet.Try(vm, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-M", "do", "-s", "1422", "198.19.0.99")
	after := tunnelStats(stats(t, x), "br1", hosts[1].IP4)
	if after.Drops["too_big"] != before.Drops["too_big"] || after.TxPackets < before.TxPackets+3 {
		t.Errorf("with MTU 1450: tunnel %+v -> %+v, want 3 more sent and no more too_big", before, after)
	}
}

// vmFloodingIntoTunnel adds a namespace joined to h by a veth (vm1 on h's
// side, eth0 198.19.0.11/24 on the VM's) with a neighbour entry for
// 198.19.0.99 at a MAC nobody has: frames to it are flooded, so also into
// the tunnel.
func vmFloodingIntoTunnel(t *testing.T, h *e2e.Host) (n *testnet.Net, vm string) {
	n = testnet.New(t)
	vm = n.NS("vm")
	n.Veth(h.NS, "vm1", vm, "eth0", 1)
	n.Run(vm, "ip", "addr", "add", "198.19.0.11/24", "dev", "eth0")
	n.Run(vm, "ip", "neigh", "add", "198.19.0.99", "lladdr", "02:00:00:00:00:99", "dev", "eth0")
	return n, vm
}
