package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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

// metricsPort is where xswitch serves /metrics in the tests (inside the
// test's namespace, on the host's underlay address).
const metricsPort = "9417"

// TestMetricsPrometheus: a real Prometheus, in h1's namespace, scrapes
// h1's xswitch every second while pings cross the tunnel and too-big
// frames are dropped; then what Prometheus stored matches `ctl stats` and
// `ctl show` taken at a quiet moment: port and tunnel counters, a drop
// reason, the kernel's AF_XDP statistics (one series per socket, summed
// per port as `ctl stats` sums them), UMEM free frames, FDB entries, and
// the poller batch size histogram, whose sum is the frames received.
func TestMetricsPrometheus(t *testing.T) {
	testnet.RequireRoot(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found: %v (install Debian's prometheus package: make deps)", err)
	}
	_, hosts := e2e.Topology(t, 2)
	h1, h2 := hosts[0], hosts[1]
	for _, h := range hosts {
		// No IPv6 on br1: no router solicitations or MLD reports keep the
		// counters moving after the test's own traffic.
		if out, err := testnet.Try(h.NS, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			t.Fatal(err, out)
		}
	}
	target := net.JoinHostPort(h1.IP4.String(), metricsPort)
	br := func(i int, self *e2e.Host) bridgeSpec {
		return bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(i) + "/24"}, remotes: others(hosts, self, false)}
	}
	x1 := e2e.StartXswitch(t, h1.NS, xsConfig(h1.Underlay, br(1, h1))+"metrics:\n  listen: \""+target+"\"\n")
	e2e.StartXswitch(t, h2.NS, xsConfig(h2.Underlay, br(2, h2)))

	prom := startPrometheus(t, promBin, h1.NS, target)

	ping(t, h1.NS, inner4(2), 5)
	// Frames too big for the underlay once encapsulated: too_big drops.
	if out, err := testnet.Try(h1.NS, "ip", "link", "set", "br1", "mtu", "1500"); err != nil {
		t.Fatal(err, out)
	}
	pingFails(t, h1.NS, inner4(2), "-s", "1472", "-M", "do")

	wait.For(t, 30*time.Second, "Prometheus to scrape xswitch (up == 1, xswitch_up == 1)", func() bool {
		up, err1 := prom.value(`up{job="xswitch"}`)
		xup, err2 := prom.value(`xswitch_up`)
		return err1 == nil && err2 == nil && up == 1 && xup == 1
	})
	if n, err := prom.value(`count(xswitch_xsk_rx_dropped_total{port="eth0"})`); err != nil || n != e2e.UnderlayQueues {
		t.Errorf("XDP_STATISTICS series of eth0: %v (%v), want one per queue: %d", n, err, e2e.UnderlayQueues)
	}
	if n, err := prom.value(`count(xswitch_poller_batch_size_bucket{port="eth0"})`); err != nil || n != 8 {
		t.Errorf("batch size buckets of eth0: %v (%v), want 8 (le 1..64 and +Inf)", n, err)
	}
	checkPromMatchesCtl(t, x1, prom)
	checkDashboardQueries(t, prom)
	logScrape(t, h1.NS, target)
	stopWhileScraped(t, x1, target)
}

