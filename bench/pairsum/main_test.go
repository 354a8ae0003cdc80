package main

import (
	"bytes"
	"strings"
	"testing"

	"xswitch/bench/internal/report"
)

func rep(x, o float64) *report.Report {
	r := &report.Report{Host: report.Host{CPU: "Test CPU"}}
	for _, p := range []string{report.PathEncap, report.PathDecap} {
		r.Results = append(r.Results,
			report.Result{System: report.SystemXswitch, Path: p, Size: 64, Mpps: x, CtxSw: &report.CtxSwitches{FwdVol: 2}},
			report.Result{System: report.SystemOVS, Path: p, Size: 64, Mpps: o, CtxSw: &report.CtxSwitches{FwdVol: 1}})
	}
	return r
}

// TestSummarize: per-pair ratios, their min / median / max and the count
// below 1.0, per path.
func TestSummarize(t *testing.T) {
	var b bytes.Buffer
	summarize(&b, []*report.Report{rep(0.8, 0.4), rep(0.3, 0.4), rep(0.5, 0.4)})
	out := b.String()
	for _, want := range []string{
		"3 pairs; CPU: Test CPU (3 runs)",
		"encap, 64 B (3 pairs):",
		"xswitch / OVS        min 0.75  median 1.25  max 2.00   below 1.0: 1, below 1.5: 2",
		"decap, 64 B (3 pairs):",
		"ctx sw/kpkt fwd vol  xswitch min 2.00  median 2.00  max 2.00 | OVS min 1.00",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
