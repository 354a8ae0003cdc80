package main_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"xswitch/evpn"
	"xswitch/internal/e2e"
	"xswitch/internal/frrpeer"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
	vswitch "xswitch/switch"
)

// evpnFabric is n xswitch hosts (internal/e2e.Topology) and two FRR route
// reflectors on the same wire, every host with one bridge br1 (VNI 5000,
// 198.19.0.<i+1>/24 on its internal port) and no tunnels configured.
type evpnFabric struct {
	hosts []*e2e.Host
	xs    []*e2e.Xswitch
	rrs   []*frrpeer.Reflector
}

const evpnRR1, evpnRR2 = "198.18.0.201", "198.18.0.202"

func evpnConfig(h *e2e.Host, i int) string {
	return fmt.Sprintf(`underlay:
  interface: eth0
  local_ip: %s
bridges:
  - name: br1
    vni: 5000
    address: 198.19.0.%d/24
evpn:
  asn: 65000
  hold_time: 3s
  neighbors:
    - address: %s
    - address: %s
`, h.IP4, i+1, evpnRR1, evpnRR2)
}

func startEVPNFabric(t *testing.T, n int) *evpnFabric {
	testnet.RequireRoot(t)
	frrpeer.Require(t)
	frrpeer.Sweep()
	wire, hosts := e2e.Topology(t, n)
	net := testnet.New(t)
	f := &evpnFabric{hosts: hosts}
	for i, addr := range []string{evpnRR1, evpnRR2} {
		ns := net.NS(fmt.Sprintf("rr%d", i+1))
		port := fmt.Sprintf("r%d", i+1)
		net.Veth(ns, "eth0", wire, port, 0)
		net.Run(wire, "ip", "link", "set", port, "master", "br0")
		net.Run(ns, "ip", "addr", "add", addr+"/24", "dev", "eth0")
		f.rrs = append(f.rrs, frrpeer.Start(t, ns, frrpeer.Options{ASN: 65000, Addr: addr, ListenRange: "198.18.0.0/24"}))
	}
	for i, h := range hosts {
		f.xs = append(f.xs, e2e.StartXswitch(t, h.NS, evpnConfig(h, i)))
	}
	return f
}

func bgpOf(t *testing.T, x *e2e.Xswitch) evpn.Status {
	t.Helper()
	var st evpn.Status
	if err := x.CtlJSON(&st, "bgp"); err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *evpnFabric) waitEstablished(t *testing.T) {
	for i, x := range f.xs {
		wait.For(t, 30*time.Second, fmt.Sprintf("h%d: both BGP sessions established", i+1), func() bool {
			st := bgpOf(t, x)
			up := 0
			for _, n := range st.Neighbors {
				if n.State == "established" {
					up++
				}
			}
			return up == 2
		})
	}
}