// stopWhileScraped stops the switch while scrapes keep coming: the metrics
// server stops (waiting for scrapes under way) before the switch closes,
// so the daemon exits cleanly.
func stopWhileScraped(t *testing.T, x *e2e.Xswitch, target string) {
	t.Helper()
	done := make(chan struct{})
	scraped := make(chan int)
	go func() {
		n := 0
		defer func() { scraped <- n }()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			select {
			case <-done:
				return
			default:
			}
			if _, err := nsGet(x.NS(), "http://"+target+"/metrics"); err == nil {
				n++
			}
		}
	}()
	wait.For(t, 10*time.Second, "xswitch to answer scrapes", func() bool {
		_, err := nsGet(x.NS(), "http://"+target+"/metrics")
		return err == nil
	})
	err := x.Stop()
	close(done)
	n := <-scraped
	t.Logf("%d scrapes answered while the test stopped xswitch", n)
	if err != nil {
		t.Errorf("xswitch did not stop cleanly while scraped (%d scrapes during the test): %v", n, err)
	}
	if n == 0 {
		t.Errorf("no scrape succeeded before the stop")
	}
	if !strings.Contains(x.Log(), "stopped") {
		t.Errorf("no 'stopped' in the log:\n%s", x.Log())
	}
	if _, err := nsGet(x.NS(), "http://"+target+"/metrics"); err == nil {
		t.Errorf("/metrics still answers after the stop")
	}
}

// checkDashboardQueries runs every query of the Grafana dashboard
// (docs/grafana-xswitch.json), its variables set to "all", against the
// Prometheus that scraped xswitch: each must return data.
func checkDashboardQueries(t *testing.T, prom *promClient) {
	t.Helper()
	b, err := os.ReadFile("../../docs/grafana-xswitch.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("docs/grafana-xswitch.json: %v", err)
	}
	// rate() needs two samples in its window: wait for a few scrapes (every
	// series of the target comes with each).
	wait.For(t, 30*time.Second, "3 scrapes in 10 s", func() bool {
		v, err := prom.value(`count_over_time(xswitch_up[10s])`)
		return err == nil && v >= 3
	})
	vars := strings.NewReplacer("$instance", ".*", "$bridge", ".*", "$__rate_interval", "10s")
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			expr := vars.Replace(tg.Expr)
			k, err := prom.count(expr)
			if err != nil || k == 0 {
				t.Errorf("dashboard panel %q: %s: %d series (%v)", p.Title, expr, k, err)
			}
			n++
		}
	}
	if n < 10 {
		t.Errorf("only %d queries in the dashboard", n)
	}
	t.Logf("%d dashboard queries returned data", n)
}

// promCheck is one PromQL expression and what `ctl` says it must be.
type promCheck struct {
	expr string
	want func(s vswitch.Stats, st vswitch.Status) float64
	tol  float64 // allowed difference
	min  float64 // the value must be at least this: the traffic shows
}

