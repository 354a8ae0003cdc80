// Package e2e runs xswitch end to end in network namespaces: a topology of
// hosts joined by a "wire" namespace, the xswitch binary built once per test
// binary, and daemons started with `ip netns exec NS xswitch run` and always
// stopped at cleanup. It is used by the switch's own end-to-end tests, by the
// Open vSwitch interop tests and by the benchmarks.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/testnet"
)

// Host is one host of a Topology: a namespace whose underlay veth ("eth0")
// leads into the wire namespace.
type Host struct {
	NS       string     // network namespace
	Underlay string     // the underlay interface in NS ("eth0")
	IP4      netip.Addr // 198.18.0.<i+1>/24 on Underlay
	IP6      netip.Addr // 2001:2::<i+1>/64 on Underlay
}

// UnderlayQueues is the number of RX/TX queues of every underlay veth of a
// Topology: more than one, so that the switch's one-socket-per-queue is
// exercised.
const UnderlayQueues = 2

// Topology creates n hosts (namespaces "h1".."hn") and a wire namespace whose
// Linux bridge "br0" joins their underlay veths. Everything is deleted when t
// ends. It returns the wire namespace and the hosts.
func Topology(t testing.TB, n int) (wire string, hosts []*Host) {
	t.Helper()
	net := testnet.New(t)
	wire = net.NS("wire")
	net.Run(wire, "ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "stp_state", "0")
	net.Run(wire, "ip", "link", "set", "br0", "up")
	for i := 0; i < n; i++ {
		h := &Host{
			NS:       net.NS("h" + strconv.Itoa(i+1)),
			Underlay: "eth0",
			IP4:      netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}),
			IP6:      netip.MustParseAddr(fmt.Sprintf("2001:2::%x", i+1)),
		}
		w := "w" + strconv.Itoa(i+1)
		net.Veth(h.NS, h.Underlay, wire, w, UnderlayQueues)
		net.Run(wire, "ip", "link", "set", w, "master", "br0")
		net.Run(h.NS, "sysctl", "-qw", "net.ipv6.conf."+h.Underlay+".accept_dad=0")
		net.Run(h.NS, "ip", "addr", "add", h.IP4.String()+"/24", "dev", h.Underlay)
		net.Run(h.NS, "ip", "addr", "add", h.IP6.String()+"/64", "dev", h.Underlay, "nodad")
		hosts = append(hosts, h)
	}
	return wire, hosts
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// binDirPrefix names the per-process directory holding the built binary.
const binDirPrefix = "xswitch-e2e-"

// Binary builds ./cmd/xswitch once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("build xswitch: %v", buildErr)
	}
	return buildPath
}

func build() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the xswitch module (go env GOMOD is empty)")
	}
	dir, err := ProcessDir(binDirPrefix)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "xswitch")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/xswitch")
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/xswitch: %w\n%s", err, out)
	}
	return bin, nil
}

var (
	dirsMu sync.Mutex
	dirs   []string // made by ProcessDir, removed by RemoveProcessDirs
)

// ProcessDir creates a directory in the system's temporary directory for
// files that live as long as the test process, such as built binaries. Its
// name is prefix, the process id and a random part. Main removes it when
// the tests end; should the process die first (a timeout, kill -9), a
// later ProcessDir with the same prefix removes it, its pid being gone.
func ProcessDir(prefix string) (string, error) {
	sweepProcessDirs(prefix)
	dir, err := os.MkdirTemp("", prefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("temporary directory for the test process: %w", err)
	}
	dirsMu.Lock()
	dirs = append(dirs, dir)
	dirsMu.Unlock()
	return dir, nil
}

// RemoveProcessDirs removes the directories ProcessDir made.
func RemoveProcessDirs() {
	dirsMu.Lock()
	defer dirsMu.Unlock()
	for _, d := range dirs {
		os.RemoveAll(d)
	}
	dirs = nil
}

// Main is TestMain for packages whose tests use Binary or ProcessDir: it
// runs the tests, then removes what they built.
func Main(m *testing.M) {
	code := m.Run()
	RemoveProcessDirs()
	os.Exit(code)
}

// sweepProcessDirs removes the prefix directories of processes that have
// exited without removing them.
func sweepProcessDirs(prefix string) {
	found, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, d := range found {
		rest := strings.TrimPrefix(filepath.Base(d), prefix)
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			continue
		}
		os.RemoveAll(d)
	}
}

// Xswitch is one running `xswitch run` inside a namespace.
type Xswitch struct {
	t      testing.TB
	ns     string
	bin    string
	config string
	cmd    *exec.Cmd
	log    *SyncBuffer
	done   chan struct{}
	err    error // exit status, valid after done
	mu     sync.Mutex
	stop   bool
	killed bool // Kill9: not a clean exit, and not an error
}

