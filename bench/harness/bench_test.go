package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"xswitch/bench/internal/gen"
	"xswitch/bench/internal/report"
)

func envList(name string, def []string) []string {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: not an integer", name, v)
	}
	return n
}

func envDur(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

// systemsFor returns the System implementations named.
func systemsFor(t *testing.T, names []string) []func() System {
	var out []func() System
	for _, n := range names {
		switch n {
		case report.SystemOVS:
			out = append(out, func() System { return &OVS{} })
		case report.SystemCeiling:
			out = append(out, func() System { return newL2fwd(t) })
		case report.SystemXswitch:
			out = append(out, func() System { return newXswitch(t) })
		default:
			t.Fatalf("BENCH_SYSTEMS: unknown system %q (xswitch, ovs, l2fwd)", n)
		}
	}
	return out
}

// runMatrix runs every system on every path at every size.
func runMatrix(t *testing.T, b *Bench, systems []string) {
	for _, mk := range systemsFor(t, systems) {
		sys := mk()
		paths := b.Opt.Paths
		if sys.Name() == report.SystemCeiling {
			paths = []string{report.PathFwd}
		}
		for _, p := range paths {
			t.Run(sys.Name()+"/"+p, func(t *testing.T) {
				b.Opt.Log("%s %s:", sys.Name(), p)
				b.RunSystem(t, sys, p)
			})
			sys = mk() // a fresh instance per topology
		}
	}
}

// TestBench is `make bench` (bench/run.sh sets XSWITCH_BENCH=1): the full
// matrix, or with QUICK=1 encap and decap at 64 bytes. Results go to
// BENCH_OUT/<timestamp>.json and the chart to BENCH_CHART.
func TestBench(t *testing.T) {
	if os.Getenv("XSWITCH_BENCH") == "" {
		t.Skip("skipped: the benchmark runs from `make bench` (XSWITCH_BENCH=1); TestHarnessSmoke covers the harness in make test")
	}
	quick := os.Getenv("QUICK") != "" && os.Getenv("QUICK") != "0"
	paths := []string{report.PathEncap, report.PathDecap, report.PathLocal}
	sizes := []string{"64", "512", "1500"}
	// The first seconds of a topology are sometimes slow (the switch's
	// poller and the NAPI thread beside it on its CPU settle): a longer
	// warm-up in the full run (doubled for the first size of a topology).
	runs, interval, warmup := 5, 2*time.Second, 2*time.Second
	if quick {
		paths, sizes, runs, warmup = []string{report.PathEncap, report.PathDecap}, []string{"64"}, 3, time.Second
	}
	o := Options{
		Systems:         envList("BENCH_SYSTEMS", []string{report.SystemCeiling, report.SystemXswitch, report.SystemOVS}),
		Paths:           envList("BENCH_PATHS", paths),
		Runs:            envInt(t, "BENCH_RUNS", runs),
		Interval:        envDur(t, "BENCH_INTERVAL", interval),
		Warmup:          envDur(t, "BENCH_WARMUP", warmup),
		Flows:           envInt(t, "BENCH_FLOWS", 16),
		GenCPU:          envInt(t, "BENCH_GEN_CPU", 0),
		SwCPU:           envInt(t, "BENCH_SWITCH_CPU", 1),
		Backend:         gen.Backend(envList("BENCH_BACKEND", []string{string(gen.BackendXSK)})[0]),
		Log:             func(f string, a ...any) { fmt.Printf(f+"\n", a...) },
		Profile:         os.Getenv("BENCH_PROFILE") != "0",
		ProfileTime:     envDur(t, "BENCH_PROFILE_TIME", 2*time.Second),
		PprofTime:       envDur(t, "BENCH_PPROF_TIME", 5*time.Second),
		Latency:         os.Getenv("BENCH_LATENCY") != "0",
		LatencyProbes:   envInt(t, "BENCH_LATENCY_PROBES", 200),
		LatencyInterval: envDur(t, "BENCH_LATENCY_INTERVAL", 10*time.Millisecond),
	}
	for _, s := range envList("BENCH_SIZES", sizes) {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("BENCH_SIZES: %q is not a number", s)
		}
		o.Sizes = append(o.Sizes, n)
	}
	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = "../results"
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	o.PprofDir = out
	L2fwdArgs = strings.Fields(os.Getenv("BENCH_L2FWD_ARGS"))
	if v := os.Getenv("BENCH_OVS_MAXSLEEP"); v != "" {
		OVSMaxSleep = v
	}
	b := New(o)
	b.Report.Quick = quick
	if o.Backend != gen.BackendXSK {
		b.Report.Notes = append(b.Report.Notes, "generator backend: "+string(o.Backend))
	}
	start := time.Now()
	runMatrix(t, b, o.Systems)
	b.Report.Compute()
	fmt.Println()
	b.Report.Table(os.Stdout)
	b.Report.WriteProfiles(os.Stdout, 12)
	fmt.Printf("\nbenchmark took %v\n", time.Since(start).Round(time.Second))

	jsonPath := os.Getenv("BENCH_JSON") // run.sh: TestBenchTCP adds its section to the same file
	if jsonPath == "" {
		jsonPath = filepath.Join(out, b.Report.Time.Format("20060102T150405Z")+".json")
	}
	if err := b.Report.WriteJSON(jsonPath); err != nil {
		t.Fatal(err)
	}
	fmt.Println("results:", jsonPath)
	if chart := os.Getenv("BENCH_CHART"); chart != "" {
		if err := b.Report.WriteSVG(chart); err != nil {
			t.Fatal(err)
		}
		fmt.Println("chart:", chart)
	}
}
