// Command pairsum sums up alternated benchmark pairs (bench/pairs.sh): for
// each path at 64 bytes, the per-pair ratios xswitch / Open vSwitch (and
// xswitch / l2fwd where the ceiling ran) — min, median, max and how many
// fell below 1.0 — with the rates, context switches per 1000 packets and
// round trips, and the CPU model of every run.
//
//	go run ./bench/pairsum bench/results/pairs-*/pair-*.json
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"xswitch/bench/internal/report"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pairsum pair-1.json pair-2.json ...")
		os.Exit(2)
	}
	var reps []*report.Report
	for _, f := range os.Args[1:] {
		r, err := report.ReadJSON(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pairsum:", err)
			os.Exit(1)
		}
		reps = append(reps, r)
	}
	summarize(os.Stdout, reps)
}

// series is one figure over the pairs.
type series []float64

func (s series) String() string {
	if len(s) == 0 {
		return "-"
	}
	c := append([]float64(nil), s...)
	sort.Float64s(c)
	return fmt.Sprintf("min %.2f  median %.2f  max %.2f", c[0], report.Median(c), c[len(c)-1])
}

func (s series) below(x float64) int {
	n := 0
	for _, v := range s {
		if v < x {
			n++
		}
	}
	return n
}

func find(r *report.Report, system, path string) *report.Result {
	for i := range r.Results {
		x := &r.Results[i]
		if x.System == system && x.Path == path && x.Size == 64 && x.Error == "" && x.Mpps > 0 {
			return x
		}
	}
	return nil
}

// summarize writes the summary of reps (one per pair).
func summarize(w io.Writer, reps []*report.Report) {
	cpus := map[string]int{}
	for _, r := range reps {
		cpus[r.Host.CPU]++
	}
	var cl []string
	for c, n := range cpus {
		cl = append(cl, fmt.Sprintf("%s (%d runs)", c, n))
	}
	sort.Strings(cl)
	fmt.Fprintf(w, "%d pairs; CPU: %s\n", len(reps), strings.Join(cl, ", "))
	if x := find(reps[0], report.SystemXswitch, report.PathEncap); x != nil && x.Mode != "" {
		fmt.Fprintf(w, "xswitch: %s\n", x.Mode)
	}
	for _, path := range []string{report.PathEncap, report.PathDecap, report.PathLocal} {
		var ratio, ceil, xm, om, xfv, xfi, ofv, ofi, xin, oin, xout, oout, xidle, oidle, xhalf, ohalf series
		for _, r := range reps {
			x, o := find(r, report.SystemXswitch, path), find(r, report.SystemOVS, path)
			if x == nil || o == nil {
				continue
			}
			ratio = append(ratio, x.Mpps/o.Mpps)
			xm, om = append(xm, x.Mpps), append(om, o.Mpps)
			if c := find(r, report.SystemCeiling, report.PathFwd); c != nil {
				ceil = append(ceil, x.Mpps/c.Mpps)
			}
			if x.CtxSw != nil && o.CtxSw != nil {
				xfv, xfi, ofv, ofi = append(xfv, x.CtxSw.FwdVol), append(xfi, x.CtxSw.FwdInvol), append(ofv, o.CtxSw.FwdVol), append(ofi, o.CtxSw.FwdInvol)
				xin, oin = append(xin, x.CtxSw.NAPIInVol+x.CtxSw.NAPIInInvol), append(oin, o.CtxSw.NAPIInVol+o.CtxSw.NAPIInInvol)
				xout, oout = append(xout, x.CtxSw.NAPIOutVol+x.CtxSw.NAPIOutInvol), append(oout, o.CtxSw.NAPIOutVol+o.CtxSw.NAPIOutInvol)
			}
			if x.Latency != nil && o.Latency != nil && x.Latency.Error == "" && o.Latency.Error == "" {
				xidle, oidle = append(xidle, x.Latency.Idle.MedianUs), append(oidle, o.Latency.Idle.MedianUs)
				xhalf, ohalf = append(xhalf, x.Latency.Half.MedianUs), append(ohalf, o.Latency.Half.MedianUs)
			}
		}
		if len(ratio) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s, 64 B (%d pairs):\n", path, len(ratio))
		fmt.Fprintf(w, "  xswitch / OVS        %s   below 1.0: %d, below 1.5: %d\n", ratio, ratio.below(1), ratio.below(1.5))
		if len(ceil) > 0 {
			fmt.Fprintf(w, "  xswitch / l2fwd      %s   below 0.95: %d\n", ceil, ceil.below(0.95))
		}
		fmt.Fprintf(w, "  Mpps xswitch         %s\n  Mpps OVS             %s\n", xm, om)
		if len(xfv) > 0 {
			fmt.Fprintf(w, "  ctx sw/kpkt fwd vol  xswitch %s | OVS %s\n", xfv, ofv)
			fmt.Fprintf(w, "  ctx sw/kpkt fwd inv  xswitch %s | OVS %s\n", xfi, ofi)
			fmt.Fprintf(w, "  napi-in v+i /kpkt    xswitch %s | OVS %s\n", xin, oin)
			fmt.Fprintf(w, "  napi-out v+i /kpkt   xswitch %s | OVS %s\n", xout, oout)
		}
		if len(xidle) > 0 {
			fmt.Fprintf(w, "  RTT µs no load       xswitch %s | OVS %s\n", xidle, oidle)
			fmt.Fprintf(w, "  RTT µs half load     xswitch %s | OVS %s\n", xhalf, ohalf)
		}
	}
}
