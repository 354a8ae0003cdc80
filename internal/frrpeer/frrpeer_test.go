package frrpeer

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/testnet"
	"xswitch/internal/wait"
)

// TestReflector: bgpd starts in a namespace, answers vtysh, has an empty
// EVPN table, and is gone after Kill.
func TestReflector(t *testing.T) {
	n := testnet.New(t)
	Require(t)
	ns := n.NS("rr")
	n.Run(ns, "ip", "addr", "add", "198.18.9.1/32", "dev", "lo")
	r := Start(t, ns, Options{ASN: 65000, Addr: "198.18.9.1", ListenRange: "198.18.9.0/24", Password: "pw"})
	out, err := r.Vtysh("show running-config")
	if err != nil || !strings.Contains(out, "bgp listen range 198.18.9.0/24 peer-group HOSTS") || !strings.Contains(out, "route-reflector-client") {
		t.Fatalf("vtysh: %v\n%s", err, out)
	}
	rs, err := r.Routes()
	if err != nil || len(rs) != 0 {
		t.Errorf("routes of an empty reflector: %v, %v", rs, err)
	}
	pid := r.pid
	r.Kill()
	if r.Running() {
		t.Error("Running after Kill")
	}
	wait.For(t, 5*time.Second, "bgpd gone", func() bool { return syscall.Kill(pid, 0) != nil || zombie(pid) })
}

// TestSweep: a bgpd left in a namespace whose name was deleted (its test
// binary died) is killed by Sweep; one in a named namespace is not.
func TestSweep(t *testing.T) {
	n := testnet.New(t)
	Require(t)
	keep := Start(t, n.NS("keep"), Options{ASN: 65000, Addr: "198.18.9.2", ListenRange: "198.18.9.0/24"})
	name := fmt.Sprintf("xswitch-frrpeer-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	orphan := Start(t, name, Options{ASN: 65000, Addr: "198.18.9.3", ListenRange: "198.18.9.0/24"})
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v: %s", err, out)
	}
	Sweep()
	wait.For(t, 5*time.Second, "the orphaned bgpd killed", func() bool { return syscall.Kill(orphan.pid, 0) != nil || zombie(orphan.pid) })
	if syscall.Kill(keep.pid, 0) != nil {
		t.Error("Sweep killed a bgpd whose namespace still has its name")
	}
}

// zombie reports whether pid has exited but not been reaped (bgpd -d is
// reparented to init, which reaps it soon).
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && strings.Contains(string(b), ") Z ")
}
