package main_test

// End-to-end tests of the switch: real namespaces, veth, AF_XDP, TAP
// devices and the xswitch binary, through internal/e2e.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
)

// TestBadConfig: a broken configuration gets an error that names the field
// and the fix, and nothing is created (no TAP, no XDP program).
func TestBadConfig(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 1)
	h := hosts[0]
	bin := e2e.Binary(t)
	cases := []struct{ name, yaml, want string }{
		{"bad-remote", "underlay:\n  interface: eth0\nbridges:\n  - name: br1\n    address: 198.19.0.1/24\n    tunnels:\n      - remote_ip: 198.18.0.2\n      - remote_ip: x\n",
			`bridges[0].tunnels[1].remote_ip: "x" is not an IP address; write e.g. 192.0.2.1`},
		{"bad-key", "underlay:\n  interface: eth0\nbridges:\n  - name: br1\n    tunnels:\n      - remote_ip: 198.18.0.2\n        key: 16777216\n",
			"bridges[0].tunnels[0].key: 16777216 is out of range"},
		{"unknown-key", "underlay:\n  interface: eth0\nbridgez: []\n", "bridgez: unknown key; did you mean `bridges`?"},
		{"no-such-nic", "underlay:\n  interface: eth9\nbridges:\n  - name: br1\n    tunnels:\n      - remote_ip: 198.18.0.2\n",
			`underlay.interface: no interface "eth9" in this network namespace`},
		{"address-without-prefix", "underlay:\n  interface: eth0\nbridges:\n  - name: br1\n    address: 198.19.0.1\n    tunnels:\n      - remote_ip: 198.18.0.2\n",
			`bridges[0].address: "198.19.0.1" has no prefix length; write e.g. 198.19.0.1/24`},
	}
	before := testnet.Cmd(h.NS, "ip", "-o", "link")
	beforeOut, _ := before.CombinedOutput()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "x.yaml")
			if err := os.WriteFile(cfg, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, verb := range []string{"run", "check"} {
				out, err := testnet.Cmd(h.NS, bin, verb, "--config", cfg).CombinedOutput()
				if err == nil {
					t.Errorf("xswitch %s accepted the bad config:\n%s", verb, out)
				}
				if !strings.Contains(string(out), c.want) || !strings.Contains(string(out), "nothing was changed") {
					t.Errorf("xswitch %s: output lacks %q:\n%s", verb, c.want, out)
				}
			}
			after, _ := testnet.Cmd(h.NS, "ip", "-o", "link").CombinedOutput()
			if string(after) != string(beforeOut) {
				t.Errorf("links changed by a rejected config:\nbefore:\n%s\nafter:\n%s", beforeOut, after)
			}
		})
	}
}

// TestCleanShutdown: after SIGTERM the internal port, the XDP program and
// the managed neighbour entries are gone, and the control socket is free
// again (a second instance starts in the same namespace).
func TestCleanShutdown(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h := hosts[0]
	cfg := "underlay:\n  interface: eth0\nbridges:\n  - name: br1\n    address: 198.19.0.1/24\n    tunnels:\n      - remote_ip: 198.18.0.2\n        key: 5000\n"
	for round := 0; round < 2; round++ {
		x := e2e.StartXswitch(t, h.NS, cfg)
		show, err := x.Ctl("show")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(show, "bridge br1 (vni 5000") || !strings.Contains(show, "198.18.0.2") {
			t.Errorf("ctl show lacks the bridge or tunnel:\n%s", show)
		}
		if out, err := testnet.Try(h.NS, "ip", "link", "show", "br1"); err != nil {
			t.Fatalf("internal port br1 missing while running: %v %s", err, out)
		}
		if err := x.Stop(); err != nil {
			t.Fatalf("stop: %v\n%s", err, x.Log())
		}
		checkClean(t, h)
	}
}

// checkClean asserts that no xswitch state is left in h's namespace.
func checkClean(t *testing.T, h *e2e.Host) {
	t.Helper()
	if out, err := testnet.Try(h.NS, "ip", "link", "show", "br1"); err == nil {
		t.Errorf("internal port br1 still exists after stop:\n%s", out)
	}
	out, _ := testnet.Try(h.NS, "ip", "-d", "link", "show", h.Underlay)
	if strings.Contains(out, "xdp") {
		t.Errorf("XDP program still attached to %s after stop:\n%s", h.Underlay, out)
	}
	for _, fam := range []string{"-4", "-6"} {
		out, _ := testnet.Try(h.NS, "ip", fam, "neigh", "show", "dev", h.Underlay)
		if strings.Contains(out, "managed") {
			t.Errorf("managed neighbour entries left after stop:\n%s", out)
		}
	}
	if out, err := testnet.Try(h.NS, e2e.Binary(t), "ctl", "show"); err == nil {
		t.Errorf("ctl show still answers after stop:\n%s", out)
	}
}
