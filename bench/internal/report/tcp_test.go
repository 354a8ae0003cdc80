package report

import (
	"bytes"
	"encoding/xml"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func tcpSample() *Report {
	rep := sample()
	t := &TCPReport{Runs: 3, DurationSec: 10, SwitchCPU: 1, AppCPU: 0}
	add := func(sys, path, off string, streams int, runs ...float64) {
		r := TCPResult{System: sys, Path: path, Offload: off, Streams: streams, RunsGbps: runs,
			SwitchCPUBusyPct: 99, AppCPUBusyPct: 60}
		r.Finish()
		if r.Gbps == 0 {
			r.Error = "failed: no data"
		}
		t.Results = append(t.Results, r)
	}
	add(SystemXswitch, TCPHostHost, "", 1, 9, 10, 11)
	t.Results[0].Drops = map[string]uint64{"vm2/eth0": 3, "h1/br1": 12}
	add(SystemOVS, TCPHostHost, "", 1, 3, 3, 3)
	add(SystemXswitch, TCPHostHost, "", 4, 6, 6, 6)
	add(SystemOVS, TCPHostHost, "", 4, 3, 3, 3)
	add(SystemXswitch, TCPVMVM, OffloadDefault, 1, 4, 4, 4)
	add(SystemOVS, TCPVMVM, OffloadDefault, 1, 0, 0, 0)
	add(SystemXswitch, TCPVMVM, OffloadTxOff, 1, 3, 3, 3)
	add(SystemOVS, TCPVMVM, OffloadTxOff, 1, 2, 2, 2)
	// 4 streams VM → VM: xswitch default moved nothing; OVS tx-off not measured.
	add(SystemXswitch, TCPVMVM, OffloadDefault, 4, 0, 0, 0)
	rep.TCP = t
	t.Compute()
	return rep
}

func TestTCPCompute(t *testing.T) {
	tr := tcpSample().TCP
	x := tr.Find(SystemXswitch, TCPHostHost, "", 1)
	if x.Gbps != 10 || math.Abs(x.SpreadPct-20) > 1e-9 || math.Abs(x.RatioOVS-10.0/3) > 1e-9 {
		t.Fatalf("host-host 1: %+v", x)
	}
	if v := tr.Find(SystemXswitch, TCPVMVM, OffloadDefault, 1); v.RatioOVS != 0 {
		t.Errorf("ratio against an OVS figure of 0: %v", v.RatioOVS)
	}
	if o := tr.Find(SystemOVS, TCPHostHost, "", 1); o.RatioOVS != 0 {
		t.Errorf("OVS has a ratio to itself: %v", o.RatioOVS)
	}
	want := map[string]string{
		"VM → VM with default offloads works/vm-vm default 1": "met (4.00 Gbit/s)",
		"host → host ≥ 3× OVS/host-host 1":                    "met (3.33×)",
		"VM → VM ≥ 1.5× OVS (OVS VMs tx off)/vm-vm default 1": "met (2.00×)",
		"VM → VM with default offloads works/vm-vm default 4": "NOT met (0.00 Gbit/s)",
		"host → host ≥ 3× OVS/host-host 4":                    "NOT met (2.00×)",
		"VM → VM ≥ 1.5× OVS (OVS VMs tx off)/vm-vm default 4": "not measured",
	}
	if len(tr.Goals) != len(want) {
		t.Fatalf("%d goals, want %d: %+v", len(tr.Goals), len(want), tr.Goals)
	}
	for _, g := range tr.Goals {
		k := g.What + "/" + g.Case
		if v := g.Verdict(); v != want[k] {
			t.Errorf("goal %s: %s, want %s", k, v, want[k])
		}
	}
	if g := tr.Goals[0]; !strings.Contains(g.Note, "OVS: 0.00 Gbit/s (failed: no data)") {
		t.Errorf("works goal note %q", g.Note)
	}
	if g := tr.Goals[4]; !strings.Contains(g.Note, "switch CPU was 99% busy") {
		t.Errorf("unmet goal note %q", g.Note)
	}
}

func TestTCPTableJSONSVG(t *testing.T) {
	rep := tcpSample()
	var b bytes.Buffer
	rep.TCP.Table(&b)
	out := b.String()
	for _, s := range []string{"host-host 1", "vm-vm tx-off 1", "10.00", "3.33×", "failed: no data", "TCP goals:", "NOT met (2.00×)", "drops: h1/br1 12, vm2/eth0 3"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if strings.Index(out, "host-host 1") > strings.Index(out, "host-host 4") || strings.Index(out, "vm-vm default 4") > strings.Index(out, "vm-vm tx-off 1") {
		t.Errorf("order:\n%s", out)
	}

	p := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSON(p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.TCP == nil || len(got.TCP.Results) != len(rep.TCP.Results) || len(got.TCP.Goals) != 6 || got.TCP.Results[0].Gbps != 10 {
		t.Fatalf("TCP section lost in JSON: %+v", got.TCP)
	}
	if len(got.Results) != len(rep.Results) {
		t.Fatalf("packet results lost: %d", len(got.Results))
	}

	s := rep.SVG()
	d := xml.NewDecoder(strings.NewReader(s))
	rects := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed XML: %v\n%s", err, s)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// Packet chart: 10 (TestSVG); TCP chart: 2 legend boxes + 7 non-zero bars.
	if rects != 10+2+7 {
		t.Errorf("%d rects, want 19", rects)
	}
	for _, want := range []string{"Gbit/s", "host → host", "tx-off, 1 stream", "4 streams", "10.00", "failed: no data", "Mpps"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	// TCP only (make bench-tcp): no packet chart.
	rep.Results = nil
	if s := rep.SVG(); strings.Contains(s, "Mpps") || !strings.Contains(s, "Gbit/s") {
		t.Errorf("TCP-only chart:\n%s", s)
	}
}
