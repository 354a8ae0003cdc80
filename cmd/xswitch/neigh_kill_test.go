package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
)

// TestNeighbourAfterKill9: the managed neighbour entries xswitch adds are
// marked as its own (protocol 120). After kill -9 they stay (nothing runs
// to remove them); a later instance, started on the same underlay and
// stopped cleanly, leaves none, including the entry of a remote it no
// longer has. An entry someone else made for the same kind of hop stays.
func TestNeighbourAfterKill9(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	// 198.18.0.77 is on the link but never answers: its entry stays unresolved.
	first := "underlay:\n  interface: eth0\nbridges:\n  - name: br1\n    tunnels:\n      - remote_ip: 198.18.0.2\n      - remote_ip: 198.18.0.77\n"
	second := "underlay:\n  interface: eth0\nbridges:\n  - name: br1\n    tunnels:\n      - remote_ip: 198.18.0.2\n"
	// Someone else's managed entry (no protocol of ours).
	run(t, h.NS, "ip", "neigh", "add", "198.18.0.55", "dev", h.Underlay, "managed")

	bin := e2e.Binary(t)
	cfg := filepath.Join(t.TempDir(), "first.yaml")
	if err := os.WriteFile(cfg, []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := testnet.Cmd(h.NS, bin, "run", "--config", cfg)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("first xswitch's log:\n%s", log.String())
		}
	})
	waitNeigh(t, h, "the first instance's marked entries", func(ours []string) bool {
		return len(ours) == 2
	})
	// ip netns exec execs xswitch: cmd.Process is the daemon itself.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("xswitch did not die by SIGKILL: %v", cmd.ProcessState)
	}
	if ours := ourNeigh(t, h); len(ours) != 2 {
		t.Fatalf("after kill -9 the marked entries are %v, want both still there (the scenario to clean up)", ours)
	}

	x := e2e.StartXswitch(t, h.NS, second)
	waitNeigh(t, h, "the second instance's entry for 198.18.0.2 only", func(ours []string) bool {
		return len(ours) == 1 && strings.HasPrefix(ours[0], "198.18.0.2 ")
	})
	if err := x.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, x.Log())
	}
	if ours := ourNeigh(t, h); len(ours) != 0 {
		t.Errorf("after a clean stop xswitch's entries are left: %v", ours)
	}
	if out := run(t, h.NS, "ip", "neigh", "show", "198.18.0.55", "dev", h.Underlay); !strings.Contains(out, "managed") {
		t.Errorf("someone else's managed entry was removed: %q", out)
	}
}

// ourNeigh lists the neighbour entries on h's underlay marked as xswitch's.
func ourNeigh(t *testing.T, h *e2e.Host) []string {
	t.Helper()
	var ours []string
	for _, fam := range []string{"-4", "-6"} {
		out := run(t, h.NS, "ip", fam, "neigh", "show", "dev", h.Underlay, "proto", "120")
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l != "" {
				ours = append(ours, l)
			}
		}
	}
	return ours
}

func waitNeigh(t *testing.T, h *e2e.Host, what string, ok func([]string) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ours := ourNeigh(t, h)
		if ok(ours) {
			return
		}
		if time.Now().After(deadline) {
			all := run(t, h.NS, "ip", "-d", "neigh", "show", "dev", h.Underlay)
			t.Fatalf("timeout waiting for %s: marked %v; all:\n%s", what, ours, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(t *testing.T, ns, name string, args ...string) string {
	t.Helper()
	out, err := testnet.Try(ns, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
