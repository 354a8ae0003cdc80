package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"xswitch/bench/internal/report"
	"xswitch/internal/testnet"
)

// tcpCases is every case for the given stream counts, in the order they
// run: host → host, then the VMs with default offloads, then with TX off
// (last: turning it off also drops TSO, which the VMs then keep off).
func tcpCases(t *testing.T, names, streams []string) []TCPCase {
	var out []TCPCase
	for _, n := range names {
		for _, s := range streams {
			k, err := strconv.Atoi(s)
			if err != nil || k < 1 {
				t.Fatalf("BENCH_TCP_STREAMS: %q is not a stream count", s)
			}
			switch n {
			case "host-host":
				out = append(out, TCPCase{Path: report.TCPHostHost, Streams: k})
			case "vm-default":
				out = append(out, TCPCase{Path: report.TCPVMVM, Offload: report.OffloadDefault, Streams: k})
			case "vm-txoff":
				out = append(out, TCPCase{Path: report.TCPVMVM, Offload: report.OffloadTxOff, Streams: k})
			default:
				t.Fatalf("BENCH_TCP_CASES: unknown case %q (host-host, vm-default, vm-txoff)", n)
			}
		}
	}
	return out
}

// runTCP runs every system of b on one topology each.
func runTCP(t *testing.T, b *TCPBench) {
	for _, mk := range tcpSystemsFor(t, b.Opt.Systems) {
		sys := mk()
		t.Run("tcp/"+sys.Name(), func(t *testing.T) {
			b.Opt.Log("TCP %s:", sys.Name())
			b.RunSystem(t, sys)
		})
	}
	b.TCP.Compute()
}

