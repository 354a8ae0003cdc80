// Package ovspeer runs a real Open vSwitch instance (ovsdb-server and
// ovs-vswitchd with the userspace "netdev" datapath) inside a network
// namespace, for interoperability tests and benchmarks.
//
// Each instance has its own run, log and database directory (OVS_RUNDIR,
// OVS_LOGDIR, OVS_DBDIR), so several instances run side by side on one
// machine without touching a system-wide Open vSwitch. The daemons are stopped
// through their pid files when the test ends; if the test failed, their logs
// are written to the test log. A daemon that does not start fails the test
// with its log: it never skips.
package ovspeer

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/testnet"
)

// Schema is where Debian's openvswitch-common installs the database schema.
const Schema = "/usr/share/openvswitch/vswitch.ovsschema"

// Config tunes an instance. The zero value is a sensible default for tests.
type Config struct {
	// OtherConfig is written to the Open_vSwitch table's other_config before
	// any bridge exists, e.g. "pmd-cpu-mask": "0x2" to pin the datapath
	// thread. When "pmd-maxsleep" is absent it is set to DefaultPMDMaxSleep
	// so that idle poll-mode threads do not spin a shared machine's cores;
	// benchmarks that want pure polling set it to "0".
	OtherConfig map[string]string
	// LogLines is how many trailing lines of each log are written to the
	// test log on failure; 0 means 150.
	LogLines int
}

// DefaultPMDMaxSleep is the pmd-maxsleep (microseconds) used when Config
// does not set one: idle PMD threads sleep instead of spinning.
const DefaultPMDMaxSleep = "500"

// OVS is one running Open vSwitch instance in a namespace.
type OVS struct {
	// NS is the network namespace the daemons run in.
	NS string
	// Dir holds the database, sockets, pid files and logs.
	Dir string

	t        testing.TB
	logLines int
	stopped  bool
}

// Start creates a database and starts ovsdb-server and ovs-vswitchd in ns.
// It fails t (with the daemons' logs) if either does not come up. The
// instance is stopped at t's cleanup, which runs before the cleanup of any
// namespace created earlier with testnet.
func Start(t testing.TB, ns string, c Config) *OVS {
	t.Helper()
	testnet.RequireRoot(t)
	for _, bin := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("ovspeer: %s not found: %v (install openvswitch-switch: make deps)", bin, err)
		}
	}
	// Not t.TempDir: unix socket paths must stay under 108 bytes, and a
	// long test name would push the control socket's path past that.
	dir, err := os.MkdirTemp("", "ovs-")
	if err != nil {
		t.Fatalf("ovspeer: run directory: %v", err)
	}
	o := &OVS{NS: ns, Dir: dir, t: t, logLines: c.LogLines}
	if o.logLines == 0 {
		o.logLines = 150
	}
	t.Cleanup(func() {
		if t.Failed() {
			o.dumpLogs()
		}
		if err := o.Stop(); err != nil {
			t.Errorf("ovspeer: %v", err)
		}
		os.RemoveAll(dir)
	})

	if out, err := o.cmd("ovsdb-tool", "create", o.path("conf.db"), Schema).CombinedOutput(); err != nil {
		t.Fatalf("ovspeer: ovsdb-tool create: %v: %s", err, out)
	}
	if out, err := o.cmd("ovsdb-server", o.path("conf.db"),
		"--remote=punix:"+o.path("db.sock"), "--pidfile="+o.path("ovsdb-server.pid"),
		"--detach", "--log-file="+o.path("ovsdb-server.log")).CombinedOutput(); err != nil {
		o.dumpLogs()
		t.Fatalf("ovspeer: ovsdb-server did not start in %s: %v: %s", ns, err, out)
	}
	if out, err := o.Vsctl("--no-wait", "init"); err != nil {
		o.dumpLogs()
		t.Fatalf("ovspeer: %v: %s", err, out)
	}
	oc := map[string]string{"pmd-maxsleep": DefaultPMDMaxSleep}
	for k, v := range c.OtherConfig {
		oc[k] = v
	}
	keys := make([]string, 0, len(oc))
	for k := range oc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if out, err := o.Vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:"+k+"="+oc[k]); err != nil {
			t.Fatalf("ovspeer: %v: %s", err, out)
		}
	}
	if out, err := o.cmd("ovs-vswitchd", "unix:"+o.path("db.sock"),
		"--pidfile="+o.path("ovs-vswitchd.pid"), "--detach",
		"--log-file="+o.path("ovs-vswitchd.log"), "--disable-system").CombinedOutput(); err != nil {
		o.dumpLogs()
		t.Fatalf("ovspeer: ovs-vswitchd did not start in %s: %v: %s", ns, err, out)
	}
	// A vsctl command without --no-wait returns only once ovs-vswitchd has
	// applied the database: proof that the daemon is alive and working.
	if out, err := o.Vsctl("--timeout=20", "set", "Open_vSwitch", ".", "external_ids:xswitch-test="+filepath.Base(dir)); err != nil {
		o.dumpLogs()
		t.Fatalf("ovspeer: ovs-vswitchd is not answering: %v: %s", err, out)
	}
	return o
}

