package vswitch

import (
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"xswitch/internal/testnet"
	"xswitch/internal/xdpcount"
)

// lifeHost is a namespace whose veth eth0 (198.18.0.1/24) leads to a peer
// namespace (198.18.0.2/24), the other tunnel endpoint.
func lifeHost(t *testing.T) (n *testnet.Net, ns string) {
	t.Helper()
	n = testnet.New(t)
	ns, peer := n.NS("h"), n.NS("peer")
	n.Veth(ns, "eth0", peer, "eth0", 1)
	// No IPv6 on the internal port: its router solicitations and MLD
	// reports would be traffic, and the counters' single-writer plain
	// stores are a race to the race detector (not what the tests here are about).
	n.Run(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
	n.Run(ns, "ip", "addr", "add", "198.18.0.1/24", "dev", "eth0")
	n.Run(peer, "ip", "addr", "add", "198.18.0.2/24", "dev", "eth0")
	return n, ns
}

const lifeYAML = `underlay: {interface: eth0}
bridges:
  - name: br1
    address: 198.19.0.1/24
    tunnels: [{remote_ip: 198.18.0.2, key: 5000}]
`

var progID = regexp.MustCompile(`prog/xdp id (\d+)`)

// xdpProg returns the id of the XDP program on dev in ns, "" if none.
func xdpProg(t *testing.T, ns, dev string) string {
	t.Helper()
	out, err := testnet.Try(ns, "ip", "-d", "link", "show", dev)
	if err != nil {
		t.Fatal(err)
	}
	if m := progID.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// TestNewFailureCleansUp: New failing half way returns the real error (no
// panic) and removes what it created, and only that.
func TestNewFailureCleansUp(t *testing.T) {
	cases := []struct {
		name  string
		yaml  string
		setup func(t *testing.T, n *testnet.Net, ns string)
		want  string
	}{
		{"foreign-xdp-program", lifeYAML, func(t *testing.T, n *testnet.Net, ns string) {
			var c *xdpcount.Counter
			if err := testnet.Do(ns, func() (err error) { c, err = xdpcount.Attach("eth0", "native"); return err }); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
		}, "interface eth0 already has an XDP program attached"},
		{"second-tap-name-taken", lifeYAML + "  - name: br2\n", func(t *testing.T, n *testnet.Net, ns string) {
			n.Run(ns, "ip", "link", "add", "br2", "type", "bridge")
		}, "internal port br2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, ns := lifeHost(t)
			c.setup(t, n, ns)
			progBefore := xdpProg(t, ns, "eth0")
			cfg, err := ParseConfig([]byte(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var sw *Switch
			err = testnet.Do(ns, func() (err error) { sw, err = New(cfg, Options{}); return err })
			if err == nil {
				sw.Close()
				t.Fatal("New succeeded")
			}
			if sw != nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v, %v; want nil and an error with %q", sw, err, c.want)
			}
			if out, err := testnet.Try(ns, "ip", "link", "show", "br1"); err == nil {
				t.Errorf("internal port br1 left behind:\n%s", out)
			}
			if p := xdpProg(t, ns, "eth0"); p != progBefore {
				t.Errorf("XDP program on eth0 is %q after the failed start, was %q", p, progBefore)
			}
			for _, fam := range []string{"-4", "-6"} {
				if out, _ := testnet.Try(ns, "ip", fam, "neigh", "show", "dev", "eth0"); strings.Contains(out, "managed") {
					t.Errorf("managed neighbour entries left behind:\n%s", out)
				}
			}
		})
	}
}

// TestCloseWhileQueried: Status, Stats and FDB called all through Close
// neither crash nor race (run with -race) nor keep Close from removing
// everything.
func TestCloseWhileQueried(t *testing.T) {
	_, ns := lifeHost(t)
	cfg, err := ParseConfig([]byte(lifeYAML))
	if err != nil {
		t.Fatal(err)
	}
	var sw *Switch
	if err := testnet.Do(ns, func() (err error) { sw, err = New(cfg, Options{}); return err }); err != nil {
		t.Fatal(err)
	}
	if err := sw.Start(); err != nil {
		sw.Close()
		t.Fatal(err)
	}
	var calls atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				switch i {
				case 0:
					_ = sw.Status()
				case 1:
					_ = sw.Stats()
				default:
					_ = sw.FDB()
				}
				calls.Add(1)
			}
		}(i)
	}
	for deadline := time.Now().Add(10 * time.Second); calls.Load() < 100; {
		if time.Now().After(deadline) {
			t.Fatal("the control path calls do not run")
		}
		time.Sleep(time.Millisecond)
	}
	if err := sw.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	atClose := calls.Load()
	for deadline := time.Now().Add(10 * time.Second); calls.Load() < atClose+100; {
		if time.Now().After(deadline) {
			t.Fatal("the control path calls stopped after Close")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if st := sw.Status(); st.UMEM.Frames != 0 || st.Underlay == nil || st.Underlay.Queues != 0 {
		t.Errorf("Status after Close shows released resources: umem %+v underlay %+v", st.UMEM, st.Underlay)
	}
	if out, err := testnet.Try(ns, "ip", "link", "show", "br1"); err == nil {
		t.Errorf("internal port br1 left behind:\n%s", out)
	}
	if p := xdpProg(t, ns, "eth0"); p != "" {
		t.Errorf("XDP program %s left on eth0", p)
	}
}

// TestTooBigWarning: frames dropped as too big for a tunnel are logged on
// the control path with the MTU that works and the bridge's local ports,
// at most once per tooBigEvery per tunnel, with the drops since the last
// warning.
func TestTooBigWarning(t *testing.T) {
	r := newRig(t)
	obs, logs := observer.New(zap.WarnLevel)
	s := &Switch{log: zap.New(obs), underlayMTU: 1500}
	s.fab.Store(r.f)
	s.dp.all = []*core{r.c}
	w := newTooBigWatch()
	flood := func() {
		r.reset()
		// Broadcast: flooded to both tunnels of br1, too big for both.
		r.c.forward(r.a, []desc{r.frame(eth(bcast, macA, 1500))})
	}
	t0 := time.Unix(1000, 0)
	w.check(s, t0)
	if logs.Len() != 0 {
		t.Fatalf("warned without drops: %v", logs.All())
	}
	flood()
	w.check(s, t0)
	got := logs.TakeAll()
	if len(got) != 2 {
		t.Fatalf("%d warnings after drops on two tunnels, want 2: %v", len(got), got)
	}
	for i, tn := range []*tunnel{r.t1, r.t2} {
		f := got[i].ContextMap()
		want := map[string]any{"bridge": "br1", "tunnel": tn.remote.String(), "mtu": int64(tn.maxInner - 14), "dropped": uint64(1), "underlay_mtu": int64(1500)}
		for k, v := range want {
			if f[k] != v {
				t.Errorf("warning %d: %s = %v (%T), want %v (%T)", i, k, f[k], f[k], v, v)
			}
		}
		if ports, _ := f["local_ports"].([]any); len(ports) != 2 || ports[0] != "vm1" || ports[1] != "vm2" {
			t.Errorf("warning %d: local_ports %v, want [vm1 vm2]", i, f["local_ports"])
		}
		if !strings.Contains(got[i].Message, "MTU") {
			t.Errorf("warning %d does not say MTU: %q", i, got[i].Message)
		}
	}
	if got[0].ContextMap()["mtu"] != int64(1450) {
		t.Errorf("IPv4 tunnel without options: mtu %v, want 1450", got[0].ContextMap()["mtu"])
	}
	// More drops within the interval: no warning; after it, one per
	// tunnel with every drop since the last one.
	flood()
	flood()
	w.check(s, t0.Add(time.Second))
	w.check(s, t0.Add(tooBigEvery-time.Second))
	if logs.Len() != 0 {
		t.Errorf("warned again within %v: %v", tooBigEvery, logs.All())
	}
	w.check(s, t0.Add(tooBigEvery))
	got = logs.TakeAll()
	if len(got) != 2 || got[0].ContextMap()["dropped"] != uint64(2) {
		t.Errorf("after %v: %v, want 2 warnings with dropped=2", tooBigEvery, got)
	}
	// No new drops: silence, however long it has been.
	w.check(s, t0.Add(10*tooBigEvery))
	if logs.Len() != 0 {
		t.Errorf("warned without new drops: %v", logs.All())
	}
}

// TestOnePPerPoller: a started switch has at least one P per AF_XDP poller
// plus procsReserve (GOMAXPROCS raised where the CPU count is lower).
func TestOnePPerPoller(t *testing.T) {
	_, ns := lifeHost(t)
	cfg, err := ParseConfig([]byte(lifeYAML))
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(1)
	var sw *Switch
	if err := testnet.Do(ns, func() (err error) { sw, err = New(cfg, Options{}); return err }); err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	pollers := len(sw.dp.pollers)
	if got := runtime.GOMAXPROCS(0); pollers == 0 || got < pollers+procsReserve {
		t.Errorf("GOMAXPROCS %d with %d pollers, want at least %d", got, pollers, pollers+procsReserve)
	}
}
