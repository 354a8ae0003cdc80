package evpn

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"xswitch/internal/capture"
	"xswitch/internal/frrpeer"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
)

const (
	rrPassword = "xswitch-md5"
	asn        = 65000
	settle     = 60 * time.Second // bound of every wait for BGP to converge
)

// frrRR is one FRR bgpd route reflector in its own namespace
// (internal/frrpeer: no zebra, no kernel routes, its own vty socket
// directory, so it never touches the system's FRR).
type frrRR struct {
	*frrpeer.Reflector
	ns, addr string
}

func startFRR(t *testing.T, _ *testnet.Net, ns, addr, password string) *frrRR {
	t.Helper()
	r := frrpeer.Start(t, ns, frrpeer.Options{ASN: asn, Addr: addr, ListenRange: "198.18.7.0/24", Password: password})
	return &frrRR{Reflector: r, ns: ns, addr: addr}
}

func (r *frrRR) kill() { r.Kill() }

func (r *frrRR) vtysh(t *testing.T, cmd string) string {
	t.Helper()
	out, err := r.Vtysh(cmd)
	if err != nil {
		t.Fatalf("vtysh on %s: %v", r.ns, err)
	}
	return out
}

func (r *frrRR) routes(t *testing.T) []frrpeer.Route {
	t.Helper()
	rs, err := r.Routes()
	if err != nil {
		t.Fatalf("%s: %v", r.ns, err)
	}
	return rs
}

type fabric struct {
	net  *testnet.Net
	rrs  []*frrRR
	hs   []*speakerProc
	cap  *capture.Capture
	vtep []string
}

// buildFabric: namespace lan holds a Linux bridge; two reflectors and four
// hosts hang off it by veth, addresses 198.18.7.0/24.
func buildFabric(t *testing.T, hosts int) *fabric {
	testnet.RequireRoot(t)
	frrpeer.Require(t)
	for _, tool := range []string{"vtysh", "tshark", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (make deps): %v", tool, err)
		}
	}
	f := &fabric{net: testnet.New(t)}
	lan := f.net.NS("lan")
	f.net.Run(lan, "ip", "link", "add", "br0", "type", "bridge")
	f.net.Run(lan, "ip", "link", "set", "br0", "up")
	attach := func(label, addr string) string {
		ns := f.net.NS(label)
		port := "p-" + label
		f.net.Veth(ns, "eth0", lan, port, 0)
		f.net.Run(lan, "ip", "link", "set", port, "master", "br0")
		f.net.Run(ns, "ip", "addr", "add", addr+"/24", "dev", "eth0")
		return ns
	}
	rr1 := attach("rr1", "198.18.7.101")
	rr2 := attach("rr2", "198.18.7.102")
	// The capture sees every BGP message between rr1 and the hosts.
	f.cap = capture.Start(t, rr1, "eth0", "tcp", "port", "179")
	f.rrs = []*frrRR{startFRR(t, f.net, rr1, "198.18.7.101", ""), startFRR(t, f.net, rr2, "198.18.7.102", rrPassword)}
	for i := range hosts {
		vtep := fmt.Sprintf("198.18.7.%d", 11+i)
		ns := attach(fmt.Sprintf("h%d", i+1), vtep)
		c := Config{ASN: asn, LocalIP: vtep, HoldTime: "3s",
			Neighbors: []NeighborConfig{{Address: "198.18.7.101"}, {Address: "198.18.7.102", Password: rrPassword}},
			VNIs:      []VNIConfig{{VNI: 5000}, {VNI: 6000}}}
		// h1 and h2 negotiate graceful restart (FRR is a helper by default).
		c.GracefulRestart.Enabled = i < 2
		f.hs = append(f.hs, startSpeaker(t, ns, vtep, c))
		f.vtep = append(f.vtep, vtep)
	}
	return f
}

// established reports whether host h has its session to addr up.
func established(h *speakerProc, addr string) bool {
	for _, n := range h.status().Neighbors {
		if n.Address == addr {
			return n.State == "established"
		}
	}
	return false
}