func promChecks() []promCheck {
	port := func(s vswitch.Stats, name string) vswitch.PortStats { return portStats(s, name) }
	xskOf := func(s vswitch.Stats, name string) vswitch.XSKStats {
		if k := port(s, name).Kernel; k != nil && k.XSK != nil {
			return *k.XSK
		}
		return vswitch.XSKStats{}
	}
	tun := func(s vswitch.Stats) vswitch.TunnelStats {
		if len(s.Tunnels) == 1 {
			return s.Tunnels[0]
		}
		return vswitch.TunnelStats{}
	}
	return []promCheck{
		{`xswitch_port_rx_packets_total{port="eth0"}`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(port(s, "eth0").RxPackets) }, 0, 5},
		{`xswitch_port_tx_packets_total{port="eth0"}`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(port(s, "eth0").TxPackets) }, 0, 5},
		{`xswitch_port_rx_packets_total{port="br1"}`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(port(s, "br1").RxPackets) }, 0, 5},
		{`xswitch_tunnel_tx_packets_total{remote="198.18.0.2",vni="5000"}`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(tun(s).TxPackets) }, 0, 5},
		{`xswitch_tunnel_drops_total{remote="198.18.0.2",reason="too_big"}`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(tun(s).Drops["too_big"]) }, 0, 2},
		{`sum(xswitch_xsk_rx_packets_total{port="eth0"})`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(xskOf(s, "eth0").RxPackets) }, 0, 5},
		{`sum(xswitch_xsk_rx_dropped_total{port="eth0"})`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(xskOf(s, "eth0").RxDropped) }, 0, 0},
		{`sum(xswitch_xsk_rx_fill_ring_empty_total{port="eth0"})`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(xskOf(s, "eth0").RxFillRingEmpty) }, 0, 0},
		{`sum(xswitch_xsk_tx_invalid_descs_total{port="eth0"})`, func(s vswitch.Stats, _ vswitch.Status) float64 { return float64(xskOf(s, "eth0").TxInvalidDescs) }, 0, 0},
		// Frames move between the pollers' stocks and the UMEM's free list
		// even when idle (refills): up to a burst per poller either way.
		{`xswitch_umem_free_frames`, func(_ vswitch.Stats, st vswitch.Status) float64 { return float64(st.UMEM.FreeFrames) }, 3 * 64, 1},
		{`xswitch_fdb_entries{bridge="br1"}`, func(_ vswitch.Stats, st vswitch.Status) float64 { return float64(st.Bridges[0].FDB.Entries) }, 0, 2},
		// Every frame the underlay pollers took is in one batch: the
		// histogram's sum is eth0's rx_packets (plus runts, not counted there).
		{`xswitch_poller_batch_size_sum{port="eth0"}`, func(s vswitch.Stats, _ vswitch.Status) float64 {
			return float64(port(s, "eth0").RxPackets + port(s, "eth0").Drops["runt"])
		}, 0, 5},
		{`sum(xswitch_poller_batch_size_bucket{port="eth0",le="+Inf"}) - sum(xswitch_poller_batch_size_count{port="eth0"})`,
			func(vswitch.Stats, vswitch.Status) float64 { return 0 }, 0, 0},
		{`xswitch_poller_batch_size_count{port="br1"}`, func(s vswitch.Stats, _ vswitch.Status) float64 { return 0 }, math.Inf(1), 1},
	}
}

// checkPromMatchesCtl polls (bounded) until, between two identical `ctl`
// readings, every check's Prometheus value matches them: then the last
// scrape saw the same counters `ctl` reports.
func checkPromMatchesCtl(t *testing.T, x *e2e.Xswitch, prom *promClient) {
	t.Helper()
	checks := promChecks()
	var problems []string
	ok := wait.Until(30*time.Second, func() bool {
		problems = problems[:0]
		s1, st1 := ctlSnapshot(t, x)
		got := make([]float64, len(checks))
		for i, c := range checks {
			v, err := prom.value(c.expr)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			got[i] = v
		}
		s2, st2 := ctlSnapshot(t, x)
		for i, c := range checks {
			w1, w2 := c.want(s1, st1), c.want(s2, st2)
			if w1 != w2 && c.tol == 0 {
				problems = append(problems, fmt.Sprintf("%s: ctl moved from %v to %v (traffic still flowing)", c.expr, w1, w2))
				continue
			}
			if math.Abs(got[i]-w2) > c.tol || got[i] < c.min {
				problems = append(problems, fmt.Sprintf("%s = %v, ctl says %v (tolerance %v, at least %v)", c.expr, got[i], w2, c.tol, c.min))
			}
		}
		return len(problems) == 0
	})
	if !ok {
		t.Errorf("Prometheus never matched ctl stats/show within 30s; last differences:\n  %s", strings.Join(problems, "\n  "))
	}
	for _, c := range checks {
		v, err := prom.value(c.expr)
		t.Logf("%s = %v (%v)", c.expr, v, err)
	}
}

func ctlSnapshot(t *testing.T, x *e2e.Xswitch) (vswitch.Stats, vswitch.Status) {
	t.Helper()
	var st vswitch.Status
	if err := x.CtlJSON(&st, "show"); err != nil {
		t.Fatal(err)
	}
	if len(st.Bridges) == 0 {
		t.Fatalf("ctl show lists no bridge")
	}
	return stats(t, x), st
}

