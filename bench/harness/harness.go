// Package harness drives `make bench`: for each system (xswitch, Open
// vSwitch's AF_XDP userspace datapath, the xsk l2fwd ceiling), path (encap,
// decap, local; fwd for the ceiling) and frame size it builds the topology
// generator → switch → sink in namespaces, pins the switch to one CPU and
// the generator to the other, learns the destination MACs, warms up, then
// measures the forwarded rate at the sink over fixed intervals and reports
// the median and spread (package report).
//
// The harness is driven from Go tests (bench_test.go): the namespace,
// Open vSwitch and xswitch helpers it uses clean up through testing.TB.
// bench/run.sh builds the test binary and runs TestBench with the options
// from the environment.
package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"xswitch/bench/internal/frames"
	"xswitch/bench/internal/gen"
	"xswitch/bench/internal/report"
	"xswitch/geneve"
	"xswitch/internal/rawsend"
	"xswitch/internal/testnet"
	"xswitch/internal/xdpcount"
)

// Options of a benchmark run.
type Options struct {
	Systems  []string // report.SystemXswitch, SystemOVS, SystemCeiling
	Paths    []string // encap, decap, local (the ceiling always runs path fwd)
	Sizes    []int
	Runs     int
	Interval time.Duration
	Warmup   time.Duration
	Flows    int
	GenCPU   int
	SwCPU    int
	Backend  gen.Backend // generator backend
	// Profile records where the switch's CPU goes (perf record, cpu-clock)
	// for ProfileTime after the runs at 64 bytes on encap and decap.
	Profile     bool
	ProfileTime time.Duration
	// PprofTime is how long the pprof profile samples (Go samples at
	// 100 Hz: 5 s of a busy core give a few hundred samples).
	PprofTime time.Duration
	// PprofDir keeps the pprof CPU profiles of xswitch (bench/swprof)
	// taken after the runs on encap and decap; empty: a temporary directory.
	PprofDir string
	// Latency pings through xswitch and Open vSwitch after their runs at
	// 64 bytes: LatencyProbes pings every LatencyInterval with no load,
	// then as many at half of the forwarded rate.
	Latency         bool
	LatencyProbes   int
	LatencyInterval time.Duration
	Log             func(format string, args ...any)
}

// System is one switch under test.
type System interface {
	Name() string
	// Start brings the switch up in tp.SW, forwarding tp.In ↔ tp.Out for
	// tp.Path, pinned to cpu. It sets tp.UnderlayMAC when the switch's
	// underlay MAC is not the interface's. Cleanup goes through t.
	Start(t testing.TB, tp *Topo, cpu int) error
	// Mode describes how the system runs its ports (after Start).
	Mode() string
	// Learned reports whether the switch's MAC table holds mac (a system
	// without one, the ceiling, says true).
	Learned(mac [6]byte) (bool, error)
}

// LearnedMAC is the destination of the generator's frames on tp.
func LearnedMAC(tp *Topo) [6]byte {
	if tp.Path == report.PathEncap {
		return RemoteVMMAC
	}
	return SinkMAC
}

// Bench accumulates results.
type Bench struct {
	Opt    Options
	Report report.Report
	mu     sync.Mutex
	perfOK bool
}

// New returns a Bench with o's defaults filled in.
func New(o Options) *Bench {
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = time.Second
	}
	if o.Flows <= 0 {
		o.Flows = 16
	}
	if o.Backend == "" {
		o.Backend = gen.BackendXSK
	}
	if o.ProfileTime <= 0 {
		o.ProfileTime = 2 * time.Second
	}
	if o.PprofTime <= 0 {
		o.PprofTime = 5 * time.Second
	}
	if o.LatencyProbes <= 0 {
		o.LatencyProbes = 200
	}
	if o.LatencyInterval <= 0 {
		o.LatencyInterval = 10 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	b := &Bench{Opt: o}
	b.perfOK = PerfCyclesWork()
	b.Report = report.Report{
		Time: time.Now().UTC(), Host: HostInfo(), Runs: o.Runs, IntervalSec: o.Interval.Seconds(),
		WarmupSec: o.Warmup.Seconds(), Flows: o.Flows, SwitchCPU: o.SwCPU, GenCPU: o.GenCPU,
		CPUMethod: "/proc/<pid>/stat utime+stime of every process in the switch namespace and of the NAPI thread of its ingress veth",
	}
	if b.perfOK {
		b.Report.CPUMethod = fmt.Sprintf("perf stat -C %d -e cycles", o.SwCPU)
	} else {
		b.Report.Notes = append(b.Report.Notes, "perf stat -e cycles is not supported here (no PMU in this VM): CPU time per packet from /proc/<pid>/stat instead of cycles")
	}
	return b
}

