package main_test

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"xswitch/internal/e2e"
	"xswitch/internal/frrpeer"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
	vswitch "xswitch/switch"
)

// TestFabricDemo is `make fabric-demo` (XSWITCH_FABRIC_DEMO=1; hosts from
// XSWITCH_FABRIC_HOSTS, default 16): N xswitch hosts with one VM namespace
// each, measured twice — with BGP EVPN through two FRR reflectors and no
// tunnels configured, and with a static full mesh of tunnels — for the
// figures of docs/fabric.md:
//
//   - time from the first xswitch start to every VM answering every other
//     VM's ping (N*(N-1) pairs);
//   - frames into tunnels meanwhile: the sum over hosts of the tunnels' TX
//     packets, and of the flood copies (ctl stats flood_copies);
//   - EVPN only: after kill -9 of one host, the time until every other
//     host's ctl show has no tunnel to it; after VM 1 moves from host 1 to
//     host 2 (its interface down there, an identical VM — same MAC and
//     address — up on host 2, pinging), the time until host 3's ctl fdb
//     has the MAC on the tunnel to host 2;
//   - after host N-1's underlay link goes down (alive but silent), the
//     time until every other host's ctl show has no tunnel to it;
//   - the resident memory (VmRSS) of each xswitch.
func TestFabricDemo(t *testing.T) {
	if os.Getenv("XSWITCH_FABRIC_DEMO") == "" {
		t.Skip("the fabric demo runs with XSWITCH_FABRIC_DEMO=1 (make fabric-demo)")
	}
	testnet.RequireRoot(t)
	n := 16
	if s := os.Getenv("XSWITCH_FABRIC_HOSTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	t.Run("evpn", func(t *testing.T) { demo(t, n, true) })
	t.Run("static", func(t *testing.T) { demo(t, n, false) })
}

type demoFabric struct {
	hosts []*e2e.Host
	vms   []string // VM namespaces
	xs    []*e2e.Xswitch
	net   *testnet.Net
}

func vmIP(i int) string { return fmt.Sprintf("198.19.0.%d", 100+i+1) }

func vmMAC(i int) string { return fmt.Sprintf("02:00:00:00:01:%02x", i+1) }

func demoConfig(hosts []*e2e.Host, i int, useEVPN bool) string {
	h := hosts[i]
	var b strings.Builder
	fmt.Fprintf(&b, "underlay:\n  interface: eth0\n  local_ip: %s\nbridges:\n  - name: br1\n    address: 198.19.0.%d/24\n    ports: [vm", h.IP4, i+1)
	if useEVPN && i == 1 {
		b.WriteString(", vmb") // where VM 1 moves to
	}
	b.WriteString("]\n")
	if useEVPN {
		fmt.Fprintf(&b, "    vni: 5000\nevpn:\n  asn: 65000\n  hold_time: 3s\n  neighbors: [{address: %s}, {address: %s}]\n", evpnRR1, evpnRR2)
		return b.String()
	}
	b.WriteString("    tunnels:\n")
	for j, o := range hosts {
		if j != i {
			fmt.Fprintf(&b, "      - {remote_ip: %s, key: 5000}\n", o.IP4)
		}
	}
	return b.String()
}

// addVM creates namespace label with eth0 (mac, ip) whose peer port is in
// host namespace hostNS.
func (d *demoFabric) addVM(label, hostNS, port, mac, ip string) string {
	ns := d.net.NS(label)
	d.net.Run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
	d.net.Veth(ns, "eth0", hostNS, port, 1)
	d.net.Run(ns, "ip", "link", "set", "eth0", "address", mac)
	d.net.Run(ns, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	return ns
}

func demo(t *testing.T, n int, useEVPN bool) {
	wire, hosts := e2e.Topology(t, n)
	d := &demoFabric{hosts: hosts, net: testnet.New(t)}
	for i, h := range hosts {
		// No IPv6 on the new interfaces (TAP, VM veth): its router
		// solicitations and MLD reports would be floods of their own.
		d.net.Run(h.NS, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
		d.vms = append(d.vms, d.addVM(fmt.Sprintf("vm%d", i+1), h.NS, "vm", vmMAC(i), vmIP(i)))
	}
	var moved string
	if useEVPN {
		frrpeer.Require(t)
		frrpeer.Sweep()
		for i, addr := range []string{evpnRR1, evpnRR2} {
			ns := d.net.NS(fmt.Sprintf("rr%d", i+1))
			port := fmt.Sprintf("r%d", i+1)
			d.net.Veth(ns, "eth0", wire, port, 0)
			d.net.Run(wire, "ip", "link", "set", port, "master", "br0")
			d.net.Run(ns, "ip", "addr", "add", addr+"/24", "dev", "eth0")
			frrpeer.Start(t, ns, frrpeer.Options{ASN: 65000, Addr: addr, ListenRange: "198.18.0.0/24"})
		}
		moved = d.addVM("vm1b", hosts[1].NS, "vmb", vmMAC(0), vmIP(0))
		d.net.Run(moved, "ip", "link", "set", "eth0", "down")
	}
	mode := map[bool]string{true: "evpn", false: "static full mesh"}[useEVPN]
	e2e.Binary(t) // built before the clock starts
	start := time.Now()
	for i, h := range hosts {
		d.xs = append(d.xs, e2e.StartXswitch(t, h.NS, demoConfig(hosts, i, useEVPN)))
	}
	started := time.Since(start)
	d.pingAllVMs(t, 120*time.Second)
	allPairs := time.Since(start)
	tunTx, floods := d.floodFigures(t)
	t.Logf("FIGURE %s: %d hosts started in %v; all %d VM pairs answer %v after the first start; tunnel TX packets %d, flood copies %d",
		mode, n, started.Round(time.Millisecond), n*(n-1), allPairs.Round(time.Millisecond), tunTx, floods)
	d.memory(t, mode)
	if !useEVPN {
		return
	}
	d.move(t, moved)
	d.kill(t)
	d.cut(t, wire)
}

// pingAllVMs pings every VM from every VM, in parallel per source VM,
// each pair retried until it answers or the deadline passes.
func (d *demoFabric) pingAllVMs(t *testing.T, deadline time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	end := time.Now().Add(deadline)
	sem := make(chan struct{}, 2*runtime.NumCPU()+4) // bounded: a machine shared with others
	for i, vm := range d.vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range d.vms {
				if j == i {
					continue
				}
				for {
					sem <- struct{}{}
					_, err := testnet.Try(vm, "ping", "-c1", "-W1", "-q", vmIP(j))
					<-sem
					if err == nil {
						break
					}
					if time.Now().After(end) {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("vm%d -> vm%d", i+1, j+1))
						mu.Unlock()
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("no answer within %v: %s", deadline, strings.Join(failed, ", "))
	}
}

func (d *demoFabric) floodFigures(t *testing.T) (tunTx, floods uint64) {
	for _, x := range d.xs {
		var st vswitch.Stats
		if err := x.CtlJSON(&st, "stats"); err != nil {
			t.Fatal(err)
		}
		for _, tu := range st.Tunnels {
			tunTx += tu.TxPackets
		}
		floods += st.FloodCopies
	}
	return tunTx, floods
}

func (d *demoFabric) memory(t *testing.T, mode string) {
	var rss []int
	for _, x := range d.xs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", x.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				rss = append(rss, kb)
			}
		}
	}
	sort.Ints(rss)
	sum := 0
	for _, k := range rss {
		sum += k
	}
	t.Logf("FIGURE %s: RSS per xswitch: min %d KiB, median %d KiB, max %d KiB, mean %d KiB", mode, rss[0], rss[len(rss)/2], rss[len(rss)-1], sum/len(rss))
}

// move: VM 1 leaves host 1 (interface down) and appears on host 2 (same
// MAC and address), pinging VM 3; host 3's table must follow.
func (d *demoFabric) move(t *testing.T, moved string) {
	mac, newHost := vmMAC(0), d.hosts[1].IP4.String()
	t0 := time.Now()
	d.net.Run(d.vms[0], "ip", "link", "set", "eth0", "down")
	d.net.Run(moved, "ip", "link", "set", "eth0", "up")
	pinger := testnet.Cmd(moved, "ping", "-i", "0.2", "-W1", vmIP(2))
	if err := pinger.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pinger.Process.Kill(); _ = pinger.Wait() }()
	wait.For(t, 30*time.Second, "host 3 has VM 1's MAC on the tunnel to host 2", func() bool {
		var fdb []vswitch.FDBEntry
		if err := d.xs[2].CtlJSON(&fdb, "fdb"); err != nil {
			t.Fatal(err)
		}
		for _, e := range fdb {
			if e.MAC == mac && e.Remote == newHost {
				return true
			}
		}
		return false
	})
	took := time.Since(t0)
	wait.For(t, 10*time.Second, "VM 1 answers from host 2", func() bool {
		_, err := testnet.Try(d.vms[3], "ping", "-c1", "-W1", "-q", vmIP(0))
		return err == nil
	})
	t.Logf("FIGURE evpn: VM MAC move host 1 -> host 2 seen at host 3 after %v; VM 4 reaches the moved VM after %v",
		took.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

// kill: kill -9 of the last host; every other host drops its tunnel.
func (d *demoFabric) kill(t *testing.T) {
	last := len(d.xs) - 1
	gone := d.hosts[last].IP4.String()
	t0 := time.Now()
	d.xs[last].Kill9()
	for i := range last {
		wait.For(t, 30*time.Second, fmt.Sprintf("h%d drops the tunnel to the killed host", i+1), func() bool {
			_, ok := tunnelsOf(t, d.xs[i])[gone]
			return !ok
		})
	}
	t.Logf("FIGURE evpn: kill -9 of host %d: its tunnel gone at all %d others after %v", last+1, last, time.Since(t0).Round(time.Millisecond))
}

// cut: the underlay link of host N-1 goes down in the wire namespace (the
// host is alive but silent): the reflectors drop its routes after their
// hold time (3 s), every other host its tunnel.
func (d *demoFabric) cut(t *testing.T, wire string) {
	i := len(d.xs) - 2
	gone := d.hosts[i].IP4.String()
	t0 := time.Now()
	d.net.Run(wire, "ip", "link", "set", fmt.Sprintf("w%d", i+1), "down")
	for j := range i {
		wait.For(t, 30*time.Second, fmt.Sprintf("h%d drops the tunnel to the cut-off host", j+1), func() bool {
			_, ok := tunnelsOf(t, d.xs[j])[gone]
			return !ok
		})
	}
	t.Logf("FIGURE evpn: host %d cut off (link down): its tunnel gone at all %d others after %v (reflector hold time 3 s)", i+1, i, time.Since(t0).Round(time.Millisecond))
}
