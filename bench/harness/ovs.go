package harness

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"xswitch/bench/internal/report"
	"xswitch/internal/ovspeer"
)

// OVS is Open vSwitch 3.1's userspace (netdev) datapath with AF_XDP ports
// (native XDP), a Geneve port and the NORMAL action (MAC learning), its PMD
// thread pinned to the switch CPU (pmd-cpu-mask), with pmd-maxsleep
// OVSMaxSleep; every other ovs-vswitchd thread is moved to that CPU too.
type OVS struct {
	o    *ovspeer.OVS
	mode string
}

// Name implements System.
func (s *OVS) Name() string { return report.SystemOVS }

// Mode implements System.
func (s *OVS) Mode() string { return s.mode }

// Start implements System.
func (s *OVS) Start(t testing.TB, tp *Topo, cpu int) error {
	o := ovspeer.Start(t, tp.SW, ovspeer.Config{OtherConfig: map[string]string{
		"pmd-cpu-mask": fmt.Sprintf("%#x", 1<<cpu),
		"pmd-maxsleep": OVSMaxSleep,
	}})
	s.o = o
	addVM := func(br, dev string) error {
		if _, err := o.Vsctl("add-port", br, dev, "--", "set", "interface", dev, "type=afxdp",
			"options:xdp-mode=native", "options:n_rxq=1"); err != nil {
			return err
		}
		return o.WaitPort(dev, 20*time.Second)
	}
	ul := netip.PrefixFrom(SwitchUnderlayIP, UnderlayPrefix)
	switch tp.Path {
	case report.PathEncap, report.PathDecap:
		o.AddUnderlay("br0", tp.UnderlayIf, ul)
		o.AddBridge("br1")
		if err := addVM("br1", tp.VMIfs[0]); err != nil {
			return err
		}
		o.AddGeneve("br1", "gnv0", PeerUnderlayIP, fmt.Sprintf("key=%d", VNI))
		mac, err := InterfaceMAC(tp.SW, "br0")
		if err != nil {
			return err
		}
		tp.UnderlayMAC = mac
		peer := tp.PeerMAC()
		if _, err := o.Appctl("tnl/arp/set", "br0", PeerUnderlayIP.String(), net.HardwareAddr(peer[:]).String()); err != nil {
			return err
		}
	case report.PathLocal:
		o.AddBridge("br1")
		for _, dev := range tp.VMIfs {
			if err := addVM("br1", dev); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("ovs: path %q not supported", tp.Path)
	}
	pid, err := readPidFile(filepath.Join(o.Dir, "ovs-vswitchd.pid"))
	if err != nil {
		return err
	}
	if err := Pin(pid, cpu); err != nil {
		return err
	}
	v, _ := o.Vsctl("get", "Open_vSwitch", ".", "ovs_version")
	s.mode = "OVS " + strings.Trim(strings.TrimSpace(v), `"`) + " netdev datapath, afxdp ports (xdp-mode=native), NORMAL"
	return nil
}

// PMDStats returns `dpif-netdev/pmd-stats-show` (for the log).
func (s *OVS) PMDStats() string {
	if s.o == nil {
		return ""
	}
	out, _ := s.o.Appctl("dpif-netdev/pmd-stats-show")
	return out
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %q", path, b)
	}
	return pid, nil
}

// Learned implements System: mac is in br1's fdb/show.
func (s *OVS) Learned(mac [6]byte) (bool, error) {
	es, err := s.o.FDB("br1")
	if err != nil {
		return false, err
	}
	want := net.HardwareAddr(mac[:]).String()
	for _, e := range es {
		if e.MAC == want {
			return true, nil
		}
	}
	return false, nil
}

// OVSMaxSleep is Open vSwitch's pmd-maxsleep (microseconds) in the runs
// (BENCH_OVS_MAXSLEEP). The PMD shares the switch CPU with the NAPI thread
// that fills its RX ring; a PMD that never sleeps (0) takes CPU time from
// that thread and forwards about a third less here (0.30 against 0.45 Mpps
// at 64 bytes); 10 to 500 µs all do about as well, 50 is the default.
var OVSMaxSleep = "50"
