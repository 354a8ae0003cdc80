package harness

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xswitch/bench/internal/report"
	"xswitch/internal/testnet"
)

// TestHarnessSmoke runs the whole harness briefly in make test: the ceiling,
// xswitch and Open vSwitch on the encap path at 64 bytes, one short run
// each, and checks that every system forwarded frames through the topology
// and that the report, JSON and chart come out. No speed is asserted.
func TestHarnessSmoke(t *testing.T) {
	testnet.RequireRoot(t) // a skipped subtest would otherwise count as a failed system
	b := New(Options{
		Paths: []string{report.PathEncap}, Sizes: []int{64}, Runs: 1,
		// Warmup 1 s: one make test run saw Open vSwitch forward nothing
		// in a 500 ms interval after 300 ms of warm-up (its AF_XDP ports
		// were still settling); the smoke test asserts plumbing, not speed.
		Interval: 500 * time.Millisecond, Warmup: time.Second,
		Flows: 4, GenCPU: 0, SwCPU: 1, Log: t.Logf,
		Latency: true, LatencyProbes: 20, LatencyInterval: 10 * time.Millisecond,
	})
	runMatrix(t, b, []string{report.SystemCeiling, report.SystemXswitch, report.SystemOVS})
	b.Report.Compute()
	if len(b.Report.Results) != 3 {
		t.Fatalf("%d results, want 3: %+v", len(b.Report.Results), b.Report.Results)
	}
	for _, r := range b.Report.Results {
		if r.Error != "" || r.Mpps <= 0 || len(r.RunsMpps) != 1 || r.OfferedMpps <= 0 {
			t.Errorf("%s %s: %+v", r.System, r.Path, r)
		}
	}
	for _, r := range b.Report.Results {
		// Context switches: the forwarding threads and the ingress NAPI
		// thread sleep and wake while forwarding.
		if c := r.CtxSw; c == nil || c.FwdVol+c.FwdInvol <= 0 || c.SwitchVol < c.FwdVol || c.NAPIInVol+c.NAPIInInvol <= 0 {
			t.Errorf("%s: context switches %+v", r.System, r.CtxSw)
		}
		l := r.Latency
		if r.System == report.SystemCeiling {
			if l != nil {
				t.Errorf("l2fwd (one direction only) has a latency: %+v", l)
			}
			continue
		}
		if l == nil || l.Error != "" || l.Idle.Replies < 15 || l.Half.Replies < 15 || l.Idle.MedianUs <= 0 || l.Half.P99Us < l.Half.MedianUs ||
			l.HalfRateMpps <= 0 || l.HalfOfferedMpps <= 0 || l.HalfForwardedMpps <= 0 {
			t.Errorf("%s latency: %+v", r.System, l)
		}
	}
	x := b.Report.Results[1]
	if x.System != report.SystemXswitch || x.RatioOVS <= 0 || x.RatioCeiling <= 0 {
		t.Errorf("xswitch ratios missing: %+v", x)
	}
	var tab bytes.Buffer
	b.Report.Table(&tab)
	t.Logf("\n%s", tab.String())
	dir := t.TempDir()
	if err := b.Report.WriteJSON(filepath.Join(dir, "r.json")); err != nil {
		t.Fatal(err)
	}
	back, err := report.ReadJSON(filepath.Join(dir, "r.json"))
	if err != nil || len(back.Results) != 3 {
		t.Fatalf("JSON: %v %+v", err, back)
	}
	if err := b.Report.WriteSVG(filepath.Join(dir, "c.svg")); err != nil {
		t.Fatal(err)
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "c.svg"))
	if err := xml.Unmarshal(svg, new(struct{})); err != nil || !strings.Contains(string(svg), "encap") {
		t.Errorf("chart: %v", err)
	}
}