func (b *Bench) add(r report.Result) {
	b.mu.Lock()
	b.Report.Results = append(b.Report.Results, r)
	b.mu.Unlock()
}

// Spec returns the generator frames for path and size.
func Spec(tp *Topo, size, flows int) (frames.Spec, error) {
	s := frames.Spec{Size: size, Flows: flows, SrcMAC: FlowMAC, DstMAC: SinkMAC,
		SrcIP: InnerSrcIP, DstIP: InnerDstIP, SrcPort: 1024, DstPort: 5001}
	switch tp.Path {
	case report.PathEncap:
		s.DstMAC = RemoteVMMAC
	case report.PathDecap:
		c := geneve.DefaultEncapConfig()
		c.SrcMAC, c.DstMAC = GenMAC, tp.UnderlayMAC
		c.Src, c.Dst = PeerUnderlayIP, SwitchUnderlayIP
		c.VNI = VNI
		e, err := geneve.NewEncapsulator(c)
		if err != nil {
			return s, err
		}
		s.Encap = e
	}
	return s, nil
}

// Learn sends frames in the reverse direction so that the switch learns
// where the destination MAC of the generator's frames lives.
func Learn(tp *Topo) error {
	var f []byte
	bcast := [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	spec := frames.Spec{Size: 64, Flows: 1, SrcMAC: SinkMAC, DstMAC: bcast, SrcIP: InnerDstIP, DstIP: InnerSrcIP, SrcPort: 5001, DstPort: 1024}
	switch tp.Path {
	case report.PathFwd:
		return nil
	case report.PathEncap:
		// A frame from the VM behind the tunnel, arriving Geneve-encapsulated
		// from the sink (the remote tunnel endpoint).
		c := geneve.DefaultEncapConfig()
		c.SrcMAC, c.DstMAC = SinkMAC, tp.UnderlayMAC
		c.Src, c.Dst = PeerUnderlayIP, SwitchUnderlayIP
		c.VNI = VNI
		e, err := geneve.NewEncapsulator(c)
		if err != nil {
			return err
		}
		spec.SrcMAC, spec.Encap = RemoteVMMAC, e
	}
	fs, err := frames.Build(spec)
	if err != nil {
		return err
	}
	f = fs[0]
	for i := 0; i < 3; i++ {
		if err := testnet.Do(tp.Sink, func() error { return rawsend.Send(tp.SinkIf, [][]byte{f}, 1) }); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// RunSystem measures sys on path at every size in b.Opt.Sizes, each in the
// same topology, and records the results (or the error) in the report.
func (b *Bench) RunSystem(t *testing.T, sys System, path string) {
	t.Helper()
	recorded := false
	fail := func(err error) {
		recorded = true
		for _, size := range b.Opt.Sizes {
			b.add(report.Result{System: sys.Name(), Path: path, Size: size, Error: err.Error()})
		}
		t.Errorf("%s %s: %v", sys.Name(), path, err)
	}
	defer func() {
		if !recorded { // a helper stopped the test with t.Fatal
			for _, size := range b.Opt.Sizes {
				b.add(report.Result{System: sys.Name(), Path: path, Size: size, Error: "set-up failed: see the test log"})
			}
		}
	}()
	tp := NewTopo(t, path)
	if err := sys.Start(t, tp, b.Opt.SwCPU); err != nil {
		fail(fmt.Errorf("start: %w", err))
		return
	}
	var ctr *xdpcount.Counter
	if err := testnet.Do(tp.Sink, func() (err error) { ctr, err = xdpcount.Attach(tp.SinkIf, "native"); return err }); err != nil {
		fail(err)
		return
	}
	defer ctr.Close()
	napi, err := ThreadedNAPI(tp.SW, tp.In, b.Opt.SwCPU)
	if err != nil {
		fail(err)
		return
	}
	tp.NAPIPIDs = napi
	sinkNAPI, err := ThreadedNAPI(tp.Sink, tp.SinkIf, b.Opt.GenCPU)
	if err != nil {
		fail(err)
		return
	}
	tp.SinkNAPIPIDs = sinkNAPI
	if err := Learn(tp); err != nil {
		fail(fmt.Errorf("learn: %w", err))
		return
	}
	dst := LearnedMAC(tp)
	for i := 0; ; i++ {
		ok, err := sys.Learned(dst)
		if err == nil && ok {
			break
		}
		if i == 20 {
			fail(fmt.Errorf("destination %v not learned (err %v): the runs would measure flooding", net.HardwareAddr(dst[:]), err))
			return
		}
		if i%5 == 4 {
			if err := Learn(tp); err != nil {
				fail(fmt.Errorf("learn: %w", err))
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	recorded = true
	var rs []report.Result
	defer func() {
		for _, r := range rs {
			b.add(r)
		}
	}()
	for i, size := range b.Opt.Sizes {
		warmup := b.Opt.Warmup
		if i == 0 {
			// A fresh topology: the first seconds under load are
			// sometimes much slower (the switch's threads and the NAPI
			// thread beside them on its CPU settle).
			warmup *= 2
		}
		r := b.measure(t, tp, sys, ctr, size, warmup)
		if r.Error != "" {
			t.Errorf("%s %s %d: %s", sys.Name(), path, size, r.Error)
		}
		rs = append(rs, r)
	}
	for i := range rs {
		// Last but for the profiles: the probes give the namespaces
		// addresses.
		if r := &rs[i]; b.Opt.Latency && r.Size == 64 && r.Mpps > 0 && sys.Name() != report.SystemCeiling {
			r.Latency = b.latency(t, tp, r, ctr)
			if r.Latency.Error != "" {
				t.Errorf("%s %s latency: %s", sys.Name(), path, r.Latency.Error)
			}
		}
	}
	if pp, ok := sys.(Pprofer); ok && b.Opt.Profile && (path == report.PathEncap || path == report.PathDecap) {
		// Last: it may restart the switch.
		if err := b.pprof(t, tp, sys, pp, ctr); err != nil {
			t.Logf("pprof %s %s: %v", sys.Name(), path, err)
		}
	}
}

// startGen opens the generator on tp for frames of size and runs it at
// full speed until the returned stop is called.
func (b *Bench) startGen(t *testing.T, tp *Topo, size int) (g *gen.Generator, stop func(), err error) {
	return b.startGenWith(t, tp, size, nil)
}

// startGenWith is startGen with the generator's configuration changed by
// set (a rate, a burst, ...).
func (b *Bench) startGenWith(t *testing.T, tp *Topo, size int, set func(*gen.Config)) (g *gen.Generator, stop func(), err error) {
	spec, err := Spec(tp, size, b.Opt.Flows)
	if err != nil {
		return nil, nil, err
	}
	fs, err := frames.Build(spec)
	if err != nil {
		return nil, nil, err
	}
	if err := testnet.Do(tp.Gen, func() (err error) {
		c := gen.Config{Interface: tp.GenIf, Frames: fs, CPU: b.Opt.GenCPU, Backend: b.Opt.Backend, Logger: zap.NewNop()}
		if set != nil {
			set(&c)
		}
		g, err = gen.Open(c)
		return err
	}); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	return g, func() {
		cancel()
		if err := <-done; err != nil {
			t.Logf("generator: %v", err)
		}
		g.Close()
	}, nil
}

// pprof takes a Go CPU profile of sys under load at 64 bytes and records
// its top functions, with the rate forwarded right after (to compare with
// the measured runs).
func (b *Bench) pprof(t *testing.T, tp *Topo, sys System, pp Pprofer, ctr *xdpcount.Counter) error {
	dir := b.Opt.PprofDir
	if dir == "" {
		dir = t.TempDir()
	}
	file := filepath.Join(dir, fmt.Sprintf("%s-%s-%s-64.pprof", b.Report.Time.Format("20060102T150405Z"), sys.Name(), tp.Path))
	_, stop, err := b.startGen(t, tp, 64)
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(b.Opt.Warmup)
	if err := pp.Pprof(t, tp, b.Opt.SwCPU, b.Opt.PprofTime, file); err != nil {
		return err
	}
	c0, err := ctr.Read()
	if err != nil {
		return err
	}
	t0 := time.Now()
	time.Sleep(time.Second)
	c1, err := ctr.Read()
	if err != nil {
		return err
	}
	mpps := float64(c1.Sub(c0).Packets) / time.Since(t0).Seconds() / 1e6
	top, total, err := PprofTop(file, 1)
	if err != nil {
		return err
	}
	b.Opt.Log("  %-8s %-6s    64 B  pprof: %s; %.3f Mpps forwarded by bench/swprof right after", sys.Name(), tp.Path, total, mpps)
	p := report.Profile{System: sys.Name(), Path: tp.Path, Size: 64, Top: top,
		Method: fmt.Sprintf("pprof CPU profile of the switch's Go threads (bench/swprof: package switch in-process), %v at full load; %s; %.3f Mpps forwarded right after", b.Opt.PprofTime, total, mpps)}
	if b.Opt.PprofDir != "" {
		p.File = file
	}
	b.mu.Lock()
	b.Report.Profiles = append(b.Report.Profiles, p)
	b.mu.Unlock()
	return nil
}

// measure runs the generator at full speed on tp and samples the sink.
func (b *Bench) measure(t *testing.T, tp *Topo, sys System, ctr *xdpcount.Counter, size int, warmup time.Duration) report.Result {
	o := b.Opt
	r := report.Result{System: sys.Name(), Path: tp.Path, Size: size, Mode: sys.Mode()}
	r.SinkFrameLen = size
	if tp.Path == report.PathEncap {
		r.SinkFrameLen = size + geneve.IPv4Overhead
	}
	g, stop, err := b.startGen(t, tp, size)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer stop()

	time.Sleep(warmup)
	pids := func() []int { return append(NamespacePIDs(tp.SW), tp.NAPIPIDs...) }
	var offered, cpuNs, cycles []float64
	var cpuUtil []float64
	var ctx []ctxRun
	for run := 0; run < o.Runs; run++ {
		var perf *PerfCycles
		if b.perfOK {
			perf = StartPerfCycles(o.SwCPU, o.Interval)
		}
		p := pids()
		cm := newCtxMeter(NamespacePIDs(tp.SW), tp.NAPIPIDs, tp.SinkNAPIPIDs)
		cpu0 := ProcCPU(p)
		c0, err := ctr.Read()
		if err != nil {
			r.Error = err.Error()
			return r
		}
		s0, t0 := g.Sent(), time.Now()
		time.Sleep(o.Interval)
		c1, err := ctr.Read()
		if err != nil {
			r.Error = err.Error()
			return r
		}
		s1, t1 := g.Sent(), time.Now()
		cpu1 := ProcCPU(p)
		dt := t1.Sub(t0).Seconds()
		d := c1.Sub(c0)
		ctx = append(ctx, cm.done(d.Packets, t1.Sub(t0).Nanoseconds()))
		mpps := float64(d.Packets) / dt / 1e6
		r.RunsMpps = append(r.RunsMpps, mpps)
		offered = append(offered, float64(s1-s0)/dt/1e6)
		if d.Packets > 0 {
			cpuNs = append(cpuNs, float64(cpu1-cpu0)/float64(d.Packets))
			if perf != nil {
				if c, err := perf.Wait(); err == nil {
					cycles = append(cycles, float64(c)/float64(d.Packets))
				} else {
					t.Logf("perf: %v", err)
				}
			}
		}
		cpuUtil = append(cpuUtil, float64(cpu1-cpu0)/float64(t1.Sub(t0).Nanoseconds())*100)
		cs := ctx[len(ctx)-1]
		o.Log("  %-8s %-6s %5d B  run %d: %7.3f Mpps forwarded, %7.3f Mpps offered; ctx switches/kpkt vol/invol: switch %.1f/%.1f, fwd threads %.1f/%.1f, napi in %.1f/%.1f, out %.1f/%.1f",
			sys.Name(), tp.Path, size, run+1, mpps, offered[len(offered)-1], cs.sw[0], cs.sw[1], cs.fwd[0], cs.fwd[1], cs.napiIn[0], cs.napiIn[1], cs.napiOut[0], cs.napiOut[1])
	}
	r.Finish(offered)
	if o.Profile && size == 64 && (tp.Path == report.PathEncap || tp.Path == report.PathDecap) {
		top, err := PerfRecord(pids(), o.ProfileTime, 0.5)
		if err != nil {
			t.Logf("profile %s %s: %v", sys.Name(), tp.Path, err)
		} else {
			b.mu.Lock()
			b.Report.Profiles = append(b.Report.Profiles, report.Profile{System: sys.Name(), Path: tp.Path, Size: size,
				Method: fmt.Sprintf("perf record -e cpu-clock -F 1999, every process in the switch namespace, %v at full load", o.ProfileTime), Top: top})
			b.mu.Unlock()
		}
	}
	r.CtxSw = ctxMedians(ctx)
	r.CPUNsPerPkt = report.Median(cpuNs)
	r.CPUUtilPct = report.Median(cpuUtil)
	r.CyclesPerPkt = report.Median(cycles)
	if r.Mpps == 0 {
		r.Error = fmt.Sprintf("nothing forwarded (generator offered %.3f Mpps)", r.OfferedMpps)
	}
	// BENCH_SWITCH_STATS=1: the switch's own counters after the runs (where
	// the frames the sink did not get were dropped).
	if st, ok := sys.(interface{ Stats() string }); ok && os.Getenv("BENCH_SWITCH_STATS") == "1" {
		t.Logf("%s %s %d B: switch counters after the runs:\n%s", sys.Name(), tp.Path, size, st.Stats())
	}
	return r
}

// NamespacePIDs lists the processes in ns (ip netns pids).
func NamespacePIDs(ns string) []int {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// clockTick is USER_HZ: /proc/<pid>/stat times are in these units.
const clockTick = 100

// ProcCPU returns the user+system CPU time of pids (all their threads) in ns.
func ProcCPU(pids []int) int64 {
	var total int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] is field 3 (state); utime and stime are fields 14 and 15.
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += (ut + st) * (1e9 / clockTick)
	}
	return total
}

// PerfCyclesWork reports whether `perf stat -e cycles` counts here.
func PerfCyclesWork() bool {
	out, err := exec.Command("perf", "stat", "-x,", "-e", "cycles", "true").CombinedOutput()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 2 && strings.HasPrefix(f[2], "cycles") {
			_, err := strconv.ParseUint(f[0], 10, 64)
			return err == nil
		}
	}
	return false
}

// PerfCycles is a running `perf stat -C cpu -e cycles`.
type PerfCycles struct {
	cmd *exec.Cmd
	out strings.Builder
}

// StartPerfCycles counts cycles on cpu for d.
func StartPerfCycles(cpu int, d time.Duration) *PerfCycles {
	p := &PerfCycles{}
	p.cmd = exec.Command("perf", "stat", "-x,", "-C", strconv.Itoa(cpu), "-e", "cycles", "--", "sleep", fmt.Sprintf("%.3f", d.Seconds()))
	p.cmd.Stderr = &p.out
	if err := p.cmd.Start(); err != nil {
		p.cmd = nil
	}
	return p
}

// Wait returns the cycles counted.
func (p *PerfCycles) Wait() (uint64, error) {
	if p.cmd == nil {
		return 0, fmt.Errorf("perf did not start")
	}
	if err := p.cmd.Wait(); err != nil {
		return 0, fmt.Errorf("perf stat: %w: %s", err, p.out.String())
	}
	for _, line := range strings.Split(p.out.String(), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 2 && strings.HasPrefix(f[2], "cycles") {
			return strconv.ParseUint(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("perf stat: no cycles in %q", p.out.String())
}

// HostInfo describes this machine.
func HostInfo() report.Host {
	h := report.Host{NumCPU: numCPU(), Go: goVersion()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				if i := strings.IndexByte(line, ':'); i >= 0 {
					h.CPU = strings.TrimSpace(line[i+1:])
				}
				break
			}
		}
	}
	return h
}

// Pin moves every thread of pid to cpu (taskset -a -p).
func Pin(pid, cpu int) error {
	if out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(cpu), strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return fmt.Errorf("taskset pid %d to CPU %d: %w: %s", pid, cpu, err, out)
	}
	return nil
}