// want is the data plane every host should have: what the other (live)
// hosts announced.
type want struct {
	vnis  []uint32
	macs  map[string]string // "vni mac" -> announcing host index
	hosts []int             // live hosts
}

func (f *fabric) expected(w want, self int) dpState {
	var s dpState
	s.MACs = map[string]string{}
	for _, h := range w.hosts {
		if h == self {
			continue
		}
		for _, vni := range w.vnis {
			s.Tunnels = append(s.Tunnels, fmt.Sprintf("%d %s", vni, f.vtep[h]))
			s.Flood = append(s.Flood, fmt.Sprintf("%d %s", vni, f.vtep[h]))
		}
	}
	for k, h := range w.macs {
		i, _ := strconv.Atoi(h)
		if i != self && slices.Contains(w.hosts, i) {
			vni := strings.Fields(k)[0]
			s.MACs[k] = vni + " " + f.vtep[i]
		}
	}
	sort.Strings(s.Tunnels)
	sort.Strings(s.Flood)
	return s
}

func sameState(a, b dpState) bool {
	sort.Strings(a.Tunnels)
	sort.Strings(a.Flood)
	if !slices.Equal(a.Tunnels, b.Tunnels) || !slices.Equal(a.Flood, b.Flood) || len(a.MACs) != len(b.MACs) {
		return false
	}
	for k, v := range a.MACs {
		if b.MACs[k] != v {
			return false
		}
	}
	return true
}

// converge waits until every live host's fake data plane is exactly w.
func (f *fabric) converge(t *testing.T, what string, w want) {
	t.Helper()
	for _, i := range w.hosts {
		h := f.hs[i]
		exp := f.expected(w, i)
		var got *dpState
		if !wait.Until(settle, func() bool { got = h.state(); return sameState(*got, exp) }) {
			for _, rr := range f.rrs {
				if rr.Running() {
					t.Logf("%s:\n%s\n%s", rr.ns, rr.vtysh(t, "show bgp l2vpn evpn summary"), rr.vtysh(t, "show bgp l2vpn evpn route"))
				}
			}
			st, _ := json.MarshalIndent(h.status(), "", " ")
			t.Logf("h%d status: %s", i+1, st)
			t.Fatalf("%s: host h%d data plane\n got %+v\nwant %+v", what, i+1, *got, exp)
		}
		if len(got.Errs) > 0 {
			t.Fatalf("%s: host h%d: data plane order violated: %v", what, i+1, got.Errs)
		}
	}
}

