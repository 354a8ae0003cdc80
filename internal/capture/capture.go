// Package capture records traffic with tcpdump inside a network namespace
// and decodes Geneve frames with tshark (Wireshark's dissectors), so that
// tests assert what a standard dissector says is on the wire rather than what
// our own parser believes.
package capture

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/testnet"
	"xswitch/internal/wait"
)

// Capture is a running tcpdump writing a pcap file.
type Capture struct {
	NS, Iface string
	// Path is the pcap file (in the test's temporary directory).
	Path string

	cmd     *exec.Cmd
	mu      sync.Mutex
	stderr  bytes.Buffer
	done    chan error
	stopped bool
	waitErr error
	stats   chan tcpdumpStats // the counts tcpdump prints on SIGUSR1
}

// ringKiB is the size of tcpdump's capture ring (-B).
const ringKiB = 16384

// FlushTimeout bounds how long Stop waits for tcpdump to write what the
// kernel has handed it.
const FlushTimeout = 10 * time.Second

// tcpdumpStats is one line tcpdump prints on SIGUSR1.
type tcpdumpStats struct {
	captured uint64 // handed to tcpdump's callback and written (with -U: flushed)
	received uint64 // passed the capture filter in the kernel
	dropped  uint64 // dropped by the kernel (ring full): never reach tcpdump
}

var statsLine = regexp.MustCompile(`(\d+) packets? captured, (\d+) packets? received by filter, (\d+) packets? dropped by kernel`)

func parseStats(line string) (tcpdumpStats, bool) {
	m := statsLine.FindStringSubmatch(line)
	if m == nil {
		return tcpdumpStats{}, false
	}
	var v [3]uint64
	for i := range v {
		n, err := strconv.ParseUint(m[i+1], 10, 64)
		if err != nil {
			return tcpdumpStats{}, false
		}
		v[i] = n
	}
	return tcpdumpStats{captured: v[0], received: v[1], dropped: v[2]}, true
}

// Start runs `tcpdump -i IFACE -s 0 -U -w FILE FILTER...` in ns and returns
// once tcpdump is listening. The capture is stopped at t's cleanup if the
// test did not stop it. On a Linux bridge device tcpdump's promiscuous mode
// makes the bridge pass up every frame it forwards, so capturing on the
// wire namespace's bridge sees the traffic between all its ports.
func Start(t testing.TB, ns, iface string, filter ...string) *Capture {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatalf("capture: tcpdump not found: %v (make deps)", err)
	}
	c := &Capture{NS: ns, Iface: iface, Path: filepath.Join(t.TempDir(), iface+".pcap"), done: make(chan error, 1), stats: make(chan tcpdumpStats, 16)}
	// -Z root: Debian's tcpdump otherwise drops to user tcpdump and cannot
	// write into the test's directory. -U and --immediate-mode: deliver and write each packet at once, or
	// packets still in the kernel ring at SIGINT are lost.
	// -B: libpcap sizes each slot of its ring for the largest (offloaded)
	// frame, 64 KiB on veth; tcpdump's default 2 MiB holds only about 30
	// of them, too few for a burst.
	args := append([]string{"-i", iface, "-s", "0", "-B", strconv.Itoa(ringKiB), "-U", "--immediate-mode", "-n", "-Z", "root", "-w", c.Path}, filter...)
	c.cmd = testnet.Cmd(ns, "tcpdump", args...)
	pr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("capture: start tcpdump in %s: %v", ns, err)
	}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			if st, ok := parseStats(sc.Text()); ok {
				select {
				case c.stats <- st:
				default: // nobody asked for it
				}
				continue
			}
			c.mu.Lock()
			c.stderr.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			if !once && strings.Contains(sc.Text(), "listening on") {
				once = true
				close(listening)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		c.done <- c.cmd.Wait()
	}()
	t.Cleanup(func() { _, _ = c.Stop() })
	select {
	case <-listening:
		return c
	case err := <-c.done:
		c.done <- err
		t.Fatalf("capture: tcpdump -i %s in %s exited: %v: %s", iface, ns, err, c.Stderr())
	case <-time.After(10 * time.Second):
		t.Fatalf("capture: tcpdump -i %s in %s not listening after 10s: %s", iface, ns, c.Stderr())
	}
	return nil
}

