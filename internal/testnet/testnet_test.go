package testnet

import (
	"os/exec"
	"strings"
	"testing"
)

func TestPingAcrossVethAndCleanup(t *testing.T) {
	RequireRoot(t)
	var names []string
	t.Run("ping", func(t *testing.T) {
		n := New(t)
		a, b := n.NS("a"), n.NS("b")
		names = []string{a, b}
		n.Veth(a, "p0", b, "p0", 2)
		n.Run(a, "ip", "addr", "add", "198.18.0.1/24", "dev", "p0")
		n.Run(b, "ip", "addr", "add", "198.18.0.2/24", "dev", "p0")
		out := n.Run(a, "ping", "-c", "1", "-W", "2", "198.18.0.2")
		if !strings.Contains(out, "1 received") {
			t.Fatalf("ping failed: %s", out)
		}
		if out := n.Run(a, "ls", "/sys/class/net/p0/queues"); !strings.Contains(out, "rx-1") {
			t.Fatalf("want 2 rx queues, got %s", out)
		}
	})
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, ns := range names {
		if strings.Contains(string(out), ns) {
			t.Fatalf("namespace %s left behind", ns)
		}
	}
}
