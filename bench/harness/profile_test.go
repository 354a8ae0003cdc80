package harness

import (
	"os"
	"testing"
	"time"
)

func TestParsePerfReport(t *testing.T) {
	in := `# Samples: 999  of event 'cpu-clock'
#
# Overhead  Command       Shared Object      Symbol
# ........  ............  .................  ......
#
    15.42%  xswitch       xswitch            [.] xswitch/switch.(*poller).run
     9.71%  pmd-c01/id:6  [kernel.kallsyms]  [k] __xsk_generic_xmit
     4.10%  sh            libc.so.6          [.] operator new(unsigned long)
garbage line
`
	es := ParsePerfReport(in)
	if len(es) != 3 {
		t.Fatalf("got %d entries: %+v", len(es), es)
	}
	if es[0].Pct != 15.42 || es[0].Thread != "xswitch" || es[0].Object != "xswitch" || es[0].Kernel || es[0].Symbol != "xswitch/switch.(*poller).run" {
		t.Errorf("entry 0: %+v", es[0])
	}
	if !es[1].Kernel || es[1].Symbol != "__xsk_generic_xmit" || es[1].Thread != "pmd-c01/id:6" {
		t.Errorf("entry 1: %+v", es[1])
	}
	if es[2].Symbol != "operator new(unsigned long)" {
		t.Errorf("entry 2: %+v", es[2])
	}
}

func TestProcCPUAndPids(t *testing.T) {
	if got := ProcCPU([]int{1 << 30}); got != 0 {
		t.Errorf("CPU of a missing process: %d", got)
	}
	for end := time.Now().Add(60 * time.Millisecond); time.Now().Before(end); {
	}
	if got := ProcCPU([]int{os.Getpid()}); got <= 0 {
		t.Errorf("CPU of this process after spinning: %d ns", got)
	}
	if numCPU() < 1 {
		t.Errorf("numCPU %d", numCPU())
	}
}

func TestParsePprofTop(t *testing.T) {
	in := `File: swprof
Type: cpu
Duration: 3.01s, Total samples = 1.20s (39.87%)
Showing nodes accounting for 1.10s, 91.67% of 1.20s total
      flat  flat%   sum%        cum   cum%
     0.60s 50.00% 50.00%      0.60s 50.00%  internal/runtime/syscall.Syscall6
     0.05s  4.17% 54.17%      0.40s 33.33%  xswitch/xsk.(*Socket).Transmit
         0     0% 54.17%      0.90s 75.00%  xswitch/switch.(*poller).run
`
	es, total := ParsePprofTop(in)
	if total != "Duration: 3.01s, Total samples = 1.20s (39.87%)" {
		t.Errorf("total %q", total)
	}
	if len(es) != 3 {
		t.Fatalf("got %d entries: %+v", len(es), es)
	}
	if es[0].Pct != 50 || es[0].CumPct != 50 || es[0].Symbol != "internal/runtime/syscall.Syscall6" {
		t.Errorf("entry 0: %+v", es[0])
	}
	if es[2].Pct != 0 || es[2].CumPct != 75 || es[2].Symbol != "xswitch/switch.(*poller).run" {
		t.Errorf("entry 2: %+v", es[2])
	}
}
