package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"xswitch/bench/internal/report"
)

// threadUse is one thread's CPU time and context switches.
type threadUse struct {
	cpuNs       int64
	vol, nonvol uint64
	isPMD       bool
}

// threadSnap is every thread of some processes (and kernel threads), by tid.
type threadSnap map[int]threadUse

// snapThreads reads /proc/<pid>/task/*/{stat,status} of every thread of
// pids (a kernel thread is its own only task).
func snapThreads(pids []int) threadSnap {
	s := threadSnap{}
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			continue
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if u, ok := readThread(pid, tid); ok {
				s[tid] = u
			}
		}
	}
	return s
}

// readThread reads one thread's CPU time (stat: utime + stime) and its
// voluntary and involuntary context switches (status).
func readThread(pid, tid int) (threadUse, bool) {
	dir := fmt.Sprintf("/proc/%d/task/%d/", pid, tid)
	st, err := os.ReadFile(dir + "stat")
	if err != nil {
		return threadUse{}, false
	}
	var u threadUse
	s := string(st)
	if i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')'); i >= 0 && j > i {
		// Open vSwitch's poll-mode threads are named pmd-c<core>/id:<n>.
		u.isPMD = strings.HasPrefix(s[i+1:j], "pmd")
		f := strings.Fields(s[j+1:])
		if len(f) >= 13 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			stime, _ := strconv.ParseInt(f[12], 10, 64)
			u.cpuNs = (ut + stime) * (1e9 / clockTick)
		}
	}
	status, err := os.ReadFile(dir + "status")
	if err != nil {
		return threadUse{}, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "voluntary_ctxt_switches":
			u.vol = n
		case "nonvoluntary_ctxt_switches":
			u.nonvol = n
		}
	}
	return u, true
}

// busyShare is the CPU share over an interval from which a thread counts as
// one of the system's forwarding threads (pollers, PMDs, l2fwd's loop).
const busyShare = 0.10

// ctxDelta sums the context switches between two snapshots: of all the
// threads in after (threads gone by then are left out), and of the
// forwarding threads: Open vSwitch's PMD threads, or for the others the
// threads that used at least busyShare of a CPU over intervalNs.
func ctxDelta(before, after threadSnap, intervalNs int64) (all, fwd [2]uint64) {
	anyPMD := false
	for _, u := range after {
		anyPMD = anyPMD || u.isPMD
	}
	for tid, a := range after {
		b := before[tid] // a thread born in the interval starts from 0
		d := [2]uint64{a.vol - b.vol, a.nonvol - b.nonvol}
		if a.vol < b.vol || a.nonvol < b.nonvol {
			continue // a reused tid
		}
		all[0] += d[0]
		all[1] += d[1]
		if anyPMD && a.isPMD || !anyPMD && float64(a.cpuNs-b.cpuNs) >= busyShare*float64(intervalNs) {
			fwd[0] += d[0]
			fwd[1] += d[1]
		}
	}
	return all, fwd
}

// ctxRun is one run's context switches per 1000 forwarded packets.
type ctxRun struct {
	sw, fwd, napiIn, napiOut [2]float64
}

// ctxMeter takes the snapshots of one run.
type ctxMeter struct {
	sw, napiIn, napiOut []int
	b0, n0, o0          threadSnap
}

func newCtxMeter(sw, napiIn, napiOut []int) *ctxMeter {
	m := &ctxMeter{sw: sw, napiIn: napiIn, napiOut: napiOut}
	m.b0, m.n0, m.o0 = snapThreads(sw), snapThreads(napiIn), snapThreads(napiOut)
	return m
}

// done returns the run's figures for packets forwarded in intervalNs.
func (m *ctxMeter) done(packets uint64, intervalNs int64) ctxRun {
	var r ctxRun
	if packets == 0 {
		return r
	}
	per := func(d [2]uint64) [2]float64 {
		return [2]float64{float64(d[0]) * 1000 / float64(packets), float64(d[1]) * 1000 / float64(packets)}
	}
	all, fwd := ctxDelta(m.b0, snapThreads(m.sw), intervalNs)
	in, _ := ctxDelta(m.n0, snapThreads(m.napiIn), intervalNs)
	out, _ := ctxDelta(m.o0, snapThreads(m.napiOut), intervalNs)
	r.sw, r.fwd, r.napiIn, r.napiOut = per(all), per(fwd), per(in), per(out)
	return r
}

// ctxMedians folds the runs into the report's medians.
func ctxMedians(runs []ctxRun) *report.CtxSwitches {
	if len(runs) == 0 {
		return nil
	}
	col := func(get func(ctxRun) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = get(r)
		}
		return report.Median(xs)
	}
	return &report.CtxSwitches{
		SwitchVol: col(func(r ctxRun) float64 { return r.sw[0] }), SwitchInvol: col(func(r ctxRun) float64 { return r.sw[1] }),
		FwdVol: col(func(r ctxRun) float64 { return r.fwd[0] }), FwdInvol: col(func(r ctxRun) float64 { return r.fwd[1] }),
		NAPIInVol: col(func(r ctxRun) float64 { return r.napiIn[0] }), NAPIInInvol: col(func(r ctxRun) float64 { return r.napiIn[1] }),
		NAPIOutVol: col(func(r ctxRun) float64 { return r.napiOut[0] }), NAPIOutInvol: col(func(r ctxRun) float64 { return r.napiOut[1] }),
	}
}
