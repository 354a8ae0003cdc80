package main_test

// End-to-end tests of the operations features: the internal port's stable
// MAC, the run-time log level with the debug drop notices, and the systemd
// readiness protocol. Real namespaces, veth, XDP and the built binary.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
	vswitch "xswitch/switch"
)

// internalMACs are the MACs of the internal ports, by bridge, as ctl show
// reports them; each is checked against the kernel's view of the device.
func internalMACs(t *testing.T, x *e2e.Xswitch) map[string]string {
	t.Helper()
	var st vswitch.Status
	if err := x.CtlJSON(&st, "show"); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, b := range st.Bridges {
		for _, p := range b.Ports {
			if p.Kind != "internal" {
				continue
			}
			out[b.Name] = p.MAC
			link, err := testnet.Try(x.NS(), "ip", "-br", "link", "show", p.Name)
			if err != nil || !strings.Contains(link, p.MAC) {
				t.Errorf("ctl show says %s has MAC %s; the kernel: %s %v", p.Name, p.MAC, link, err)
			}
		}
	}
	return out
}

// TestInternalPortMACStable: without a configured MAC, the internal ports
// get MACs derived from the machine id, the namespace name and the bridge
// name: different per bridge and per namespace, the same after a restart.
func TestInternalPortMACStable(t *testing.T) {
	testnet.RequireRoot(t)
	n := testnet.New(t)
	nsA, nsB := n.NS("maca"), n.NS("macb")
	cfg := xsConfig("", bridgeSpec{name: "br1"}, bridgeSpec{name: "br2"})

	x := e2e.StartXswitch(t, nsA, cfg)
	first := internalMACs(t, x)
	if len(first) != 2 || first["br1"] == first["br2"] {
		t.Fatalf("internal port MACs %v: want two different ones", first)
	}
	for br, m := range first {
		hw, err := net.ParseMAC(m)
		if err != nil || hw[0]&1 != 0 || hw[0]&2 == 0 {
			t.Errorf("%s: MAC %s is not unicast and locally administered (%v)", br, m, err)
		}
	}
	// The derivation, written out again here.
	id, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		id, err = os.ReadFile("/var/lib/dbus/machine-id")
	}
	key, herr := hex.DecodeString(strings.TrimSpace(string(id)))
	if err != nil || herr != nil || len(key) != 16 {
		// No machine id on this host: random MACs, and a warning says so.
		waitLog(t, x.Log, "no machine id: the internal port gets a random MAC")
	} else {
		for br, m := range first {
			h := hmac.New(sha256.New, key)
			h.Write([]byte("xswitch internal port\x00" + nsA + "\x00" + br))
			want := h.Sum(nil)[:6]
			want[0] = want[0]&^1 | 2
			if m != net.HardwareAddr(want).String() {
				t.Errorf("%s: MAC %s, want %s (machine id, namespace %s, bridge name)", br, m, net.HardwareAddr(want), nsA)
			}
		}
	}
	if err := x.Stop(); err != nil {
		t.Fatal(err)
	}
	again := internalMACs(t, e2e.StartXswitch(t, nsA, cfg))
	if key != nil && (again["br1"] != first["br1"] || again["br2"] != first["br2"]) {
		t.Errorf("after a restart: %v, before: %v", again, first)
	}
	other := internalMACs(t, e2e.StartXswitch(t, nsB, cfg))
	if other["br1"] == first["br1"] || other["br2"] == first["br2"] {
		t.Errorf("namespace %s: %v, the same as %s: %v", nsB, other, nsA, first)
	}
}

