package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"xswitch/bench/internal/report"
	"xswitch/internal/testnet"
)

// TCPCase is one iperf3 case: host → host over the internal ports, or
// VM → VM over the VM ports with the VMs' TX offload on (default) or off.
type TCPCase struct {
	Path    string // report.TCPHostHost or report.TCPVMVM
	Offload string // vm-vm: report.OffloadDefault or OffloadTxOff
	Streams int
}

func (c TCPCase) String() string { return report.TCPCaseName(c.Path, c.Offload, c.Streams) }

// TCPOptions of a TCP benchmark run.
type TCPOptions struct {
	Systems  []string // run in this order; OVS first lets xswitch's cases be profiled when a goal is missed
	Cases    []TCPCase
	Runs     int
	Duration time.Duration // iperf3 -t
	// Warmup is an unrecorded iperf3 run before each case's runs: the
	// first second on a fresh topology or offload setting is sometimes
	// much slower (neighbours, MAC learning, the threads settling).
	Warmup time.Duration
	AppCPU int // iperf3, the VMs' and hosts' stacks, the wire
	SwCPU  int // both hosts' switches and their NAPI threads
	// Profile: after the runs of an xswitch case whose goal is not met,
	// one more run under `perf record` of both switches.
	Profile bool
	Log     func(format string, args ...any)
}

// TCPBench accumulates a TCP run.
type TCPBench struct {
	Opt      TCPOptions
	TCP      *report.TCPReport
	Profiles []report.Profile
}

// TCPPlacement says where everything runs (also in the JSON).
func TCPPlacement(app, sw int) string {
	return fmt.Sprintf("CPU %d: both hosts' switches (every thread), the threaded NAPI of their underlay and VM ports (receive work a NIC queue interrupt would put there); "+
		"CPU %d: iperf3 client and server (-A), the VMs' and hosts' TCP stacks (receive steered with RPS on the VM veths and on the internal ports), the wire bridge (RPS)", sw, app)
}

