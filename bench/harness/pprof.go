package harness

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/bench/internal/report"
	"xswitch/internal/testnet"
)

// Pprofer is a system that can record a Go CPU profile (pprof) of itself
// under load.
type Pprofer interface {
	// Pprof profiles the switch for d while the generator runs and writes
	// the profile to file. It may restart the switch; the topology is not
	// measured again afterwards.
	Pprof(t testing.TB, tp *Topo, cpu int, d time.Duration, file string) error
}

// Pprof replaces the running xswitch by bench/swprof, the same data plane
// (package switch, set up as `xswitch run` does) with Go's CPU profiler:
// same configuration, namespace and CPU. It teaches it the destination MAC
// again, waits until it is learned, and profiles for d.
func (s *Xswitch) Pprof(t testing.TB, tp *Topo, cpu int, d time.Duration, file string) error {
	if err := s.x.Stop(); err != nil {
		return fmt.Errorf("stop xswitch: %w", err)
	}
	dst := LearnedMAC(tp)
	c := testnet.Cmd(tp.SW, filepath.Join(Binaries(t), "swprof"), "-config", s.x.ConfigPath(),
		"-learned", net.HardwareAddr(dst[:]).String(), "-o", file, "-duration", d.String())
	var errb strings.Builder
	c.Stderr = &errb
	stdout, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start swprof: %w", err)
	}
	exited := make(chan struct{})
	go func() { c.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-exited
		}
	})
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
	}()
	wait := func(want string, timeout time.Duration, tick func()) error {
		deadline := time.After(timeout)
		every := time.NewTicker(500 * time.Millisecond)
		defer every.Stop()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return fmt.Errorf("swprof exited before %q: %s", want, errb.String())
				}
				if l == want {
					return nil
				}
			case <-every.C:
				if tick != nil {
					tick()
				}
			case <-deadline:
				return fmt.Errorf("swprof: no %q after %v: %s", want, timeout, errb.String())
			}
		}
	}
	if err := wait("ready", 30*time.Second, nil); err != nil {
		return err
	}
	for _, pid := range NamespacePIDs(tp.SW) {
		if err := Pin(pid, cpu); err != nil {
			return err
		}
	}
	learn := func() {
		if err := Learn(tp); err != nil {
			t.Logf("learn: %v", err)
		}
	}
	learn()
	if err := wait("learned", 10*time.Second, learn); err != nil {
		return err
	}
	time.Sleep(time.Second) // warm up
	if err := c.Process.Signal(syscall.SIGUSR1); err != nil {
		return fmt.Errorf("signal swprof: %w", err)
	}
	return wait("profiled", d+10*time.Second, nil)
}

// PprofTop reads a CPU profile with `go tool pprof -top` and returns the
// functions that took at least minPct of the samples, and the header line
// with the sampled duration and CPU time.
func PprofTop(file string, minPct float64) ([]report.ProfileEntry, string, error) {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=40", file).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return nil, "", fmt.Errorf("go tool pprof %s: %w: %s", file, err, msg)
	}
	es, total := ParsePprofTop(string(out))
	var keep []report.ProfileEntry
	for _, e := range es {
		if e.Pct >= minPct || e.CumPct >= 5 {
			keep = append(keep, e)
		}
	}
	return keep, total, nil
}

// ParsePprofTop reads the output of `go tool pprof -top`:
//
//	Duration: 3s, Total samples = 2.91s (97.00%)
//	      flat  flat%   sum%        cum   cum%
//	     0.50s 17.18% 17.18%      0.52s 17.87%  internal/runtime/syscall.Syscall6
func ParsePprofTop(s string) (es []report.ProfileEntry, total string) {
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "Duration:") {
			total = line
			continue
		}
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") || !strings.HasSuffix(f[4], "%") {
			continue
		}
		flat, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		es = append(es, report.ProfileEntry{Pct: flat, CumPct: cum, Thread: "xswitch (Go)", Object: "pprof",
			Symbol: strings.Join(f[5:], " ")})
	}
	return es, total
}