// TestLogLevelAtRunTime: a switch started at info writes no drop notices;
// after `ctl log-level debug` a too-big ping into the tunnel gives the
// debug line with the MTU advice. A bad level is refused, saying which are
// good, and changes nothing.
func TestLogLevelAtRunTime(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	_, vm := vmFloodingIntoTunnel(t, h)
	cfg := strings.Replace(xsConfig(h.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, ports: []string{"vm1"}, remotes: others(hosts, h, false)}),
		"log_level: debug", "log_level: info", 1)
	x := e2e.StartXswitch(t, h.NS, cfg)
	waitResolved(t, x)
	if out, err := x.Ctl("log-level"); err != nil || out != "log level info\n" {
		t.Fatalf("ctl log-level: %q %v", out, err)
	}
	tooBig := func(count string) {
		// 1472 bytes of ICMP payload: a 1514-byte frame; 1450 + 14 fit.
		_, _ = testnet.Try(vm, "ping", "-c", count, "-i", "0.2", "-W", "1", "-M", "do", "-s", "1472", "198.19.0.99")
	}
	tooBig("2")
	// The warning (at info) comes from the drop watch's tick that saw the
	// drops; at info that tick wrote no debug line.
	waitLog(t, x.Log, "frames too big for a tunnel were dropped")
	before := tunnelStats(stats(t, x), "br1", hosts[1].IP4).Drops["too_big"]
	if strings.Contains(x.Log(), " drops: ") || strings.Contains(x.Log(), "DEBUG") {
		t.Fatalf("debug lines at info:\n%s", x.Log())
	}

	out, err := x.Ctl("log-level", "bogus")
	if err == nil || !strings.Contains(out, `"bogus" is not a log level; give one of debug, info, warn, error`) {
		t.Errorf("ctl log-level bogus: %v\n%s", err, out)
	}
	if out, err := x.Ctl("log-level", "debug"); err != nil || out != "log level debug (was info)\n" {
		t.Fatalf("ctl log-level debug: %q %v", out, err)
	}
	waitLog(t, x.Log, "log level set by xswitch ctl")
	mark := len(x.Log())
	tooBig("3")
	if after := tunnelStats(stats(t, x), "br1", hosts[1].IP4).Drops["too_big"]; after < before+3 {
		t.Fatalf("too_big %d -> %d, want 3 more", before, after)
	}
	since := func() string { return x.Log()[mark:] }
	waitLog(t, since, "frames of more than 1464 bytes do not fit the tunnel")
	var line string
	for _, l := range strings.Split(since(), "\n") {
		if strings.Contains(l, "frames of more than 1464 bytes") {
			line = l
			break
		}
	}
	for _, want := range []string{"DEBUG", "too_big drops: frames of more than 1464 bytes", "set MTU 1450", "(the VMs behind vm1)", `"reason": "too_big"`, `"tunnel": "198.18.0.2"`, `"bridge": "br1"`, `"dropped": `} {
		if !strings.Contains(line, want) {
			t.Errorf("the debug notice lacks %s:\n%s", want, line)
		}
	}
	if out, err := x.Ctl("log-level"); err != nil || out != "log level debug\n" {
		t.Errorf("ctl log-level after the bad one and debug: %q %v", out, err)
	}
}

// waitResolved waits until the first tunnel's next hop is resolved.
func waitResolved(t *testing.T, x *e2e.Xswitch) {
	t.Helper()
	wait.For(t, 10*time.Second, "the tunnel's next hop resolved", func() bool {
		var st vswitch.Status
		if err := x.CtlJSON(&st, "show"); err != nil {
			t.Fatal(err)
		}
		return st.Bridges[0].Tunnels[0].NextHop.State == "resolved"
	})
}

// notifySocket listens like systemd on a unix datagram socket and delivers
// every message.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return path, ch
}

func nextNotify(t *testing.T, ch <-chan string, d *daemon) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-d.done:
		t.Fatalf("xswitch exited (%v) before the next notification:\n%s", d.err, d.out.String())
	case <-time.After(e2e.ReadyTimeout):
		t.Fatalf("no notification within %v:\n%s", e2e.ReadyTimeout, d.out.String())
	}
	return ""
}

// TestSystemdNotify: with $NOTIFY_SOCKET (as systemd sets it for
// Type=notify), READY=1 comes once the switch answers ctl show with its
// pollers up, with a STATUS line; SIGTERM gives STOPPING=1, then a clean
// exit.
func TestSystemdNotify(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	path, ch := notifySocket(t)
	d := runDaemon(t, h.NS, xsConfig(h.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, remotes: others(hosts, h, false)}),
		"NOTIFY_SOCKET="+path)
	ready := nextNotify(t, ch, d)
	if !strings.HasPrefix(ready, "READY=1\n") || !strings.Contains(ready, "STATUS=forwarding: 1 bridges, 1 ports, 1 tunnels") {
		t.Fatalf("first notification %q, want READY=1 and the STATUS line", ready)
	}
	// At READY, the control socket answers, with the pollers running.
	out, err := testnet.Try(h.NS, e2e.Binary(t), "ctl", "show", "--json")
	if err != nil {
		t.Fatalf("ctl show right after READY=1: %v\n%s", err, out)
	}
	var st vswitch.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Underlay == nil || len(st.Underlay.Pollers) != e2e.UnderlayQueues || st.Revision == "" || st.StartedAt == "" {
		t.Errorf("ctl show at READY: underlay %+v, revision %q, started %q; want %d pollers", st.Underlay, st.Revision, st.StartedAt, e2e.UnderlayQueues)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if m := nextNotify(t, ch, d); !strings.HasPrefix(m, "STOPPING=1") {
		t.Errorf("after SIGTERM: %q, want STOPPING=1", m)
	}
	if rc := d.exitCode(t, 30*time.Second); rc != 0 {
		t.Errorf("exit status %d after SIGTERM\n%s", rc, d.out.String())
	}
	select {
	case m, ok := <-ch:
		if ok {
			t.Errorf("a notification after STOPPING=1: %q", m)
		}
	default:
	}
}