// NewTCPBench returns a TCPBench with o's defaults filled in.
func NewTCPBench(o TCPOptions) *TCPBench {
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	ver := ""
	if out, err := exec.Command("iperf3", "--version").Output(); err == nil {
		ver, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	return &TCPBench{Opt: o, TCP: &report.TCPReport{
		Runs: o.Runs, DurationSec: o.Duration.Seconds(), WarmupSec: o.Warmup.Seconds(), SwitchCPU: o.SwCPU, AppCPU: o.AppCPU,
		Placement: TCPPlacement(o.AppCPU, o.SwCPU), Iperf3: ver,
		CPUMethod: "utime+stime (/proc/<pid>/stat) of each host's switch process and of the NAPI threads of its underlay and VM ports, over the iperf3 client's run, per Gbit received; core busy shares from /proc/stat",
	}}
}

// RunSystem measures sys on every case, in one topology, and records the
// results (or why there are none).
func (b *TCPBench) RunSystem(t *testing.T, sys TCPSystem) {
	t.Helper()
	recorded := false
	failAll := func(msg string) {
		recorded = true
		for _, c := range b.Opt.Cases {
			b.TCP.Results = append(b.TCP.Results, report.TCPResult{System: sys.Name(), Path: c.Path, Offload: c.Offload, Streams: c.Streams, Error: msg})
		}
	}
	defer func() {
		if !recorded { // a helper stopped the test with t.Fatal
			failAll("set-up failed: see the test log")
		}
	}()
	tp := NewTCPTopo(t, b.Opt.AppCPU)
	if err := sys.Start(t, tp, b.Opt.SwCPU); err != nil {
		t.Errorf("%s: start: %v", sys.Name(), err)
		failAll("start: " + err.Error())
		return
	}
	for _, h := range tp.Hosts {
		for _, dev := range []string{h.Underlay, h.VMPort} {
			pids, err := ThreadedNAPI(h.NS, dev, b.Opt.SwCPU)
			if err != nil {
				t.Errorf("%s: %v", sys.Name(), err)
				failAll(err.Error())
				return
			}
			h.NAPIPIDs = append(h.NAPIPIDs, pids...)
		}
		// The internal port exists now: the host stack's receive work
		// goes to the application CPU, as the VMs'.
		if err := RPS(h.NS, "br1", b.Opt.AppCPU); err != nil {
			t.Errorf("%s: %v", sys.Name(), err)
			failAll(err.Error())
			return
		}
	}
	recorded = true
	for _, c := range b.Opt.Cases {
		r := b.runCase(t, tp, sys, c)
		if r.Error != "" {
			t.Logf("%s %s: %s", sys.Name(), c, r.Error)
		}
		b.TCP.Results = append(b.TCP.Results, r)
		if b.Opt.Profile && sys.Name() == report.SystemXswitch && r.Error == "" {
			b.profileIfMissed(t, tp, sys, c)
		}
	}
}

// runCase sets the VMs' offload for c, checks reachability, then measures.
func (b *TCPBench) runCase(t *testing.T, tp *TCPTopo, sys TCPSystem, c TCPCase) (r report.TCPResult) {
	r = report.TCPResult{System: sys.Name(), Path: c.Path, Offload: c.Offload, Streams: c.Streams, Mode: sys.Mode()}
	src, dst, dstIP := tp.Hosts[0].NS, tp.Hosts[1].NS, tp.Hosts[1].InnerIP
	if c.Path == report.TCPVMVM {
		src, dst, dstIP = tp.Hosts[0].VM, tp.Hosts[1].VM, tp.Hosts[1].VMIP
		if err := tp.SetVMTxOffload(c.Offload != report.OffloadTxOff); err != nil {
			r.Error = err.Error()
			return r
		}
	}
	// ICMP checksums are never offloaded: a ping works even where TCP
	// with partial checksums cannot.
	if err := Reachable(src, dstIP); err != nil {
		r.Error = err.Error()
		return r
	}
	if b.Opt.Warmup > 0 {
		// Its failure shows in the measured runs.
		_, _ = Iperf3(dst, src, dstIP, c.Streams, b.Opt.Warmup, b.Opt.AppCPU)
	}
	var cpu1, cpu2, swBusy, appBusy, retr []float64
	d0 := tp.Drops()
	defer func() { r.Drops = DropsSince(d0, tp.Drops()) }()
	for run := 0; run < b.Opt.Runs; run++ {
		m, err := b.measure(tp, sys, src, dst, dstIP, c.Streams, b.Opt.Duration)
		if err != nil {
			r.RunsGbps = append(r.RunsGbps, 0)
			r.Error = "failed: no data: " + err.Error()
			b.Opt.Log("  %-8s %-18s run %d: no data (%v)", sys.Name(), c, run+1, err)
			break // the next runs would fail the same way, each after a timeout
		}
		r.RunsGbps = append(r.RunsGbps, m.gbps)
		cpu1 = append(cpu1, m.cpuMsPerGbit[0])
		cpu2 = append(cpu2, m.cpuMsPerGbit[1])
		swBusy = append(swBusy, m.swBusy)
		appBusy = append(appBusy, m.appBusy)
		retr = append(retr, float64(m.retransmits))
		b.Opt.Log("  %-8s %-18s run %d: %6.2f Gbit/s, CPU ms/Gbit h1 %.1f h2 %.1f, switch CPU %.0f%%, app CPU %.0f%%, %d retransmits",
			sys.Name(), c, run+1, m.gbps, m.cpuMsPerGbit[0], m.cpuMsPerGbit[1], m.swBusy, m.appBusy, m.retransmits)
	}
	r.Finish()
	if r.Error != "" {
		// A case that fails in any run is recorded as 0: TCP through the
		// switch does not work reliably.
		r.Gbps = 0
		return r
	}
	r.CPUMsPerGbitHost1, r.CPUMsPerGbitHost2 = report.Median(cpu1), report.Median(cpu2)
	r.SwitchCPUBusyPct, r.AppCPUBusyPct = report.Median(swBusy), report.Median(appBusy)
	r.Retransmits = report.Median(retr)
	return r
}

type tcpMeasure struct {
	gbps         float64
	retransmits  int
	cpuMsPerGbit [2]float64
	swBusy       float64
	appBusy      float64
}

// measure runs iperf3 once and accounts the switches' CPU time over it.
func (b *TCPBench) measure(tp *TCPTopo, sys TCPSystem, src, dst string, dstIP netip.Addr, streams int, d time.Duration) (tcpMeasure, error) {
	var m tcpMeasure
	pids := func(i int) []int { return append(sys.PIDs(i), tp.Hosts[i].NAPIPIDs...) }
	c0 := [2]int64{ProcCPU(pids(0)), ProcCPU(pids(1))}
	s0, err := ReadCPUStat()
	if err != nil {
		return m, err
	}
	res, err := Iperf3(dst, src, dstIP, streams, d, b.Opt.AppCPU)
	if err != nil {
		return m, err
	}
	s1, err := ReadCPUStat()
	if err != nil {
		return m, err
	}
	c1 := [2]int64{ProcCPU(pids(0)), ProcCPU(pids(1))}
	gbit := float64(res.Bytes) * 8 / 1e9
	m.gbps = res.Gbps
	m.retransmits = res.Retransmits
	for i := range c0 {
		m.cpuMsPerGbit[i] = float64(c1[i]-c0[i]) / 1e6 / gbit
	}
	m.swBusy = s1.BusyPct(s0, b.Opt.SwCPU)
	m.appBusy = s1.BusyPct(s0, b.Opt.AppCPU)
	return m, nil
}

// profileIfMissed takes a perf profile of both switches during one more run
// of c when the goal judged on c is not met by the figures so far (the OVS
// figures come from the same run: OVS is measured first).
func (b *TCPBench) profileIfMissed(t *testing.T, tp *TCPTopo, sys TCPSystem, c TCPCase) {
	tmp := *b.TCP
	tmp.Compute()
	var missed *report.TCPGoal
	for i, g := range tmp.Goals {
		if g.Case == c.String() && g.Target > 0 && !g.Missing && !g.Met {
			missed = &tmp.Goals[i]
		}
	}
	if missed == nil {
		return
	}
	src, dst, dstIP := tp.Hosts[0].NS, tp.Hosts[1].NS, tp.Hosts[1].InnerIP
	if c.Path == report.TCPVMVM {
		src, dst, dstIP = tp.Hosts[0].VM, tp.Hosts[1].VM, tp.Hosts[1].VMIP
	}
	var pids []int
	for i, h := range tp.Hosts {
		pids = append(append(pids, sys.PIDs(i)...), h.NAPIPIDs...)
	}
	d := b.Opt.Duration
	done := make(chan error, 1)
	go func() {
		_, err := Iperf3(dst, src, dstIP, c.Streams, d+time.Second, b.Opt.AppCPU)
		done <- err
	}()
	time.Sleep(time.Second) // past the connection set-up
	top, perr := PerfRecord(pids, d-time.Second/2, 0.5)
	if err := <-done; err != nil {
		t.Logf("profile %s %s: iperf3: %v", sys.Name(), c, err)
		return
	}
	if perr != nil {
		t.Logf("profile %s %s: %v", sys.Name(), c, perr)
		return
	}
	b.Opt.Log("  %-8s %-18s goal %q %s: profiled", sys.Name(), c, missed.What, missed.Verdict())
	b.Profiles = append(b.Profiles, report.Profile{System: sys.Name(), Path: "tcp " + c.String(), Top: top,
		Method: fmt.Sprintf("goal %q %s: perf record -e cpu-clock -F 1999 of both hosts' switch processes and port NAPI threads, %v during one more iperf3 run of this case",
			missed.What, missed.Verdict(), d-time.Second/2)})
}

// IperfResult is what one iperf3 client run reported.
type IperfResult struct {
	Gbps        float64 // receiver
	Bytes       int64   // received
	Seconds     float64
	Retransmits int
}

var iperfPort atomic.Int32

// Iperf3 runs `iperf3 -s -1` in srvNS and `iperf3 -c dst -P streams -t d
// -J` in cliNS, both pinned to cpu, and returns the receiver's figures. A
// client that cannot connect gives up after 3 s; one that hangs is killed
// 10 s after d. An error means the run moved no (verified) data.
func Iperf3(srvNS, cliNS string, dst netip.Addr, streams int, d time.Duration, cpu int) (IperfResult, error) {
	port := strconv.Itoa(5300 + int(iperfPort.Add(1)%600))
	var srvOut strings.Builder
	srv := testnet.Cmd(srvNS, "iperf3", "-s", "-1", "-p", port, "-B", dst.String(), "-A", strconv.Itoa(cpu))
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 server in %s: %w", srvNS, err)
	}
	defer func() {
		_ = srv.Process.Kill() // gone already after a completed test (-1)
		_ = srv.Wait()
	}()
	if err := waitListen(srvNS, port, 5*time.Second); err != nil {
		return IperfResult{}, fmt.Errorf("%w: %s", err, srvOut.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	cli := exec.CommandContext(ctx, "ip", "netns", "exec", cliNS, "iperf3", "-c", dst.String(), "-p", port,
		"-t", secs, "-P", strconv.Itoa(streams), "-J", "-A", strconv.Itoa(cpu), "--connect-timeout", "3000")
	out, err := cli.Output()
	if ctx.Err() != nil {
		return IperfResult{}, fmt.Errorf("iperf3 client hung: killed after %v", d+10*time.Second)
	}
	res, perr := ParseIperf3(out)
	if perr != nil {
		return res, perr
	}
	if err != nil {
		return res, fmt.Errorf("iperf3 client: %w", err)
	}
	return res, nil
}

// ParseIperf3 reads `iperf3 -c -J` output: the receiver's bytes, seconds
// and rate and the sender's retransmits. A run with an error, or that
// received nothing, is an error.
func ParseIperf3(out []byte) (IperfResult, error) {
	var j struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes         int64   `json:"bytes"`
				Seconds       float64 `json:"seconds"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &j); err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 -J output: %w: %.200q", err, out)
	}
	s := j.End.SumReceived
	r := IperfResult{Gbps: s.BitsPerSecond / 1e9, Bytes: s.Bytes, Seconds: s.Seconds, Retransmits: j.End.SumSent.Retransmits}
	switch {
	case j.Error != "":
		return r, errors.New("iperf3: " + j.Error)
	case s.Bytes <= 0 || s.Seconds <= 0:
		return r, errors.New("iperf3: the receiver got no data")
	}
	return r, nil
}

// waitListen polls until a TCP socket listens on port in ns.
func waitListen(ns, port string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := testnet.Try(ns, "ss", "-Hltn", "sport = :"+port)
		if err == nil && strings.TrimSpace(out) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server in %s not listening on port %s after %v", ns, port, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CPUStat is the per-CPU time counters of /proc/stat (USER_HZ ticks).
type CPUStat map[int][2]uint64 // cpu → {busy, total}

// ReadCPUStat reads /proc/stat.
func ReadCPUStat() (CPUStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	return ParseCPUStat(string(b)), nil
}

// ParseCPUStat parses the "cpuN" lines of /proc/stat: busy is user, nice,
// system, irq, softirq and steal; total adds idle and iowait (guest time
// is already in user).
func ParseCPUStat(s string) CPUStat {
	st := CPUStat{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		var v [8]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
		st[n] = [2]uint64{busy, busy + v[3] + v[4]}
	}
	return st
}

// BusyPct is the busy share of cpu between an earlier reading and s, in %.
func (s CPUStat) BusyPct(earlier CPUStat, cpu int) float64 {
	a, b := earlier[cpu], s[cpu]
	if b[1] <= a[1] {
		return 0
	}
	return float64(b[0]-a[0]) / float64(b[1]-a[1]) * 100
}
