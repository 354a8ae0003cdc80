package vswitch

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"xswitch/flowtable"
	"xswitch/internal/testnet"
)

const evpnYAML = `underlay: {interface: eth0, local_ip: 198.18.0.1}
bridges:
  - name: br1
    vni: 5000
    address: 198.19.0.1/24
  - name: br2
    vni: 6000
    internal: false
    tunnels: [{remote_ip: 198.18.0.2, key: 6000}]
evpn:
  asn: 65000
  neighbors: [{address: 198.18.0.2}]
`

// evpnSwitch is a switch (not started: no pollers, no speaker) whose
// evpnState the tests drive directly, applying synchronously.
func evpnSwitch(t *testing.T) *Switch {
	sw, _ := evpnSwitchNS(t)
	return sw
}

func evpnSwitchNS(t *testing.T) (*Switch, string) {
	testnet.RequireRoot(t)
	_, ns := lifeHost(t)
	cfg, err := ParseConfig([]byte(evpnYAML))
	if err != nil {
		t.Fatal(err)
	}
	var sw *Switch
	if err := testnet.Do(ns, func() (err error) { sw, err = New(cfg, Options{}); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	return sw, ns
}

func bridgeOf(f *fabric, name string) *bridge {
	for _, b := range f.bridges {
		if b.name == name {
			return b
		}
	}
	return nil
}

func remotesOf(b *bridge) []string {
	var out []string
	for _, t := range b.tunnels {
		out = append(out, t.remote.String())
	}
	slices.Sort(out)
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	vtep2 = netip.MustParseAddr("198.18.0.2")
	vtep3 = netip.MustParseAddr("198.18.0.3")
	vtep4 = netip.MustParseAddr("198.18.0.4")
)

// TestEVPNDataplane: the speaker's calls become one fabric generation per
// burst: EVPN tunnels (shared with a configured tunnel to the same remote),
// the flood list, remote MACs as static entries with source evpn, a move,
// and everything gone again (ids, entries, tunnels) after the removes.
func TestEVPNDataplane(t *testing.T) {
	sw := evpnSwitch(t)
	e := sw.ev
	gen0 := sw.cur().gen
	m1, m2 := flowtable.MAC(0x020000000001), flowtable.MAC(0x020000000002)
	must(t, e.AddTunnel(5000, vtep3))
	must(t, e.AddFloodVTEP(5000, vtep3))
	must(t, e.SetRemoteMAC(5000, m1, vtep3, 0))
	must(t, e.AddTunnel(5000, vtep4))
	must(t, e.SetRemoteMAC(5000, m2, vtep4, 0))
	must(t, e.AddTunnel(6000, vtep2)) // the configured tunnel of br2
	must(t, e.AddFloodVTEP(6000, vtep2))
	if err := e.AddTunnel(7000, vtep2); err == nil {
		t.Error("AddTunnel for a VNI without bridge: no error")
	}
	e.apply()
	f := sw.cur()
	if f.gen != gen0+1 {
		t.Errorf("generation %d -> %d; want one generation for the burst", gen0, f.gen)
	}
	b1, b2 := bridgeOf(f, "br1"), bridgeOf(f, "br2")
	if got := remotesOf(b1); !slices.Equal(got, []string{"198.18.0.3", "198.18.0.4"}) {
		t.Errorf("br1 tunnels %v", got)
	}
	if got := remotesOf(b2); !slices.Equal(got, []string{"198.18.0.2"}) {
		t.Errorf("br2 tunnels %v; want the configured one only, once", got)
	}
	if f.byVNI[5000] != b1 {
		t.Error("VNI 5000 does not reach br1 (decapsulation would drop unknown_vni)")
	}
	for _, tu := range b1.tunnels {
		if sw.tunnelSource(tu) != "evpn" || f.tunnels[tu.id] != tu || tu.br != b1 {
			t.Errorf("tunnel %v: source %s, in the id slice %v", tu.remote, sw.tunnelSource(tu), f.tunnels[tu.id] == tu)
		}
	}
	if sw.tunnelSource(b2.tunnels[0]) != "static" {
		t.Errorf("configured tunnel shown as %s", sw.tunnelSource(b2.tunnels[0]))
	}
	if n := len(sw.res.tunnels); n != 3 {
		t.Errorf("resolver has %d tunnels, want 3", n)
	}
	checkMAC := func(m flowtable.MAC, want netip.Addr) {
		t.Helper()
		b := bridgeOf(sw.cur(), "br1")
		d, ok := b.table.Lookup(m)
		if !ok || b.tunnelRemote(d) != want {
			t.Errorf("MAC %v: dest %v (%v), want the tunnel to %v", m, d, ok, want)
		}
		for _, fe := range sw.FDB() {
			if fe.MAC == m.String() && (fe.Source != "evpn" || !fe.Static || fe.Remote != want.String()) {
				t.Errorf("ctl fdb: %+v; want static, source evpn, remote %v", fe, want)
			}
		}
	}
	checkMAC(m1, vtep3)
	checkMAC(m2, vtep4)
	// Learning from another tunnel does not move it.
	if r := b1.table.Learn(m1, b1.findRemote(vtep4).dest, sw.clock.Now()); r != flowtable.LearnStatic {
		t.Errorf("learning moved an EVPN MAC: %v", r)
	}

	// A burst of 200 MACs: one generation.
	gen1 := sw.cur().gen
	for i := range 200 {
		must(t, e.SetRemoteMAC(5000, flowtable.MAC(0x020000010000+i), vtep3, 0))
	}
	e.apply()
	if g := sw.cur().gen; g != gen1+1 {
		t.Errorf("200 MACs took %d generations, want 1", g-gen1)
	}
	if n := len(sw.tables["br1"].statics); n != 203 { // + the internal port's MAC
		t.Errorf("br1 static entries %d, want 203", n)
	}
	e.apply()
	if g := sw.cur().gen; g != gen1+1 {
		t.Error("an apply without changes published a generation")
	}

	// A move (higher sequence number) re-points the entry.
	must(t, e.SetRemoteMAC(5000, m1, vtep4, 1))
	e.apply()
	checkMAC(m1, vtep4)

	// Everything withdrawn: no EVPN tunnel, entry or id left.
	for i := range 200 {
		must(t, e.RemoveRemoteMAC(5000, flowtable.MAC(0x020000010000+i)))
	}
	must(t, e.RemoveRemoteMAC(5000, m1))
	must(t, e.RemoveRemoteMAC(5000, m2))
	must(t, e.RemoveFloodVTEP(5000, vtep3))
	must(t, e.RemoveTunnel(5000, vtep3))
	must(t, e.RemoveTunnel(5000, vtep4))
	must(t, e.RemoveFloodVTEP(6000, vtep2))
	must(t, e.RemoveTunnel(6000, vtep2))
	e.apply()
	f = sw.cur()
	if got := remotesOf(bridgeOf(f, "br1")); len(got) != 0 {
		t.Errorf("br1 tunnels left: %v", got)
	}
	if got := remotesOf(bridgeOf(f, "br2")); !slices.Equal(got, []string{"198.18.0.2"}) {
		t.Errorf("br2 lost its configured tunnel: %v", got)
	}
	if len(sw.tuns) != 1 || len(e.owned) != 0 || len(sw.tunIDs.free) != 2 {
		t.Errorf("tunnels %d, owned %d, free ids %v; want 1, 0, two freed", len(sw.tuns), len(e.owned), sw.tunIDs.free)
	}
	if n := len(sw.tables["br1"].statics); n != 1 {
		t.Errorf("br1 static entries %d, want only the internal port's", n)
	}
	if n := sw.tables["br1"].t.Len(); n != 1 {
		t.Errorf("br1 MAC table has %d entries, want 1", n)
	}
	if n := len(sw.res.tunnels); n != 1 {
		t.Errorf("resolver has %d tunnels, want 1", n)
	}
}

// TestEVPNClaim: a local frame claiming an EVPN MAC (the MAC moved here)
// replaces the entry by one learned on the frame's port; a newer
// route ends the claim, a withdraw forgets it.
func TestEVPNClaim(t *testing.T) {
	sw := evpnSwitch(t)
	e := sw.ev
	m := flowtable.MAC(0x020000000009)
	must(t, e.AddTunnel(5000, vtep3))
	must(t, e.SetRemoteMAC(5000, m, vtep3, 2))
	e.apply()
	b := bridgeOf(sw.cur(), "br1")
	if why := staticClaim(b, m, 1, false); why != dropStaticMAC || e.claims() {
		t.Errorf("a claim from a tunnel: %v, and it was taken as a local move", why)
	}
	if why := staticClaim(b, m, 1, true); why != dropStaticMAC {
		t.Errorf("claim reason %v", why)
	}
	if !e.claims() {
		t.Fatal("the local claim was not handled")
	}
	if d, ok := b.table.Lookup(m); !ok || d != flowtable.Dest(1) {
		t.Errorf("after the local claim: entry %v (%v); want learned on the claiming port", d, ok)
	}
	e.apply() // the claimed MAC is not put back
	if d, _ := b.table.Lookup(m); d != flowtable.Dest(1) {
		t.Errorf("entry %v, want the local port", d)
	}
	must(t, e.SetRemoteMAC(5000, m, vtep3, 3)) // newer than the claim: it moved on
	e.apply()
	if d, _ := b.table.Lookup(m); b.tunnelRemote(d) != vtep3 {
		t.Errorf("entry %v after a newer route, want the tunnel", d)
	}
	must(t, e.RemoveRemoteMAC(5000, m))
	must(t, e.RemoveTunnel(5000, vtep3))
	e.apply()
	if len(e.want[5000].claimed) != 0 || len(e.want[5000].macs) != 0 || len(e.owned) != 0 {
		t.Errorf("state left: %+v, owned %d", e.want[5000], len(e.owned))
	}
}

// TestEVPNReloadHandover: a reload removing a configured tunnel the EVPN
// routes still use hands it to EVPN (it stays, now "evpn"); one adding a
// configured tunnel to a remote EVPN reaches takes the tunnel over (it
// stays, now "static", and outlives the routes).
func TestEVPNReloadHandover(t *testing.T) {
	sw, ns := evpnSwitchNS(t)
	e := sw.ev
	must(t, e.AddTunnel(6000, vtep2)) // br2's configured tunnel
	must(t, e.AddTunnel(5000, vtep3))
	e.apply()
	reload := func(yaml string) {
		t.Helper()
		c, err := ParseConfig([]byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		if err := testnet.Do(ns, func() error { _, err := sw.Apply(c); return err }); err != nil {
			t.Fatal(err)
		}
		e.apply() // what the applier, woken by the reload, does
	}
	sourceOf := func(bridge string, v netip.Addr) string {
		b := bridgeOf(sw.cur(), bridge)
		if t := b.findRemote(v); t != nil {
			return sw.tunnelSource(t)
		}
		return "none"
	}
	// br2 without its tunnel; br1 with a configured tunnel to vtep3.
	reload(strings.Replace(strings.Replace(evpnYAML, "    tunnels: [{remote_ip: 198.18.0.2, key: 6000}]\n", "", 1),
		"    vni: 5000\n", "    vni: 5000\n    tunnels: [{remote_ip: 198.18.0.3, key: 5000}]\n", 1))
	if got := sourceOf("br2", vtep2); got != "evpn" {
		t.Errorf("br2 tunnel to %v after its removal from the file: %s, want evpn", vtep2, got)
	}
	if got := sourceOf("br1", vtep3); got != "static" {
		t.Errorf("br1 tunnel to %v after adding it to the file: %s, want static", vtep3, got)
	}
	if n := len(bridgeOf(sw.cur(), "br1").tunnels); n != 1 {
		t.Errorf("br1 has %d tunnels, want 1 (shared)", n)
	}
	// The routes go: the EVPN tunnel goes, the configured one stays.
	must(t, e.RemoveTunnel(6000, vtep2))
	must(t, e.RemoveTunnel(5000, vtep3))
	e.apply()
	if got := sourceOf("br2", vtep2); got != "none" {
		t.Errorf("br2 tunnel to %v after its routes went: %s", vtep2, got)
	}
	if got := sourceOf("br1", vtep3); got != "static" {
		t.Errorf("br1 configured tunnel after the routes went: %s", got)
	}
	if len(sw.tuns) != 1 || len(e.owned) != 0 {
		t.Errorf("tunnels %d, owned %d; want 1, 0", len(sw.tuns), len(e.owned))
	}
}

// TestUnknownUnicastLocal: with evpn.flood_unknown_unicast false (the
// bridge's uuLocal), unknown unicast from a local port goes to the local
// ports only; broadcast still goes to every tunnel. Without it, both go to
// the tunnels.
func TestUnknownUnicastLocal(t *testing.T) {
	unknown := []byte{2, 0, 0, 0, 9, 9}
	for _, local := range []bool{false, true} {
		r := newRig(t)
		br := r.f.bridges[0]
		br.uuLocal = local
		wantUU := len(br.tunnels)
		if local {
			wantUU = 0
		}
		r.c.forward(r.a, []desc{r.frame(eth(unknown, macA, 60))})
		if n := len(r.c.pend[0]); n != wantUU {
			t.Errorf("uuLocal %v: unknown unicast reached %d tunnels, want %d", local, n, wantUU)
		}
		if n := len(r.c.pend[r.b.id]); n != 1 {
			t.Errorf("uuLocal %v: unknown unicast reached the other local port %d times, want 1", local, n)
		}
		r.tapRead0()
		r.reset()
		r.c.forward(r.a, []desc{r.frame(eth(bcast, macA, 60))})
		if n := len(r.c.pend[0]); n != len(br.tunnels) {
			t.Errorf("uuLocal %v: broadcast reached %d tunnels, want %d", local, n, len(br.tunnels))
		}
		r.tapRead0()
	}
}
