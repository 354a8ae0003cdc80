package harness

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xswitch/bench/internal/report"
	"xswitch/internal/e2e"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries builds the bench commands (l2fwd, swprof) once per process into a
// temporary directory (e2e.ProcessDir: removed when the tests end, see
// main_test.go) and returns it. BENCH_BIN_DIR, when set by run.sh, points at
// binaries built already.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if d := envBinDir(); d != "" {
			buildDir = d
			return
		}
		dir, err := e2e.ProcessDir("xswitch-bench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		out, err := exec.Command("go", "build", "-o", dir+"/", "xswitch/bench/l2fwd", "xswitch/bench/swprof").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build bench/l2fwd bench/swprof: %w\n%s", err, out)
			return
		}
		buildDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// L2fwd is the ceiling: bench/l2fwd forwarding tp.In → tp.Out with no
// switching, pinned to the switch CPU.
type L2fwd struct {
	mode   string
	stderr *strings.Builder
}

// L2fwdArgs are extra bench/l2fwd flags (BENCH_L2FWD_ARGS).
var L2fwdArgs []string

func newL2fwd(t *testing.T) System { return &L2fwd{} }

// Name implements System.
func (s *L2fwd) Name() string { return report.SystemCeiling }

// Mode implements System.
func (s *L2fwd) Mode() string { return s.mode }

// Start implements System.
func (s *L2fwd) Start(t testing.TB, tp *Topo, cpu int) error {
	bin := filepath.Join(Binaries(t), "l2fwd")
	args := append([]string{"-c", strconv.Itoa(cpu), "ip", "netns", "exec", tp.SW, bin,
		"-in", tp.In, "-out", tp.Out, "-cpu", strconv.Itoa(cpu), "-q"}, L2fwdArgs...)
	c := exec.Command("taskset", args...)
	var errb strings.Builder
	c.Stderr = &errb
	s.stderr = &errb
	stdout, err := c.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start l2fwd: %w", err)
	}
	exited := make(chan error, 1)
	go func() {
		// Drain stdout after the ready line so l2fwd never blocks on it.
		sc := bufio.NewScanner(stdout)
		ready := make(chan string, 1)
		go func() {
			for sc.Scan() {
				if line := sc.Text(); strings.HasPrefix(line, "ready:") {
					select {
					case ready <- line:
					default:
					}
				}
			}
		}()
		select {
		case line := <-ready:
			s.mode = "xsk " + strings.TrimSpace(strings.TrimPrefix(line, "ready:"))
			exited <- nil
		case <-time.After(20 * time.Second):
			exited <- fmt.Errorf("l2fwd not ready after 20s: %s", errb.String())
		}
	}()
	t.Cleanup(func() {
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
		t.Logf("l2fwd: %s", strings.TrimSpace(errb.String()))
	})
	if err := <-exited; err != nil {
		return err
	}
	return nil
}

// Learned implements System: l2fwd has no MAC table.
func (s *L2fwd) Learned([6]byte) (bool, error) { return true, nil }