func macOf(host, n int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", host+1, n) }

// TestEVPNWithFRR: four speakers and two FRR route reflectors. Every
// speaker gets the others' VTEPs and MACs; FRR lists every route with its
// VNI and next hop; withdraws, a MAC move, the loss of a reflector and of
// a speaker (clean stop, and silent after the hold time) propagate; tshark
// decodes the UPDATEs on the wire.
func TestEVPNWithFRR(t *testing.T) {
	f := buildFabric(t, 4)
	for i, h := range f.hs {
		for _, rr := range f.rrs {
			wait.For(t, settle, fmt.Sprintf("h%d session to %s (password on rr2)", i+1, rr.addr), func() bool { return established(h, rr.addr) })
		}
	}
	w := want{vnis: []uint32{5000, 6000}, macs: map[string]string{}, hosts: []int{0, 1, 2, 3}}
	for i, h := range f.hs {
		h.learn(fmt.Sprintf("5000 %s 198.19.0.%d", macOf(i, 1), i+1))
		h.learn("5000 " + macOf(i, 2))
		h.learn("6000 " + macOf(i, 3))
		w.macs["5000 "+macOf(i, 1)] = strconv.Itoa(i)
		w.macs["5000 "+macOf(i, 2)] = strconv.Itoa(i)
		w.macs["6000 "+macOf(i, 3)] = strconv.Itoa(i)
	}
	f.converge(t, "initial announcements", w)

	t.Run("FRRListsRoutes", func(t *testing.T) { f.checkFRR(t) })

	// Withdraw: h1's second MAC ages out.
	f.hs[0].gone("5000 " + macOf(0, 2))
	delete(w.macs, "5000 "+macOf(0, 2))
	f.converge(t, "withdraw of h1's MAC", w)

	// Move: h2's first MAC shows up at h3 (seq 1 beats h2's seq 0).
	moved := macOf(1, 1)
	f.hs[2].learn("5000 " + moved)
	w.macs["5000 "+moved] = "2"
	f.converge(t, "MAC move from h2 to h3", w)
	if st := f.hs[1].status(); st.Counters.MACMovesOut != 1 {
		t.Errorf("h2 mac_moves_out = %d, want 1", st.Counters.MACMovesOut)
	}
	if st := f.hs[2].status(); st.Counters.MACMovesIn != 1 {
		t.Errorf("h3 mac_moves_in = %d, want 1", st.Counters.MACMovesIn)
	}

	// Reflector rr1 dies: every route is still known through rr2, and no
	// data plane entry is removed on the way. First both reflectors must
	// have delivered every route (a host that has them from rr1 only
	// would rightly withdraw and re-add them when rr1 goes).
	for i, h := range f.hs {
		wait.For(t, settle, fmt.Sprintf("h%d to have every route from both reflectors", i+1), func() bool {
			st := h.status()
			return len(st.Neighbors) == 2 && st.Neighbors[0].Received > 0 && st.Neighbors[0].Received == st.Neighbors[1].Received
		})
	}
	before := make([]int, len(f.hs))
	for i, h := range f.hs {
		before[i] = h.state().Calls
	}
	f.rrs[0].kill()
	for i, h := range f.hs {
		wait.For(t, settle, fmt.Sprintf("h%d to notice rr1's loss", i+1), func() bool { return !established(h, "198.18.7.101") })
	}
	f.converge(t, "after rr1 died", w)
	for i, h := range f.hs {
		if calls := h.state().Calls; calls != before[i] {
			t.Errorf("h%d: %d data plane calls after rr1 died, want none (routes stay through rr2)", i+1, calls-before[i])
		}
	}

	// h4 stops cleanly: rr2 withdraws its routes at once.
	f.hs[3].stop()
	w.hosts = []int{0, 1, 2}
	f.converge(t, "h4 stopped", w)

	// h3 goes silent (its link down): its routes stay until rr2's hold
	// timer (3 s) expires, then go.
	start := time.Now()
	f.net.Run(f.hs[2].ns, "ip", "link", "set", "eth0", "down")
	w.hosts = []int{0, 1}
	w.macs["5000 "+moved] = "2" // h3's, leaves with it
	f.converge(t, "h3 silent past the hold time", w)
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("h3's routes withdrawn %v after its link went down, before the 3s hold time could expire", el)
	}
	t.Logf("h3's routes were withdrawn %v after its link went down (hold time 3s)", time.Since(start).Round(100*time.Millisecond))

	t.Run("TsharkDecodesUpdates", func(t *testing.T) { f.checkWire(t) })
}

