package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"xswitch/bench/internal/report"
)

// PerfRecord samples the CPU time of pids for d with `perf record -e
// cpu-clock` (a software clock: it works without a PMU, as in this VM) and
// returns the functions that took at least minPct of the samples.
func PerfRecord(pids []int, d time.Duration, minPct float64) ([]report.ProfileEntry, error) {
	if len(pids) == 0 {
		return nil, fmt.Errorf("perf record: no processes")
	}
	dir, err := os.MkdirTemp("", "xswitch-bench-perf-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "perf.data")
	ps := make([]string, len(pids))
	for i, p := range pids {
		ps[i] = strconv.Itoa(p)
	}
	if out, err := exec.Command("perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-p", strings.Join(ps, ","),
		"-o", data, "--", "sleep", fmt.Sprintf("%.2f", d.Seconds())).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("perf record: %w: %s", err, out)
	}
	out, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
		"-F", "overhead,comm,dso,sym", "--percent-limit", fmt.Sprint(minPct)).Output()
	if err != nil {
		return nil, fmt.Errorf("perf report: %w", err)
	}
	return ParsePerfReport(string(out)), nil
}

// ParsePerfReport reads the lines of `perf report --stdio -F
// overhead,comm,dso,sym`:
//
//	12.34%  pmd-c01/id:3  ovs-vswitchd  [.] dp_netdev_input__
func ParsePerfReport(s string) []report.ProfileEntry {
	var es []report.ProfileEntry
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasSuffix(f[0], "%") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		if err != nil {
			continue
		}
		// The symbol follows the [.] or [k] marker.
		i := 3
		for i < len(f) && f[i] != "[.]" && f[i] != "[k]" {
			i++
		}
		if i >= len(f)-1 {
			continue
		}
		es = append(es, report.ProfileEntry{Pct: pct, Thread: f[1], Object: strings.Join(f[2:i], " "),
			Kernel: f[i] == "[k]", Symbol: strings.Join(f[i+1:], " ")})
	}
	return es
}
