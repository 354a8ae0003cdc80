package harness

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"xswitch/bench/internal/report"
	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
)

// Xswitch is the switch under test: `xswitch run` (internal/e2e) with its
// pollers pinned to the switch CPU by its own `cpus` setting; every other
// thread of the process is moved to that CPU too, as for Open vSwitch.
type Xswitch struct {
	x    *e2e.Xswitch
	mode string
}

func newXswitch(t *testing.T) System { return &Xswitch{} }

// Name implements System.
func (s *Xswitch) Name() string { return report.SystemXswitch }

// Mode implements System.
func (s *Xswitch) Mode() string { return s.mode }

// Config returns the xswitch YAML for tp.
func Config(tp *Topo, cpu int) string {
	var b strings.Builder
	if tp.UnderlayIf != "" {
		fmt.Fprintf(&b, "underlay:\n  interface: %s\n", tp.UnderlayIf)
		// BENCH_XSWITCH_UNDERLAY_YAML: underlay settings to try, one
		// "key: value" per line (e.g. "tx_budget: 128").
		for _, l := range strings.Split(os.Getenv("BENCH_XSWITCH_UNDERLAY_YAML"), "\n") {
			if strings.TrimSpace(l) != "" {
				fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(l))
			}
		}
	}
	fmt.Fprintf(&b, "cpus: [%d]\nbridges:\n  - name: br1\n    ports: [%s]\n", cpu, strings.Join(tp.VMIfs, ", "))
	if tp.UnderlayIf != "" {
		fmt.Fprintf(&b, "    tunnels:\n      - remote_ip: %s\n        key: %d\n", PeerUnderlayIP, VNI)
	}
	return b.String()
}

// Start implements System.
func (s *Xswitch) Start(t testing.TB, tp *Topo, cpu int) error {
	if tp.UnderlayIf != "" {
		// The tunnel endpoint address lives on the underlay interface; the
		// peer's MAC is pinned so that no ARP has to cross a busy link.
		peer := tp.PeerMAC()
		if _, err := testnet.Try(tp.SW, "ip", "addr", "add", fmt.Sprintf("%v/%d", SwitchUnderlayIP, UnderlayPrefix), "dev", tp.UnderlayIf); err != nil {
			return err
		}
		if _, err := testnet.Try(tp.SW, "ip", "neigh", "replace", PeerUnderlayIP.String(), "lladdr",
			net.HardwareAddr(peer[:]).String(), "dev", tp.UnderlayIf, "nud", "permanent"); err != nil {
			return err
		}
	}
	// BENCH_XSWITCH_YAML: top-level settings to try (e.g. "busy_poll: true").
	s.x = e2e.StartXswitch(t, tp.SW, Config(tp, cpu)+os.Getenv("BENCH_XSWITCH_YAML")+"\n")
	for _, pid := range NamespacePIDs(tp.SW) {
		if err := Pin(pid, cpu); err != nil {
			return err
		}
	}
	if out, err := s.x.Ctl("show"); err == nil {
		s.mode = firstLines(out, 6)
	}
	return nil
}

// Stats returns `xswitch ctl stats` (for the log).
func (s *Xswitch) Stats() string {
	out, _ := s.x.Ctl("stats")
	return out
}

func firstLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[:n]
	}
	for i := range ls {
		ls[i] = strings.TrimSpace(ls[i])
	}
	return strings.Join(ls, "; ")
}

// Learned implements System: mac is in `xswitch ctl fdb`.
func (s *Xswitch) Learned(mac [6]byte) (bool, error) {
	out, err := s.x.Ctl("fdb")
	if err != nil {
		return false, err
	}
	return strings.Contains(strings.ToLower(out), net.HardwareAddr(mac[:]).String()), nil
}