// checkFRR: rr2 (alive all along) lists every announced route with the
// announcing host's VTEP as next hop, its VNI, and the Geneve
// encapsulation community.
func (f *fabric) checkFRR(t *testing.T) {
	for _, rr := range f.rrs {
		routes := rr.routes(t)
		sort.Slice(routes, func(i, j int) bool { return routes[i].Prefix < routes[j].Prefix })
		t.Logf("%s lists %d EVPN paths, e.g. %+v", rr.ns, len(routes), routes[:min(2, len(routes))])
		for i, vtep := range f.vtep {
			for _, vni := range []string{"5000", "6000"} {
				found := false
				for _, r := range routes {
					if r.RD == vtep+":"+vni && strings.HasPrefix(r.Prefix, "[3]:") && r.NextHop == vtep {
						found = true
						if !strings.Contains(r.ExtComm, "RT:65000:"+vni) || !strings.Contains(r.ExtComm, "ET:19") {
							t.Errorf("%s: h%d type-3 VNI %s: communities %q lack RT:65000:%s or ET:19 (Geneve)", rr.ns, i+1, vni, r.ExtComm, vni)
						}
					}
				}
				if !found {
					t.Errorf("%s: no type-3 route of h%d for VNI %s with next hop %s", rr.ns, i+1, vni, vtep)
				}
			}
			for _, m := range []struct{ vni, mac string }{{"5000", macOf(i, 1)}, {"5000", macOf(i, 2)}, {"6000", macOf(i, 3)}} {
				found := false
				for _, r := range routes {
					if r.RD == vtep+":"+m.vni && strings.HasPrefix(r.Prefix, "[2]:") && strings.Contains(r.Prefix, m.mac) {
						found = true
						if !strings.Contains(r.ExtComm, "ET:19") {
							t.Errorf("%s: type-2 %s: communities %q lack the Geneve encapsulation (ET:19)", rr.ns, r.Prefix, r.ExtComm)
						}
						if r.NextHop != vtep || r.VNI != m.vni {
							t.Errorf("%s: type-2 %s: next hop %s VNI %s, want %s %s", rr.ns, r.Prefix, r.NextHop, r.VNI, vtep, m.vni)
						}
					}
				}
				if !found {
					t.Errorf("%s: no type-2 route of h%d for %s in VNI %s", rr.ns, i+1, m.mac, m.vni)
				}
			}
		}
		if t.Failed() {
			t.Logf("%s routes: %+v", rr.ns, routes)
			t.Logf("%s", rr.vtysh(t, "show bgp l2vpn evpn route"))
		}
	}
}

// checkWire: tshark decodes the captured UPDATEs: EVPN NLRI of route types
// 2 and 3, the encapsulation extended community with tunnel type 19
// (Geneve), PMSI ingress replication, and the MAC mobility sequence number
// of the move.
func (f *fabric) checkWire(t *testing.T) {
	path, err := f.cap.Stop()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tshark", "-r", path, "-d", "tcp.port==179,bgp", "-Y", "bgp.type == 2",
		"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "bgp.evpn.nlri.rt", "-e", "bgp.ext_com.tunnel_type", "-e", "bgp.update.path_attribute.pmsi.tunnel.type",
		"-e", "bgp.ext_com_evpn.mmac.seq", "-e", "bgp.evpn.nlri.vni").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", path, err)
	}
	types, tunnels, pmsi, seqs := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		c := strings.Split(line, "|")
		for len(c) < 5 {
			c = append(c, "")
		}
		for i, m := range []map[string]bool{types, tunnels, pmsi, seqs} {
			for _, v := range strings.Split(c[i], ",") {
				if v != "" {
					m[v] = true
				}
			}
		}
	}
	if !types["2"] || !types["3"] {
		t.Errorf("tshark saw EVPN route types %v, want 2 and 3", types)
	}
	if !tunnels["19"] {
		t.Errorf("tshark saw encapsulation tunnel types %v, want 19 (Geneve)", tunnels)
	}
	if !pmsi["6"] {
		t.Errorf("tshark saw PMSI tunnel types %v, want 6 (ingress replication)", pmsi)
	}
	if !seqs["1"] {
		t.Errorf("tshark saw MAC mobility sequence numbers %v, want 1 (the move)", seqs)
	}
	t.Logf("tshark decoded %d BGP UPDATEs: route types %v, tunnel types %v, PMSI types %v, MAC mobility seqs %v",
		strings.Count(string(out), "\n"), keys(types), keys(tunnels), keys(pmsi), keys(seqs))
	if t.Failed() {
		t.Logf("tshark:\n%s", out)
	}
}

func keys(m map[string]bool) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}