// pingAll pings every other host's br1 from every host (in parallel per
// source host), each pair retried until it answers or the deadline passes.
func (f *evpnFabric) pingAll(t *testing.T, alive []bool, deadline time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	end := time.Now().Add(deadline)
	for i, h := range f.hosts {
		if !alive[i] {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range f.hosts {
				if j == i || !alive[j] {
					continue
				}
				dst := fmt.Sprintf("198.19.0.%d", j+1)
				for {
					_, err := testnet.Try(h.NS, "ping", "-c1", "-W1", "-q", dst)
					if err == nil {
						break
					}
					if time.Now().After(end) {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("h%d -> %s", i+1, dst))
						mu.Unlock()
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		for _, x := range f.xs[:1] {
			for _, c := range []string{"show", "fdb", "stats", "bgp"} {
				out, _ := x.Ctl(c)
				t.Logf("%s ctl %s:\n%s", x.NS(), c, out)
			}
		}
		t.Fatalf("no answer within %v: %s", deadline, strings.Join(failed, ", "))
	}
}

func tunnelsOf(t *testing.T, x *e2e.Xswitch) map[string]string {
	t.Helper()
	var st vswitch.Status
	if err := x.CtlJSON(&st, "show"); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, b := range st.Bridges {
		for _, tu := range b.Tunnels {
			out[tu.Remote] = tu.Source
		}
	}
	return out
}

// TestEVPNFabricWithFRR: four xswitch hosts with no tunnels configured find
// each other through two FRR route reflectors (BGP EVPN), ping all pairs,
// show their EVPN tunnels and MACs, and forget a host killed with -9
// within the reflectors' hold time (3 s).
func TestEVPNFabricWithFRR(t *testing.T) {
	const n = 4
	start := time.Now()
	f := startEVPNFabric(t, n)
	f.waitEstablished(t)
	alive := []bool{true, true, true, true}
	f.pingAll(t, alive, 30*time.Second)
	t.Logf("all %d pairs answer %v after the start", n*(n-1), time.Since(start).Round(time.Millisecond))

	// Tunnels: one per other host, from EVPN.
	for i, x := range f.xs {
		got := tunnelsOf(t, x)
		for j, h := range f.hosts {
			if j == i {
				continue
			}
			if got[h.IP4.String()] != "evpn" {
				t.Errorf("h%d: tunnel to %v: source %q, want evpn (tunnels %v)", i+1, h.IP4, got[h.IP4.String()], got)
			}
		}
		if len(got) != n-1 {
			t.Errorf("h%d: %d tunnels, want %d: %v", i+1, len(got), n-1, got)
		}
	}
	// MACs: h1's table has the other hosts' internal MACs from EVPN.
	var fdb []vswitch.FDBEntry
	if err := f.xs[0].CtlJSON(&fdb, "fdb"); err != nil {
		t.Fatal(err)
	}
	evpnMACs := map[string]string{}
	for _, e := range fdb {
		if e.Source == "evpn" {
			evpnMACs[e.MAC] = e.Remote
		}
	}
	for j := 1; j < n; j++ {
		var st vswitch.Status
		if err := f.xs[j].CtlJSON(&st, "show"); err != nil {
			t.Fatal(err)
		}
		mac := ""
		for _, p := range st.Bridges[0].Ports {
			if p.Kind == "internal" {
				mac = p.MAC
			}
		}
		if evpnMACs[mac] != f.hosts[j].IP4.String() {
			t.Errorf("h1 fdb: h%d's internal MAC %s: remote %q from evpn, want %v (evpn entries %v)", j+1, mac, evpnMACs[mac], f.hosts[j].IP4, evpnMACs)
		}
	}
	text, err := f.xs[0].Ctl("fdb")
	if err != nil || !strings.Contains(text, "evpn") {
		t.Errorf("ctl fdb (text) shows no evpn source: %v\n%s", err, text)
	}
	t.Logf("h1 ctl fdb:\n%s", text)
	if text, err := f.xs[0].Ctl("show"); err != nil || !strings.Contains(text, "(evpn)") {
		t.Errorf("ctl show (text) shows no evpn tunnel: %v\n%s", err, text)
	}
	// ctl bgp: both neighbours, routes counted; the text form too.
	st := bgpOf(t, f.xs[0])
	if len(st.VNIs) != 1 || len(st.VNIs[0].FloodVTEPs) != n-1 || st.VNIs[0].RemoteMACs < n-1 {
		t.Errorf("h1 ctl bgp: VNIs %+v; want VNI 5000 with %d flood VTEPs and at least %d remote MACs", st.VNIs, n-1, n-1)
	}
	for _, nb := range st.Neighbors {
		if nb.State != "established" || nb.Received == 0 {
			t.Errorf("h1 neighbour %s: %s, %d routes received", nb.Address, nb.State, nb.Received)
		}
	}
	if text, err := f.xs[0].Ctl("bgp"); err != nil || !strings.Contains(text, evpnRR1) || !strings.Contains(text, "established") {
		t.Errorf("ctl bgp (text): %v\n%s", err, text)
	} else {
		js, _ := f.xs[0].Ctl("bgp", "--json")
		t.Logf("h1 ctl bgp:\n%s\n%s", text, js)
	}
	// The reflectors list every host's type-3 route, next hop = its VTEP.
	for _, rr := range f.rrs {
		rs, err := rr.Routes()
		if err != nil {
			t.Fatal(err)
		}
		type3 := map[string]bool{}
		type2 := 0
		for _, r := range rs {
			switch {
			case strings.HasPrefix(r.Prefix, "[3]"):
				type3[r.NextHop] = true
			case strings.HasPrefix(r.Prefix, "[2]"):
				type2++
			}
		}
		for _, h := range f.hosts {
			if !type3[h.IP4.String()] {
				t.Errorf("reflector %s: no type-3 route from %v (type-3 next hops %v)", rr.Addr, h.IP4, type3)
			}
		}
		if type2 < n {
			t.Errorf("reflector %s: %d type-2 routes, want at least %d", rr.Addr, type2, n)
		}
	}

	// kill -9 of h4: the reflectors drop its routes after their hold time
	// (3 s), the others remove its tunnel.
	gone := f.hosts[n-1].IP4.String()
	killed := time.Now()
	f.xs[n-1].Kill9()
	for i := 0; i < n-1; i++ {
		wait.For(t, 15*time.Second, fmt.Sprintf("h%d: tunnel to killed h%d removed", i+1, n), func() bool {
			_, ok := tunnelsOf(t, f.xs[i])[gone]
			return !ok
		})
	}
	took := time.Since(killed)
	t.Logf("tunnel to the killed host gone everywhere after %v", took.Round(time.Millisecond))
	if took > 3*time.Second+3*time.Second {
		t.Errorf("tunnel removal took %v; want within the 3 s hold time (+3 s for keepalive phase and polling)", took)
	}
	alive[n-1] = false
	f.pingAll(t, alive, 10*time.Second)
}
