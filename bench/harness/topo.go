package harness

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"xswitch/bench/internal/report"
	"xswitch/internal/testnet"
)

// Fixed addresses of the benchmark topology (198.18.0.0/15 only).
var (
	SwitchUnderlayIP = netip.MustParseAddr("198.18.1.1") // the switch's tunnel endpoint
	PeerUnderlayIP   = netip.MustParseAddr("198.18.1.2") // the other tunnel endpoint: the sink (encap) or the generator (decap)
	UnderlayPrefix   = 24
	VNI              = uint32(5000)

	GenMAC      = [6]byte{0x02, 0xbe, 0x00, 0x01, 0x00, 0x01} // the generator interface (outer source on decap)
	FlowMAC     = [6]byte{0x02, 0xbe, 0x00, 0x00, 0x00, 0x01} // inner source MAC of flow 0 (flow i adds i)
	SinkMAC     = [6]byte{0x02, 0xbe, 0x00, 0x02, 0x00, 0x01} // the sink interface: a VM on local paths, the remote endpoint on encap
	RemoteVMMAC = [6]byte{0x02, 0xbe, 0x00, 0x03, 0x00, 0x01} // a VM behind the tunnel (encap destination)
	SwitchMAC   = [6]byte{0x02, 0xbe, 0x00, 0x04, 0x00, 0x01} // the switch's underlay interface
	InnerSrcIP  = netip.MustParseAddr("198.19.0.1")
	InnerDstIP  = netip.MustParseAddr("198.19.1.1")
)

var topoCounter atomic.Uint32

// MTU of every veth: a 1500-byte inner frame plus 50 bytes of Geneve fits.
const MTU = 1600

// Topo is the namespaces and veth pairs of one (system, path):
//
//	gen ns: GenIf ──veth── In (switch ns) [switch] Out ──veth── SinkIf (sink ns)
//
// One queue per veth, so one poller / PMD thread handles each port.
type Topo struct {
	Net           *testnet.Net
	Path          string
	Gen, SW, Sink string // namespaces
	GenIf, SinkIf string
	In, Out       string // switch-side interfaces
	UnderlayMAC   [6]byte
	UnderlayIsIn  bool // decap: the generator is the remote tunnel endpoint
	UnderlayIsOut bool // encap: the sink is the remote tunnel endpoint
	VMIfs         []string
	UnderlayIf    string
	NAPIPIDs      []int // kernel threads doing the switch's receive work (counted as switch CPU)
	SinkNAPIPIDs  []int // kernel threads doing the sink's receive work (on the generator CPU)
}

// NewTopo builds the topology for path in fresh namespaces owned by t.
func NewTopo(t testing.TB, path string) *Topo {
	t.Helper()
	n := testnet.New(t)
	// Interface names are unique on the machine, so that the NAPI kernel
	// threads of this topology ("napi/<dev>-<id>") can be found by name.
	id := fmt.Sprintf("%d%d", os.Getpid()%10000, topoCounter.Add(1))
	tp := &Topo{Net: n, Path: path, GenIf: "g" + id, SinkIf: "s" + id}
	tp.Gen, tp.SW, tp.Sink = n.NS("gen"), n.NS("sw"), n.NS("sink")
	vm0, vm1, ul := "vm"+id, "vn"+id, "ul"+id
	switch path {
	case report.PathEncap:
		tp.In, tp.Out, tp.UnderlayIsOut = vm0, ul, true
		tp.VMIfs, tp.UnderlayIf = []string{vm0}, ul
	case report.PathDecap:
		tp.In, tp.Out, tp.UnderlayIsIn = ul, vm0, true
		tp.VMIfs, tp.UnderlayIf = []string{vm0}, ul
	case report.PathLocal:
		tp.In, tp.Out = vm0, vm1
		tp.VMIfs = []string{vm0, vm1}
	case report.PathFwd:
		tp.In, tp.Out = "in"+id, "ou"+id
	default:
		t.Fatalf("harness: unknown path %q", path)
	}
	for _, ns := range []string{tp.Gen, tp.SW, tp.Sink} {
		// No IPv6 autoconfiguration chatter crossing the switch during runs.
		n.Run(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=1")
	}
	n.Veth(tp.Gen, tp.GenIf, tp.SW, tp.In, 1)
	n.Veth(tp.SW, tp.Out, tp.Sink, tp.SinkIf, 1)
	setLink := func(ns, dev string, mac [6]byte) {
		args := []string{"link", "set", "dev", dev, "mtu", fmt.Sprint(MTU)}
		if mac != ([6]byte{}) {
			args = append(args, "address", net.HardwareAddr(mac[:]).String())
		}
		n.Run(ns, "ip", args...)
	}
	setLink(tp.Gen, tp.GenIf, GenMAC)
	setLink(tp.Sink, tp.SinkIf, SinkMAC)
	setLink(tp.SW, tp.In, [6]byte{})
	setLink(tp.SW, tp.Out, [6]byte{})
	if tp.UnderlayIf != "" {
		setLink(tp.SW, tp.UnderlayIf, SwitchMAC)
		tp.UnderlayMAC = SwitchMAC
		peer := tp.Sink + " " + tp.SinkIf
		if tp.UnderlayIsIn {
			peer = tp.Gen + " " + tp.GenIf
		}
		f := strings.Fields(peer)
		n.Run(f[0], "ip", "addr", "add", fmt.Sprintf("%v/%d", PeerUnderlayIP, UnderlayPrefix), "dev", f[1])
	}
	return tp
}

// PeerMAC is the MAC of the remote tunnel endpoint (sink on encap, generator on decap).
func (tp *Topo) PeerMAC() [6]byte {
	if tp.UnderlayIsIn {
		return GenMAC
	}
	return SinkMAC
}

// InterfaceMAC reads a device's MAC inside ns.
func InterfaceMAC(ns, dev string) ([6]byte, error) {
	out, err := testnet.Try(ns, "cat", "/sys/class/net/"+dev+"/address")
	if err != nil {
		return [6]byte{}, err
	}
	hw, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil || len(hw) != 6 {
		return [6]byte{}, fmt.Errorf("MAC of %s in %s: %q", dev, ns, out)
	}
	return [6]byte(hw), nil
}

// ThreadedNAPI switches dev (in ns) to threaded NAPI and pins its NAPI
// kernel threads to cpu. On veth, the receive work of a frame (XDP, the copy
// into an AF_XDP socket) otherwise runs on the CPU of the sender: threaded
// NAPI puts the switch's receive work on the switch's CPU and the sink's on
// the generator's, as a NIC's queue interrupt would be steered. dev must
// have its NAPI instances (veth: an XDP program attached).
// It returns the pids of those threads.
func ThreadedNAPI(ns, dev string, cpu int) ([]int, error) {
	if _, err := testnet.Try(ns, "sh", "-c", "echo 1 > /sys/class/net/"+dev+"/threaded"); err != nil {
		return nil, fmt.Errorf("threaded NAPI on %s: %w", dev, err)
	}
	out, err := exec.Command("ps", "-e", "-o", "pid=,comm=").Output()
	if err != nil {
		return nil, fmt.Errorf("ps: %w", err)
	}
	var pids []int
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || !strings.HasPrefix(f[1], "napi/"+dev+"-") {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		if out, err := exec.Command("taskset", "-p", "-c", strconv.Itoa(cpu), f[0]).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pin NAPI thread %d of %s to CPU %d: %w: %s", pid, dev, cpu, err, out)
		}
		pids = append(pids, pid)
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no NAPI thread napi/%s-* found", dev)
	}
	return pids, nil
}
