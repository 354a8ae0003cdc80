// Package testnet builds throw-away test hosts: network namespaces joined by
// veth pairs, with unique names and guaranteed cleanup. Nothing it creates
// lives in the root namespace: veth pairs are created directly inside their
// namespaces, so a test can never attach XDP to, or send traffic over, a
// root-namespace interface.
package testnet

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace this package creates. The pid of
// the creating process follows it, so that Sweep can tell stale namespaces
// (whose creator died, e.g. by kill -9) from live ones.
const Prefix = "xst-"

var counter atomic.Uint64

// RequireRoot skips t with a message that says why when the test cannot
// create namespaces. In CI (.ci/run runs as root) these tests always run in
// the main pass of make test; its second pass (-race -short: unit tests
// under the race detector) skips them, saying so.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short: namespace/AF_XDP test; the main pass of make test runs it")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces, veth and XDP programs (CI runs it as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("iproute2 'ip' not found: %v (install iproute2)", err)
	}
}

// Net is a set of namespaces owned by one test.
type Net struct {
	t      testing.TB
	mu     sync.Mutex
	spaces []string
}

// New returns an empty Net whose namespaces are deleted when t ends, pass or
// fail. It also sweeps namespaces left by dead processes of earlier runs.
func New(t testing.TB) *Net {
	t.Helper()
	RequireRoot(t)
	Sweep()
	n := &Net{t: t}
	t.Cleanup(n.Close)
	return n
}

// NS creates a namespace and returns its unique name; loopback is up.
// label is a short human hint (h1, wire, ...), kept in the name for debugging.
func (n *Net) NS(label string) string {
	n.t.Helper()
	name := fmt.Sprintf("%s%d-%d-%s", Prefix, os.Getpid(), counter.Add(1), label)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		n.t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n.mu.Lock()
	n.spaces = append(n.spaces, name)
	n.mu.Unlock()
	n.Run(name, "ip", "link", "set", "lo", "up")
	return name
}

// Veth creates a veth pair with end ifA in nsA and end ifB in nsB, both up.
// queues > 0 sets the number of RX and TX queues of both ends.
func (n *Net) Veth(nsA, ifA, nsB, ifB string, queues int) {
	n.t.Helper()
	args := []string{"-n", nsA, "link", "add", ifA}
	if queues > 0 {
		args = append(args, "numrxqueues", strconv.Itoa(queues), "numtxqueues", strconv.Itoa(queues))
	}
	args = append(args, "type", "veth", "peer", "name", ifB, "netns", nsB)
	if queues > 0 {
		args = append(args, "numrxqueues", strconv.Itoa(queues), "numtxqueues", strconv.Itoa(queues))
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	n.Run(nsA, "ip", "link", "set", ifA, "up")
	n.Run(nsB, "ip", "link", "set", ifB, "up")
}

// Run runs a command inside ns and fails the test if it fails.
func (n *Net) Run(ns string, name string, args ...string) string {
	n.t.Helper()
	out, err := Try(ns, name, args...)
	if err != nil {
		n.t.Fatalf("%v", err)
	}
	return out
}

// Try runs a command inside ns and returns its combined output.
func Try(ns string, name string, args ...string) (string, error) {
	out, err := Cmd(ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %w: %s", ns, name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Cmd returns a command that runs inside ns (through ip netns exec).
func Cmd(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Do runs fn on a locked OS thread that has entered ns. Sockets, BPF links
// and netlink handles created in fn belong to ns and stay usable from any
// goroutine afterwards.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if restoring fails: Go then discards it.
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w (and fn: %v)", ns, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Close kills what still runs in the namespaces and deletes them.
func (n *Net) Close() {
	n.mu.Lock()
	spaces := n.spaces
	n.spaces = nil
	n.mu.Unlock()
	for i := len(spaces) - 1; i >= 0; i-- {
		Delete(spaces[i])
	}
}

// Delete kills every process inside ns and removes it.
func Delete(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscallKill(pid)
			}
		}
	}
	_ = exec.Command("ip", "netns", "del", ns).Run()
}

// Sweep deletes namespaces created by this package in processes that no
// longer exist.
func Sweep() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], Prefix) {
			continue
		}
		rest := strings.TrimPrefix(f[0], Prefix)
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			continue
		}
		Delete(f[0])
	}
}
