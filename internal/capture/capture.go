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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/testnet"
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
	c := &Capture{NS: ns, Iface: iface, Path: filepath.Join(t.TempDir(), iface+".pcap"), done: make(chan error, 1)}
	// -Z root: Debian's tcpdump otherwise drops to user tcpdump and cannot
	// write into the test's directory. -U and --immediate-mode: deliver and write each packet at once, or
	// packets still in the kernel ring at SIGINT are lost.
	args := append([]string{"-i", iface, "-s", "0", "-U", "--immediate-mode", "-n", "-Z", "root", "-w", c.Path}, filter...)
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

// Stop ends the capture (SIGINT, so that tcpdump flushes the file) and
// returns the pcap's path. It may be called more than once.
func (c *Capture) Stop() (string, error) {
	if c.stopped {
		return c.Path, c.waitErr
	}
	c.stopped = true
	// Let frames in flight (the last reply of a ping) reach the file.
	time.Sleep(200 * time.Millisecond)
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
	return c.Path, c.waitErr
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