// TestBenchTCP is the TCP part of `make bench` and `make bench-tcp`
// (bench/run.sh sets XSWITCH_BENCH=1 and BENCH_TCP=1): iperf3 through both
// hosts' switches for xswitch and Open vSwitch. QUICK=1: one stream, one
// run of 3 s per case. The results go into the TCP section of BENCH_JSON
// (the file TestBench wrote in the same `make bench`, or a new one) and the
// chart into BENCH_CHART.
func TestBenchTCP(t *testing.T) {
	if os.Getenv("XSWITCH_BENCH") == "" || os.Getenv("BENCH_TCP") == "" || os.Getenv("BENCH_TCP") == "0" {
		t.Skip("skipped: the TCP benchmark runs from `make bench` or `make bench-tcp` (XSWITCH_BENCH=1 BENCH_TCP=1); TestBenchTCPSmoke covers it in make test")
	}
	quick := os.Getenv("QUICK") != "" && os.Getenv("QUICK") != "0"
	streams, runs, dur, warmup := []string{"1", "4"}, 3, 10*time.Second, 2*time.Second
	if quick {
		streams, runs, dur, warmup = []string{"1"}, 1, 3*time.Second, time.Second
	}
	o := TCPOptions{
		Systems:  envList("BENCH_TCP_SYSTEMS", []string{report.SystemOVS, report.SystemXswitch}),
		Cases:    tcpCases(t, envList("BENCH_TCP_CASES", []string{"host-host", "vm-default", "vm-txoff"}), envList("BENCH_TCP_STREAMS", streams)),
		Runs:     envInt(t, "BENCH_TCP_RUNS", runs),
		Duration: envDur(t, "BENCH_TCP_TIME", dur),
		Warmup:   envDur(t, "BENCH_TCP_WARMUP", warmup),
		AppCPU:   envInt(t, "BENCH_GEN_CPU", 0),
		SwCPU:    envInt(t, "BENCH_SWITCH_CPU", 1),
		Profile:  os.Getenv("BENCH_PROFILE") != "0",
		Log:      func(f string, a ...any) { fmt.Printf(f+"\n", a...) },
	}
	if v := os.Getenv("BENCH_OVS_MAXSLEEP"); v != "" {
		OVSMaxSleep = v
	}
	out := os.Getenv("BENCH_OUT")
	if out == "" {
		out = "../results"
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	// The packet benchmark's report of the same `make bench`, or a new one.
	rep := &report.Report{Time: time.Now().UTC(), Host: HostInfo(), Quick: quick, SwitchCPU: o.SwCPU, GenCPU: o.AppCPU}
	jsonPath := os.Getenv("BENCH_JSON")
	if jsonPath != "" {
		if r, err := report.ReadJSON(jsonPath); err == nil {
			rep = r
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("BENCH_JSON: %v", err)
		}
	} else {
		jsonPath = filepath.Join(out, rep.Time.Format("20060102T150405Z")+"-tcp.json")
	}
	start := time.Now()
	b := NewTCPBench(o)
	runTCP(t, b)
	rep.TCP = b.TCP
	rep.Profiles = append(rep.Profiles, b.Profiles...)
	fmt.Println()
	b.TCP.Table(os.Stdout)
	for _, p := range b.Profiles {
		one := report.Report{Profiles: []report.Profile{p}}
		one.WriteProfiles(os.Stdout, 15)
	}
	fmt.Printf("\nTCP benchmark took %v\n", time.Since(start).Round(time.Second))
	if err := rep.WriteJSON(jsonPath); err != nil {
		t.Fatal(err)
	}
	fmt.Println("results:", jsonPath)
	if chart := os.Getenv("BENCH_CHART"); chart != "" {
		if err := rep.WriteSVG(chart); err != nil {
			t.Fatal(err)
		}
		fmt.Println("chart:", chart)
	}
}

// TestBenchTCPSmoke runs the TCP benchmark briefly in make test: both
// systems, host → host and VM → VM with default offloads, one stream, one
// run of 2 s, and checks that every figure the report needs comes out. No
// speed is asserted; Open vSwitch's VMs with default offloads may move no
// data (its AF_XDP ports do not finish partial checksums), which must then
// be recorded as 0 with the reason, not abort the run.
func TestBenchTCPSmoke(t *testing.T) {
	testnet.RequireRoot(t)
	b := NewTCPBench(TCPOptions{
		Systems: []string{report.SystemOVS, report.SystemXswitch},
		Cases: []TCPCase{{Path: report.TCPHostHost, Streams: 1},
			{Path: report.TCPVMVM, Offload: report.OffloadDefault, Streams: 1}},
		Runs: 1, Duration: 2 * time.Second, AppCPU: 0, SwCPU: 1, Log: t.Logf,
	})
	runTCP(t, b)
	if len(b.TCP.Results) != 4 {
		t.Fatalf("%d results, want 4: %+v", len(b.TCP.Results), b.TCP.Results)
	}
	for _, r := range b.TCP.Results {
		ovsDefault := r.System == report.SystemOVS && r.Offload == report.OffloadDefault
		switch {
		case r.Gbps > 0 && (r.Error != "" || r.CPUMsPerGbitHost1 <= 0 || r.CPUMsPerGbitHost2 <= 0 || r.SwitchCPUBusyPct <= 0 || r.AppCPUBusyPct <= 0):
			t.Errorf("%s %s: incomplete figures: %+v", r.System, r.Case(), r)
		case r.Gbps == 0 && !strings.HasPrefix(r.Error, "failed: no data"):
			t.Errorf("%s %s: no data without the reason: %+v", r.System, r.Case(), r)
		case r.Gbps == 0 && !ovsDefault:
			t.Errorf("%s %s: TCP moved no data: %s", r.System, r.Case(), r.Error)
		}
	}
	if len(b.TCP.Goals) != 6 {
		t.Errorf("%d goals, want 6", len(b.TCP.Goals))
	}
	if g := b.TCP.Goals[0]; g.Case != "vm-vm default 1" || !g.Met {
		t.Errorf("goal %+v: xswitch's VMs with default offloads must move data", g)
	}
	var tab bytes.Buffer
	b.TCP.Table(&tab)
	t.Logf("\n%s", tab.String())
}

func TestParseIperf3(t *testing.T) {
	ok := []byte(`{"start":{},"intervals":[],"end":{"sum_sent":{"bytes":1250000000,"seconds":1.0,"retransmits":7},
		"sum_received":{"bytes":1200000000,"seconds":1.002,"bits_per_second":9.58e9}}}`)
	r, err := ParseIperf3(ok)
	if err != nil || r.Bytes != 1200000000 || r.Retransmits != 7 || math.Abs(r.Gbps-9.58) > 1e-9 || r.Seconds != 1.002 {
		t.Fatalf("%+v %v", r, err)
	}
	for name, in := range map[string]string{
		"error":   `{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection timed out"}`,
		"no data": `{"end":{"sum_sent":{"bytes":0},"sum_received":{"bytes":0,"seconds":3,"bits_per_second":0}}}`,
		"garbage": `iperf3: error - unable to connect`,
		"empty":   ``,
	} {
		if _, err := ParseIperf3([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseCPUStat(t *testing.T) {
	a := ParseCPUStat("cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 5 0 5 50 0 0 0 0 0 0\ncpu1 5 0 5 50 0 0 0 0 0 0\nintr 1 2\n")
	b := ParseCPUStat("cpu  0\ncpu0 15 0 10 70 5 1 4 0 0 0\ncpu1 105 0 5 50 0 0 0 0 0 0\n")
	if len(a) != 2 || a[0] != [2]uint64{10, 60} {
		t.Fatalf("%v", a)
	}
	// cpu0: busy +20 (user 10, system 5, irq 1, softirq 4), total +45 (idle 20, iowait 5).
	if p := b.BusyPct(a, 0); math.Abs(p-20.0/45*100) > 1e-9 {
		t.Errorf("cpu0 busy %v%%, want 44.4", p)
	}
	if p := b.BusyPct(a, 1); p != 100 {
		t.Errorf("cpu1 busy %v%%, want 100", p)
	}
	if p := a.BusyPct(a, 1); p != 0 {
		t.Errorf("no time passed: %v%%", p)
	}
}
