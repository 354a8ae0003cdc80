package harness

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"xswitch/internal/testnet"
)

// VMMTU is the MTU of the VMs' interfaces in the TCP benchmark: a full VM
// frame fits the tunnel (underlay 1500 - 50 bytes of Geneve over IPv4).
const VMMTU = 1450

// TCPHost is one host of the TCP topology: its namespace with the switch
// under test, the underlay veth into the wire, and a VM namespace behind a
// veth attached to the switch as a local port.
type TCPHost struct {
	NS, VM      string
	Underlay    string // underlay veth in NS (unique name, for its NAPI thread)
	VMPort      string // the VM's veth, switch side, in NS (unique name); "eth0" in VM
	UnderlayIP  netip.Addr
	UnderlayMAC [6]byte
	InnerIP     netip.Addr // the internal port br1
	VMIP        netip.Addr
	NAPIPIDs    []int // threaded NAPI of Underlay and VMPort (switch CPU)
}

// TCPTopo is the TCP benchmark's topology, the one of cmd/xswitch's
// tcp_e2e_test.go:
//
//	vm1 ns ──veth── [h1: switch, br1] ──veth── wire ns (Linux bridge) ──veth── [h2: switch, br1] ──veth── vm2 ns
//
// The hosts are joined by a Geneve tunnel with key 5000 over the wire. One
// queue per veth.
type TCPTopo struct {
	Net    *testnet.Net
	Wire   string
	Hosts  [2]*TCPHost
	AppCPU int // CPU of iperf3, the VMs' and hosts' receive work and the wire
}

// NewTCPTopo builds the TCP topology in fresh namespaces owned by t. The
// wire's and the VMs' receive work is steered to appCPU with RPS: veth does
// a receiver's work on the sender's CPU otherwise, which would put the wire
// and the VMs' TCP stacks on the switch CPU.
func NewTCPTopo(t testing.TB, appCPU int) *TCPTopo {
	t.Helper()
	n := testnet.New(t)
	id := fmt.Sprintf("%d%d", os.Getpid()%10000, topoCounter.Add(1))
	tp := &TCPTopo{Net: n, Wire: n.NS("tcpwire"), AppCPU: appCPU}
	noIPv6(n, tp.Wire)
	n.Run(tp.Wire, "ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0", "stp_state", "0")
	n.Run(tp.Wire, "ip", "link", "set", "br0", "up")
	for i := range tp.Hosts {
		sfx := string(rune('a' + i))
		h := &TCPHost{
			NS: n.NS(fmt.Sprintf("tcph%d", i+1)), VM: n.NS(fmt.Sprintf("tcpvm%d", i+1)),
			Underlay: "tu" + id + sfx, VMPort: "tv" + id + sfx,
			UnderlayIP:  netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}),
			UnderlayMAC: [6]byte{0x02, 0xbe, 0x10, 0x00, 0x00, byte(i + 1)},
			InnerIP:     netip.AddrFrom4([4]byte{198, 19, 0, byte(i + 1)}),
			VMIP:        netip.AddrFrom4([4]byte{198, 19, 0, byte(21 + i)}),
		}
		noIPv6(n, h.NS)
		noIPv6(n, h.VM)
		wp := "tw" + id + sfx
		n.Veth(h.NS, h.Underlay, tp.Wire, wp, 1)
		n.Run(tp.Wire, "ip", "link", "set", wp, "master", "br0")
		n.Run(h.NS, "ip", "link", "set", h.Underlay, "address", net.HardwareAddr(h.UnderlayMAC[:]).String())
		n.Veth(h.NS, h.VMPort, h.VM, "eth0", 1)
		n.Run(h.VM, "ip", "link", "set", "eth0", "mtu", fmt.Sprint(VMMTU))
		n.Run(h.VM, "ip", "addr", "add", h.VMIP.String()+"/24", "dev", "eth0")
		for _, d := range [][2]string{{tp.Wire, wp}, {h.VM, "eth0"}} {
			if err := RPS(d[0], d[1], appCPU); err != nil {
				t.Fatal(err)
			}
		}
		tp.Hosts[i] = h
	}
	return tp
}

func noIPv6(n *testnet.Net, ns string) {
	// No IPv6 autoconfiguration chatter crossing the switches during runs.
	n.Run(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=1")
}

// Peer returns the other host.
func (tp *TCPTopo) Peer(h *TCPHost) *TCPHost {
	if h == tp.Hosts[0] {
		return tp.Hosts[1]
	}
	return tp.Hosts[0]
}

// RPS steers the receive processing of dev's queue 0 (in ns) to cpu.
func RPS(ns, dev string, cpu int) error {
	q := "/sys/class/net/" + dev + "/queues/rx-0/rps_cpus"
	if _, err := testnet.Try(ns, "sh", "-c", fmt.Sprintf("echo %x > %s", uint64(1)<<cpu, q)); err != nil {
		return fmt.Errorf("RPS of %s to CPU %d: %w", dev, cpu, err)
	}
	return nil
}

// SetVMTxOffload turns the VMs' TX checksum offload on (veth's default) or
// off (ethtool -K eth0 tx off; TSO goes with it).
func (tp *TCPTopo) SetVMTxOffload(on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	for _, h := range tp.Hosts {
		if _, err := testnet.Try(h.VM, "ethtool", "-K", "eth0", "tx", v); err != nil {
			return err
		}
		out, err := testnet.Try(h.VM, "ethtool", "-k", "eth0")
		if err != nil {
			return err
		}
		if want := "tx-checksumming: " + v; !strings.Contains(out, want) {
			return fmt.Errorf("VM %s: ethtool -k eth0 does not say %q:\n%s", h.VM, want, out)
		}
	}
	return nil
}

// Reachable pings dst from ns until a reply comes (bounded): ARP and the
// switches' MAC tables settle before a measurement.
func Reachable(ns string, dst netip.Addr) error {
	var last string
	for i := 0; i < 15; i++ {
		out, err := testnet.Try(ns, "ping", "-c", "1", "-W", "1", dst.String())
		if err == nil {
			return nil
		}
		last = out
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no ping reply from %v in %s: %s", dst, ns, last)
}

// Drops reads rx_dropped + tx_dropped of every interface on the path:
// "h1/<underlay>", "h1/<vm port>", "h1/br1", "vm1/eth0", ... (an interface
// that cannot be read is left out).
func (tp *TCPTopo) Drops() map[string]uint64 {
	m := map[string]uint64{}
	for i, h := range tp.Hosts {
		for _, d := range [][3]string{{h.NS, h.Underlay, "h"}, {h.NS, h.VMPort, "h"}, {h.NS, "br1", "h"}, {h.VM, "eth0", "vm"}} {
			out, err := testnet.Try(d[0], "cat", "/sys/class/net/"+d[1]+"/statistics/rx_dropped", "/sys/class/net/"+d[1]+"/statistics/tx_dropped")
			if err != nil {
				continue
			}
			var sum uint64
			for _, f := range strings.Fields(out) {
				n, _ := strconv.ParseUint(f, 10, 64)
				sum += n
			}
			m[fmt.Sprintf("%s%d/%s", d[2], i+1, d[1])] = sum
		}
	}
	return m
}

// DropsSince returns the non-zero increases from before to after.
func DropsSince(before, after map[string]uint64) map[string]uint64 {
	var m map[string]uint64
	for k, v := range after {
		if v > before[k] {
			if m == nil {
				m = map[string]uint64{}
			}
			m[k] = v - before[k]
		}
	}
	return m
}