// logScrape logs what xswitch serves, as Prometheus reads it.
func logScrape(t *testing.T, ns, target string) {
	t.Helper()
	body, err := nsGet(ns, "http://"+target+"/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	var keep []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "xswitch_") && !strings.Contains(l, "_drops_total") {
			keep = append(keep, l)
		}
	}
	t.Logf("scrape of %s (xswitch_ lines but drops):\n%s", target, strings.Join(keep, "\n"))
}

// promClient queries a Prometheus server that listens inside a namespace.
type promClient struct {
	ns, base string
}

// promResponse is the part of /api/v1/query's answer the tests read.
type promResponse struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// query runs an instant query.
func (p *promClient) query(expr string) (*promResponse, error) {
	body, err := nsGet(p.ns, p.base+"/api/v1/query?query="+url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	var r promResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return nil, fmt.Errorf("query %s: %w: %s", expr, err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, r.Error)
	}
	return &r, nil
}

// count returns how many series an instant query returns.
func (p *promClient) count(expr string) (int, error) {
	r, err := p.query(expr)
	if err != nil {
		return 0, err
	}
	return len(r.Data.Result), nil
}

// value runs an instant query that must return exactly one sample.
func (p *promClient) value(expr string) (float64, error) {
	r, err := p.query(expr)
	if err != nil {
		return 0, err
	}
	if len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("query %s: %d samples, want 1: %v", expr, len(r.Data.Result), r.Data.Result)
	}
	s, ok := r.Data.Result[0].Value[1].(string)
	if !ok {
		return 0, fmt.Errorf("query %s: value %v is not a string", expr, r.Data.Result[0].Value)
	}
	return strconv.ParseFloat(s, 64)
}

// nsGet makes an HTTP GET whose connection is opened inside ns.
func nsGet(ns, u string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := testnet.Do(ns, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := cl.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return string(b), nil
}

// startPrometheus runs Prometheus in ns with its own configuration and
// data directory, scraping target every second; it is stopped (SIGTERM,
// SIGKILL after 10 s) when t ends.
func startPrometheus(t *testing.T, bin, ns, target string) *promClient {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	yml := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: xswitch\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	const listen = "127.0.0.1:9090" // the namespace's own loopback
	cmd := testnet.Cmd(ns, bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	p := &promClient{ns: ns, base: "http://" + listen}
	wait.For(t, 30*time.Second, "Prometheus ready on "+listen+" in "+ns, func() bool {
		select {
		case err := <-done:
			done <- err
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("prometheus exited: %v\n%s", err, b)
		default:
		}
		_, err := nsGet(ns, p.base+"/-/ready")
		return err == nil
	})
	return p
}

// TestMetricsListenError: an address xswitch cannot listen on stops the
// start with an error that names metrics.listen, before anything is
// created.
func TestMetricsListenError(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 1)
	h := hosts[0]
	bin := e2e.Binary(t)
	// A port taken inside the namespace.
	var busy net.Listener
	if err := testnet.Do(h.NS, func() error {
		var err error
		busy, err = net.Listen("tcp", net.JoinHostPort(h.IP4.String(), metricsPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, c := range []struct{ name, listen, want string }{
		{"in-use", net.JoinHostPort(h.IP4.String(), metricsPort), "address already in use"},
		{"not-local", "198.18.0.99:" + metricsPort, "cannot assign requested address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "x.yaml")
			yml := "bridges:\n  - name: br1\n    address: 198.19.0.1/24\nmetrics:\n  listen: \"" + c.listen + "\"\n"
			if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := testnet.Cmd(h.NS, bin, "run", "--config", cfg).CombinedOutput()
			if err == nil {
				t.Fatalf("xswitch ran with metrics.listen %s:\n%s", c.listen, out)
			}
			for _, w := range []string{"cannot start", "metrics.listen " + c.listen, c.want, "write another address in metrics.listen"} {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if out, err := testnet.Try(h.NS, "ip", "link", "show", "br1"); err == nil {
				t.Errorf("internal port br1 exists after the failed start:\n%s", out)
			}
		})
	}
}
