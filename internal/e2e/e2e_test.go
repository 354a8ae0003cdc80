package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"xswitch/internal/testnet"
)

// TestTopology: three hosts reach each other over the wire bridge on IPv4
// and IPv6.
func TestTopology(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := Topology(t, 3)
	for _, dst := range []string{hosts[2].IP4.String(), hosts[2].IP6.String()} {
		if out, err := testnet.Try(hosts[0].NS, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst); err != nil {
			t.Errorf("ping %s from h1: %v\n%s", dst, err, out)
		}
	}
	if out, err := testnet.Try(hosts[1].NS, "ping", "-c", "1", "-W", "2", hosts[0].IP6.String()); err != nil {
		t.Errorf("ping h1 from h2: %v\n%s", err, out)
	}
}

// TestProcessDir: ProcessDir's directories go with RemoveProcessDirs, and a
// directory left by a process that has exited goes with the next
// ProcessDir; one of a live process stays.
func TestProcessDir(t *testing.T) {
	const prefix = "xswitch-e2e-test-"
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(os.TempDir(), prefix+strconv.Itoa(dead.Process.Pid)+"-1")
	live := filepath.Join(os.TempDir(), prefix+"1-1") // pid 1 is always alive
	for _, d := range []string{stale, live} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.RemoveAll(live) })
	dir, err := ProcessDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the directory of exited pid %d is still there (%v)", dead.Process.Pid, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the directory of a live process was removed: %v", err)
	}
	if !strings.HasPrefix(filepath.Base(dir), prefix+strconv.Itoa(os.Getpid())+"-") {
		t.Errorf("ProcessDir %s does not carry this process's pid", dir)
	}
	RemoveProcessDirs()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("RemoveProcessDirs left %s (%v)", dir, err)
	}
}