// Stderr is what tcpdump printed (its packet counts after Stop).
func (c *Capture) Stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// Stop flushes the capture (see Flush), ends it (SIGINT, so that tcpdump
// closes the file) and returns the pcap's path. It may be called more than
// once. Call it once the traffic of interest is known to have crossed the
// interface; traffic still on its way must be waited for with WaitFrames.
func (c *Capture) Stop() (string, error) {
	if c.stopped {
		return c.Path, c.waitErr
	}
	c.stopped = true
	flushErr := c.Flush(FlushTimeout)
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-c.done:
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 0) {
			// tcpdump exits 0 on SIGINT; anything else is worth reporting.
			c.waitErr = fmt.Errorf("tcpdump -i %s in %s: %w: %s", c.Iface, c.NS, err, c.Stderr())
		}
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		c.waitErr = fmt.Errorf("tcpdump -i %s in %s ignored SIGINT for 5s; killed", c.Iface, c.NS)
	}
	c.waitErr = errors.Join(flushErr, c.waitErr)
	return c.Path, c.waitErr
}

// Flush returns once tcpdump has written to the file every packet that the
// kernel had passed to it (through the capture filter) when Flush was
// called. Frames that have crossed the interface, e.g. the requests and
// replies of a ping that has returned, are then in the file; frames that
// may still be on their way are not waited for (see WaitFrames). It asks
// tcpdump for its counts with SIGUSR1 until the number it has written
// reaches the number the kernel had counted, or timeout passes.
func (c *Capture) Flush(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	first, err := c.askStats(deadline)
	if err != nil {
		return err
	}
	want := first.received - min(first.dropped, first.received)
	last := first
	ok := wait.Until(time.Until(deadline), func() bool {
		if last.captured >= want {
			return true
		}
		if last, err = c.askStats(deadline); err != nil {
			return true
		}
		return last.captured >= want
	})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("tcpdump -i %s in %s: wrote %d packets, the kernel had passed it %d (%d dropped) %v earlier",
			c.Iface, c.NS, last.captured, first.received, first.dropped, timeout)
	}
	if last.dropped > 0 {
		// Counts taken from this file would be wrong.
		return fmt.Errorf("tcpdump -i %s in %s: its ring overflowed, the kernel dropped %d of %d packets: the capture is incomplete",
			c.Iface, c.NS, last.dropped, last.received)
	}
	return nil
}

// askStats sends tcpdump SIGUSR1 and returns the counts it prints.
func (c *Capture) askStats(deadline time.Time) (tcpdumpStats, error) {
	drain := true
	for drain { // forget answers nobody waited for
		select {
		case <-c.stats:
		default:
			drain = false
		}
	}
	if err := c.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return tcpdumpStats{}, fmt.Errorf("tcpdump -i %s in %s: ask for its counts: %w", c.Iface, c.NS, err)
	}
	select {
	case st := <-c.stats:
		return st, nil
	case err := <-c.done:
		c.done <- err
		return tcpdumpStats{}, fmt.Errorf("tcpdump -i %s in %s exited: %v: %s", c.Iface, c.NS, err, c.Stderr())
	case <-time.After(time.Until(deadline)):
		return tcpdumpStats{}, fmt.Errorf("tcpdump -i %s in %s did not print its counts on SIGUSR1", c.Iface, c.NS)
	}
}

// WaitFrames waits until the file holds at least n frames for which match
// returns true (every frame when match is nil), e.g. frames sent into a
// switch that must still cross the captured interface, and returns how
// many it holds. After timeout it returns the count and an error.
func (c *Capture) WaitFrames(n int, timeout time.Duration, match func(frame []byte) bool) (int, error) {
	got := 0
	var err error
	ok := wait.Until(timeout, func() bool {
		got, err = c.count(match)
		return err != nil || got >= n
	})
	if err != nil {
		return got, err
	}
	if !ok {
		return got, fmt.Errorf("tcpdump -i %s in %s: %d of the %d expected frames written after %v", c.Iface, c.NS, got, n, timeout)
	}
	return got, nil
}

// count counts the frames written so far that match (all when nil).
func (c *Capture) count(match func([]byte) bool) (int, error) {
	frames, err := ReadPcap(c.Path)
	if errors.Is(err, errNoHeader) || errors.Is(err, os.ErrNotExist) {
		return 0, nil // nothing written yet
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range frames {
		if match == nil || match(f) {
			n++
		}
	}
	return n, nil
}

// Save copies the pcap to dst (e.g. a testdata fixture).
func (c *Capture) Save(dst string) error {
	b, err := os.ReadFile(c.Path)
	if err != nil {
		return fmt.Errorf("read capture: %w", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("save capture: %w", err)
	}
	return nil
}