func (o *OVS) path(name string) string { return filepath.Join(o.Dir, name) }

// Env is the environment that points Open vSwitch tools at this instance.
func (o *OVS) Env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+o.Dir, "OVS_LOGDIR="+o.Dir, "OVS_DBDIR="+o.Dir)
}

// cmd returns a command running in the instance's namespace with its env.
func (o *OVS) cmd(name string, args ...string) *exec.Cmd {
	c := testnet.Cmd(o.NS, name, args...)
	c.Env = o.Env()
	return c
}

// Cmd returns an arbitrary command that runs in the instance's namespace with
// OVS_RUNDIR/OVS_LOGDIR/OVS_DBDIR pointing at it.
func (o *OVS) Cmd(name string, args ...string) *exec.Cmd { return o.cmd(name, args...) }

func (o *OVS) run(name string, args ...string) (string, error) {
	out, err := o.cmd(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %w: %s", o.NS, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Vsctl runs ovs-vsctl against this instance's database.
func (o *OVS) Vsctl(args ...string) (string, error) {
	return o.run("ovs-vsctl", append([]string{"--db=unix:" + o.path("db.sock")}, args...)...)
}

// Ofctl runs ovs-ofctl; a bridge name argument reaches this instance's
// bridge through OVS_RUNDIR (unix:Dir/BRIDGE.mgmt).
func (o *OVS) Ofctl(args ...string) (string, error) { return o.run("ovs-ofctl", args...) }

// Appctl runs ovs-appctl against this instance's ovs-vswitchd.
func (o *OVS) Appctl(args ...string) (string, error) {
	pid, err := readPid(o.path("ovs-vswitchd.pid"))
	if err != nil {
		return "", fmt.Errorf("ovs-appctl: %w", err)
	}
	ctl := o.path(fmt.Sprintf("ovs-vswitchd.%d.ctl", pid))
	return o.run("ovs-appctl", append([]string{"-t", ctl}, args...)...)
}

// MustVsctl is Vsctl that fails the test on error.
func (o *OVS) MustVsctl(args ...string) string {
	o.t.Helper()
	out, err := o.Vsctl(args...)
	if err != nil {
		o.t.Fatalf("ovspeer: %v", err)
	}
	return out
}

// MustOfctl is Ofctl that fails the test on error.
func (o *OVS) MustOfctl(args ...string) string {
	o.t.Helper()
	out, err := o.Ofctl(args...)
	if err != nil {
		o.t.Fatalf("ovspeer: %v", err)
	}
	return out
}

// MustAppctl is Appctl that fails the test on error.
func (o *OVS) MustAppctl(args ...string) string {
	o.t.Helper()
	out, err := o.Appctl(args...)
	if err != nil {
		o.t.Fatalf("ovspeer: %v", err)
	}
	return out
}

// Log returns ovs-vswitchd's log so far.
func (o *OVS) Log() string {
	b, _ := os.ReadFile(o.path("ovs-vswitchd.log"))
	return string(b)
}

func (o *OVS) dumpLogs() {
	for _, name := range []string{"ovsdb-server.log", "ovs-vswitchd.log"} {
		b, err := os.ReadFile(o.path(name))
		if err != nil {
			o.t.Logf("ovspeer %s: %s: %v", o.NS, name, err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > o.logLines {
			lines = lines[len(lines)-o.logLines:]
		}
		o.t.Logf("ovspeer %s: last %d lines of %s:\n%s", o.NS, len(lines), name, strings.Join(lines, "\n"))
	}
}

// Stop stops ovs-vswitchd (asking it to remove its ports and detach their
// XDP programs first) and ovsdb-server, by their pid files, and waits until
// both are gone. It is called at cleanup; calling it earlier is fine.
func (o *OVS) Stop() error {
	if o.stopped {
		return nil
	}
	o.stopped = true
	var errs []error
	if pid, err := readPid(o.path("ovs-vswitchd.pid")); err == nil {
		// exit --cleanup deletes the datapath and its ports, which detaches
		// the AF_XDP ports' XDP programs from the interfaces.
		_, _ = o.run("ovs-appctl", "--timeout=10", "-t", o.path(fmt.Sprintf("ovs-vswitchd.%d.ctl", pid)), "exit", "--cleanup")
		if err := stopPid(pid, 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stop ovs-vswitchd in %s: %w", o.NS, err))
		}
	}
	if pid, err := readPid(o.path("ovsdb-server.pid")); err == nil {
		if err := stopPid(pid, 5*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stop ovsdb-server in %s: %w", o.NS, err))
		}
	}
	return errors.Join(errs...)
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", path, b)
	}
	return pid, nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// stopPid waits for pid to exit after SIGTERM, then kills it.
func stopPid(pid int, grace time.Duration) error {
	if !alive(pid) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		return fmt.Errorf("pid %d survives SIGKILL", pid)
	}
	return fmt.Errorf("pid %d ignored SIGTERM for %v and was killed", pid, grace)
}

// QueueCount returns the number of RX queues of iface in the instance's
// namespace (from /sys/class/net/IFACE/queues), which an AF_XDP port must
// cover with n_rxq or traffic on the other queues bypasses Open vSwitch.
func (o *OVS) QueueCount(iface string) (int, error) {
	out, err := testnet.Try(o.NS, "sh", "-c", "ls -d /sys/class/net/"+iface+"/queues/rx-* | wc -l")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("rx queues of %s in %s: %q", iface, o.NS, out)
	}
	return n, nil
}

// AddUnderlay creates bridge (datapath netdev) with an AF_XDP port on iface
// (native XDP, one rx queue per device queue) and moves addrs from iface to
// the bridge's internal port, as Open vSwitch's userspace tunnelling needs
// the tunnel endpoint address on a bridge. This is br0 in the seed scenario.
func (o *OVS) AddUnderlay(bridge, iface string, addrs ...netip.Prefix) {
	o.t.Helper()
	q, err := o.QueueCount(iface)
	if err != nil {
		o.t.Fatalf("ovspeer: %v", err)
	}
	for _, a := range addrs {
		_, _ = testnet.Try(o.NS, "ip", "addr", "del", a.String(), "dev", iface)
	}
	o.MustVsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev")
	o.MustVsctl("add-port", bridge, iface, "--", "set", "interface", iface, "type=afxdp",
		"options:xdp-mode=native", "options:n_rxq="+strconv.Itoa(q))
	o.setAddrs(bridge, addrs)
	if err := o.WaitPort(iface, 20*time.Second); err != nil {
		o.dumpLogs()
		o.t.Fatalf("ovspeer: %v", err)
	}
}

// AddBridge creates a netdev bridge whose internal port carries addrs
// (br1 in the seed scenario).
func (o *OVS) AddBridge(bridge string, addrs ...netip.Prefix) {
	o.t.Helper()
	o.MustVsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev")
	o.setAddrs(bridge, addrs)
}

func (o *OVS) setAddrs(dev string, addrs []netip.Prefix) {
	o.t.Helper()
	for _, a := range addrs {
		args := []string{"addr", "add", a.String(), "dev", dev}
		if a.Addr().Is6() {
			args = append(args, "nodad")
		}
		if _, err := testnet.Try(o.NS, "ip", args...); err != nil {
			o.t.Fatalf("ovspeer: %v", err)
		}
	}
	if _, err := testnet.Try(o.NS, "ip", "link", "set", dev, "up"); err != nil {
		o.t.Fatalf("ovspeer: %v", err)
	}
}

// AddGeneve adds a Geneve port to bridge towards remote. options are extra
// interface options such as "key=5000" (without the "options:" prefix).
func (o *OVS) AddGeneve(bridge, port string, remote netip.Addr, options ...string) {
	o.t.Helper()
	args := []string{"add-port", bridge, port, "--", "set", "interface", port, "type=geneve",
		"options:remote_ip=" + remote.String()}
	for _, opt := range options {
		args = append(args, "options:"+opt)
	}
	o.MustVsctl(args...)
}

// WaitPort waits until the interface's ofport is assigned (the datapath
// accepted it) or reports its error column.
func (o *OVS) WaitPort(iface string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := o.Vsctl("--if-exists", "get", "interface", iface, "ofport")
		ofport := strings.TrimSpace(out)
		if err == nil && ofport != "" && ofport != "[]" && ofport != "-1" && ofport != "0" {
			return nil
		}
		if time.Now().After(deadline) {
			e, _ := o.Vsctl("--if-exists", "get", "interface", iface, "error")
			return fmt.Errorf("port %s in %s not up after %v (ofport %q, error %s)", iface, o.NS, timeout, ofport, strings.TrimSpace(e))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FDBEntry is one line of `ovs-appctl fdb/show BRIDGE`.
type FDBEntry struct {
	Port string // OpenFlow port number, or "LOCAL"
	VLAN int
	MAC  string // lower case, colon separated
	Age  int    // seconds; -1 for a static entry
}

// FDB returns bridge's MAC learning table.
func (o *OVS) FDB(bridge string) ([]FDBEntry, error) {
	out, err := o.Appctl("fdb/show", bridge)
	if err != nil {
		return nil, err
	}
	return ParseFDB(out)
}

// ParseFDB parses the output of `ovs-appctl fdb/show`:
//
//	port  VLAN  MAC                Age
//	   1     0  b2:63:1c:1f:6e:8f    2
//	LOCAL    0  2e:ee:79:0b:19:4d    2
func ParseFDB(s string) ([]FDBEntry, error) {
	var es []FDBEntry
	for i, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || (i == 0 && f[0] == "port") {
			continue
		}
		if len(f) != 4 {
			return nil, fmt.Errorf("fdb/show line %d: %q: want 4 fields", i+1, line)
		}
		vlan, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("fdb/show line %d: %q: bad VLAN", i+1, line)
		}
		age, err := strconv.Atoi(f[3])
		if err != nil {
			age = -1 // static entries show "?"
		}
		es = append(es, FDBEntry{Port: f[0], VLAN: vlan, MAC: strings.ToLower(f[2]), Age: age})
	}
	return es, nil
}

// OFPort returns the OpenFlow port number of an interface, as fdb/show
// prints it.
func (o *OVS) OFPort(iface string) (string, error) {
	out, err := o.Vsctl("get", "interface", iface, "ofport")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}