// unitCapabilities are the capabilities the systemd unit leaves xswitch
// (CapabilityBoundingSet), in setpriv's spelling, without CAP_SYS_ADMIN:
// that one is for kernels before 5.8, which lack CAP_BPF and CAP_PERFMON.
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../packaging/xswitch.service")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapabilityBoundingSet="); ok {
			for _, c := range strings.Fields(v) {
				if c != "CAP_SYS_ADMIN" {
					caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
				}
			}
		}
	}
	if len(caps) == 0 {
		t.Fatal("no CapabilityBoundingSet in packaging/xswitch.service")
	}
	return caps
}

// TestUnitCapabilities: xswitch runs and forwards with only the
// capabilities the systemd unit grants (setpriv drops the others from the
// bounding set, as systemd does): a ping crosses the tunnel to a switch
// with all of root's. Without CAP_BPF the start fails, saying why.
func TestUnitCapabilities(t *testing.T) {
	testnet.RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	_, hosts := e2e.Topology(t, 2)
	h1, h2 := hosts[0], hosts[1]
	cfg := func(i int, h *e2e.Host) string {
		return xsConfig(h.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(i) + "/24"}, remotes: others(hosts, h, false)})
	}
	caps := unitCapabilities(t)
	start := func(caps []string) *daemon {
		dir := t.TempDir()
		path := filepath.Join(dir, "xswitch.yaml")
		if err := os.WriteFile(path, []byte(cfg(1, h1)), 0o644); err != nil {
			t.Fatal(err)
		}
		d := &daemon{ns: h1.NS, done: make(chan struct{})}
		d.cmd = testnet.Cmd(h1.NS, "setpriv", "--bounding-set=-all,"+strings.Join(caps, ","), "--inh-caps=-all",
			e2e.Binary(t), "run", "--config", path)
		d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
		if err := d.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { d.err = d.cmd.Wait(); close(d.done) }()
		t.Cleanup(func() {
			select {
			case <-d.done:
			default:
				_ = d.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-d.done:
				case <-time.After(10 * time.Second):
					_ = d.cmd.Process.Kill()
					<-d.done
				}
			}
			if t.Failed() {
				t.Logf("xswitch under setpriv %v:\n%s", caps, d.out.String())
			}
		})
		return d
	}

	var noBPF []string
	for _, c := range caps {
		if c != "+bpf" {
			noBPF = append(noBPF, c)
		}
	}
	d := start(noBPF)
	if rc := d.exitCode(t, 30*time.Second); rc != 1 || !strings.Contains(d.out.String(), "operation not permitted") {
		t.Errorf("without CAP_BPF: exit %d, want 1 and the refused BPF call in the log:\n%s", rc, d.out.String())
	}

	d = start(caps)
	d.ready(t, "")
	x2 := e2e.StartXswitch(t, h2.NS, cfg(2, h2))
	waitResolved(t, x2)
	if out, err := testnet.Try(h1.NS, "ping", "-c", "3", "-i", "0.2", "-W", "2", inner4(2)); err != nil {
		t.Fatalf("ping from the switch with the unit's capabilities %v: %v\n%s", caps, err, out)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if rc := d.exitCode(t, 30*time.Second); rc != 0 {
		t.Errorf("exit %d after SIGTERM with the unit's capabilities (clean-up refused?):\n%s", rc, d.out.String())
	}
	noLink(t, h1.NS, "br1")
	if p := xdpProg(t, h1.NS, h1.Underlay); p != "" {
		t.Errorf("XDP program %s left on %s", p, h1.Underlay)
	}
}