// ReadyTimeout bounds how long StartXswitch waits for the control socket.
const ReadyTimeout = 30 * time.Second

// StartXswitch writes configYAML to a file and runs `ip netns exec ns xswitch
// run --config FILE`. It returns once `xswitch ctl show` answers in ns, and
// fails t if the daemon exits or does not answer within ReadyTimeout. At
// cleanup the daemon gets SIGTERM (SIGKILL after 10 s) and is waited for; its
// log is dumped when t failed.
func StartXswitch(t testing.TB, ns, configYAML string) *Xswitch {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "xswitch.yaml")
	if err := os.WriteFile(cfg, []byte(configYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	x := &Xswitch{t: t, ns: ns, bin: bin, config: cfg, log: &SyncBuffer{}, done: make(chan struct{})}
	x.cmd = testnet.Cmd(ns, bin, "run", "--config", cfg)
	x.cmd.Stdout = x.log
	x.cmd.Stderr = x.log
	if err := x.cmd.Start(); err != nil {
		t.Fatalf("start xswitch in %s: %v", ns, err)
	}
	go func() {
		x.err = x.cmd.Wait()
		close(x.done)
	}()
	t.Cleanup(func() {
		err := x.Stop()
		if t.Failed() || err != nil {
			t.Logf("xswitch in %s (config %s):\n%s\n--- log ---\n%s", ns, cfg, configYAML, x.Log())
		}
		if err != nil {
			t.Errorf("xswitch in %s did not stop cleanly: %v", ns, err)
		}
	})
	deadline := time.Now().Add(ReadyTimeout)
	for {
		if _, err := x.Ctl("show"); err == nil {
			return x
		} else if time.Now().After(deadline) {
			t.Fatalf("xswitch in %s not ready after %v: %v\n--- log ---\n%s", ns, ReadyTimeout, err, x.Log())
		}
		select {
		case <-x.done:
			t.Fatalf("xswitch in %s exited during start: %v\nconfig:\n%s\n--- log ---\n%s", ns, x.err, configYAML, x.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// NS is the namespace the daemon runs in.
func (x *Xswitch) NS() string { return x.ns }

// ConfigPath is the configuration file the daemon was started with.
func (x *Xswitch) ConfigPath() string { return x.config }

// Pid is the daemon's process id.
func (x *Xswitch) Pid() int { return x.cmd.Process.Pid }

// Ctl runs `xswitch ctl args...` in the daemon's namespace and returns its
// combined output.
func (x *Xswitch) Ctl(args ...string) (string, error) {
	out, err := testnet.Cmd(x.ns, x.bin, append([]string{"ctl"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("xswitch ctl %s in %s: %w: %s", strings.Join(args, " "), x.ns, err, out)
	}
	return string(out), nil
}

// CtlJSON runs `xswitch ctl args... --json` (--json added when missing) and
// decodes the output into v.
func (x *Xswitch) CtlJSON(v any, args ...string) error {
	has := false
	for _, a := range args {
		has = has || a == "--json"
	}
	if !has {
		args = append(args, "--json")
	}
	out, err := x.Ctl(args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("xswitch ctl %s: decode JSON: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Stop sends SIGTERM and waits for the daemon to exit (SIGKILL after 10 s).
// It returns an error if the daemon exited with a failure status or had to
// be killed. Calling it again returns the same result.
func (x *Xswitch) Stop() error {
	x.mu.Lock()
	first := !x.stop
	x.stop = true
	x.mu.Unlock()
	if first {
		_ = x.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-x.done:
		case <-time.After(10 * time.Second):
			_ = x.cmd.Process.Kill()
			<-x.done
			return fmt.Errorf("xswitch in %s ignored SIGTERM for 10s and was killed", x.ns)
		}
	}
	<-x.done
	x.mu.Lock()
	killed := x.killed
	x.mu.Unlock()
	if x.err != nil && !killed {
		return fmt.Errorf("xswitch in %s: %w", x.ns, x.err)
	}
	return nil
}

// Kill9 kills the daemon with SIGKILL (a host that dies without a word)
// and waits until it is gone; the cleanup then expects no clean exit.
func (x *Xswitch) Kill9() {
	x.mu.Lock()
	x.stop, x.killed = true, true
	x.mu.Unlock()
	_ = x.cmd.Process.Signal(syscall.SIGKILL)
	<-x.done
}

// Exited reports whether the daemon has exited.
func (x *Xswitch) Exited() bool {
	select {
	case <-x.done:
		return true
	default:
		return false
	}
}

// Log returns what the daemon has written to stdout and stderr so far.
func (x *Xswitch) Log() string { return x.log.String() }

// SyncBuffer is a bytes.Buffer safe for the writer goroutines of exec.Cmd
// and concurrent readers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
