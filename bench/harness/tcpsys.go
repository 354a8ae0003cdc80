package harness

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xswitch/bench/internal/report"
	"xswitch/internal/e2e"
	"xswitch/internal/ovspeer"
	"xswitch/internal/testnet"
)

// TCPSystem is a switch under test in the TCP benchmark, run on both hosts
// of a TCPTopo.
type TCPSystem interface {
	Name() string
	// Start brings the switch up on both hosts: bridge br1 with the
	// internal port (InnerIP/24), the VM port and a Geneve tunnel (key
	// VNI) to the other host; pinned to cpu. Cleanup goes through t.
	Start(t testing.TB, tp *TCPTopo, cpu int) error
	Mode() string
	// PIDs are the switch processes of host i (0 or 1).
	PIDs(i int) []int
}

// tcpSystemsFor returns the TCP systems named.
func tcpSystemsFor(t *testing.T, names []string) []func() TCPSystem {
	var out []func() TCPSystem
	for _, n := range names {
		switch n {
		case report.SystemOVS:
			out = append(out, func() TCPSystem { return &tcpOVS{} })
		case report.SystemXswitch:
			out = append(out, func() TCPSystem { return &tcpXswitch{} })
		default:
			t.Fatalf("BENCH_TCP_SYSTEMS: unknown system %q (xswitch, ovs)", n)
		}
	}
	return out
}

// tcpXswitch is `xswitch run` on each host, pollers pinned by `cpus`, every
// other thread moved to the same CPU.
type tcpXswitch struct {
	x    [2]*e2e.Xswitch
	mode string
}

func (s *tcpXswitch) Name() string     { return report.SystemXswitch }
func (s *tcpXswitch) Mode() string     { return s.mode }
func (s *tcpXswitch) PIDs(i int) []int { return []int{s.x[i].Pid()} }

// TCPConfig is the xswitch YAML of host h.
func TCPConfig(tp *TCPTopo, h *TCPHost, cpu int) string {
	return fmt.Sprintf(`underlay:
  interface: %s
cpus: [%d]
bridges:
  - name: br1
    addresses: [%s/24]
    ports: [%s]
    tunnels:
      - remote_ip: %s
        key: %d
`, h.Underlay, cpu, h.InnerIP, h.VMPort, tp.Peer(h).UnderlayIP, VNI)
}

func (s *tcpXswitch) Start(t testing.TB, tp *TCPTopo, cpu int) error {
	for i, h := range tp.Hosts {
		p := tp.Peer(h)
		if _, err := testnet.Try(h.NS, "ip", "addr", "add", h.UnderlayIP.String()+"/24", "dev", h.Underlay); err != nil {
			return err
		}
		// The peer's MAC is pinned so that no ARP has to cross a busy link.
		if _, err := testnet.Try(h.NS, "ip", "neigh", "replace", p.UnderlayIP.String(), "lladdr",
			net.HardwareAddr(p.UnderlayMAC[:]).String(), "dev", h.Underlay, "nud", "permanent"); err != nil {
			return err
		}
		s.x[i] = e2e.StartXswitch(t, h.NS, TCPConfig(tp, h, cpu)+os.Getenv("BENCH_XSWITCH_YAML")+"\n")
		if err := Pin(s.x[i].Pid(), cpu); err != nil {
			return err
		}
	}
	if out, err := s.x[0].Ctl("show"); err == nil {
		s.mode = firstLines(out, 8)
	}
	return nil
}

// tcpOVS is Open vSwitch 3.1's userspace datapath on each host, one
// instance per host (own database and run directory), as in the packet
// benchmark: AF_XDP ports (native XDP), a Geneve port, NORMAL, the PMD
// thread on cpu (pmd-cpu-mask), pmd-maxsleep OVSMaxSleep, every thread
// pinned to cpu. The internal port br1 gets the tunnel MTU (VMMTU), as
// xswitch's does by default.
type tcpOVS struct {
	o    [2]*ovspeer.OVS
	pid  [2]int
	mode string
}

func (s *tcpOVS) Name() string     { return report.SystemOVS }
func (s *tcpOVS) Mode() string     { return s.mode }
func (s *tcpOVS) PIDs(i int) []int { return []int{s.pid[i]} }

func (s *tcpOVS) Start(t testing.TB, tp *TCPTopo, cpu int) error {
	for i, h := range tp.Hosts {
		o := ovspeer.Start(t, h.NS, ovspeer.Config{OtherConfig: map[string]string{
			"pmd-cpu-mask": fmt.Sprintf("%#x", 1<<cpu),
			"pmd-maxsleep": OVSMaxSleep,
		}})
		s.o[i] = o
		o.AddUnderlay("br0", h.Underlay, netip.PrefixFrom(h.UnderlayIP, 24))
		o.AddBridge("br1", netip.PrefixFrom(h.InnerIP, 24))
		if _, err := o.Vsctl("set", "interface", "br1", fmt.Sprintf("mtu_request=%d", VMMTU)); err != nil {
			return err
		}
		if _, err := o.Vsctl("add-port", "br1", h.VMPort, "--", "set", "interface", h.VMPort, "type=afxdp",
			"options:xdp-mode=native", "options:n_rxq=1"); err != nil {
			return err
		}
		if err := o.WaitPort(h.VMPort, 20*time.Second); err != nil {
			return err
		}
		o.AddGeneve("br1", "gnv0", tp.Peer(h).UnderlayIP, fmt.Sprintf("key=%d", VNI))
		pid, err := readPidFile(filepath.Join(o.Dir, "ovs-vswitchd.pid"))
		if err != nil {
			return err
		}
		s.pid[i] = pid
		if err := Pin(pid, cpu); err != nil {
			return err
		}
	}
	// The tunnel neighbour: the other host's br0 (where its tunnel
	// endpoint address lives), pinned as for xswitch.
	for i, h := range tp.Hosts {
		p := tp.Peer(h)
		mac, err := InterfaceMAC(p.NS, "br0")
		if err != nil {
			return err
		}
		if _, err := s.o[i].Appctl("tnl/arp/set", "br0", p.UnderlayIP.String(), net.HardwareAddr(mac[:]).String()); err != nil {
			return err
		}
	}
	v, _ := s.o[0].Vsctl("get", "Open_vSwitch", ".", "ovs_version")
	s.mode = "OVS " + strings.Trim(strings.TrimSpace(v), `"`) + " netdev datapath, afxdp ports (xdp-mode=native), geneve, NORMAL, br1 tap mtu " + fmt.Sprint(VMMTU)
	return nil
}
