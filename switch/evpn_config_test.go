package vswitch

import (
	"strings"
	"testing"
)

// TestEVPNConfig: a bridge with only a VNI is an EVPN instance (evpn.vnis
// filled from the bridges when absent); every problem of the evpn: section
// and of bridges[].vni is reported at once, with its YAML path and the fix.
func TestEVPNConfig(t *testing.T) {
	c, err := ParseConfig([]byte(evpnYAML))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.EVPN.VNIs); n != 2 || c.EVPN.VNIs[0].VNI != 5000 || c.EVPN.VNIs[1].VNI != 6000 {
		t.Errorf("evpn.vnis %+v; want 5000 and 6000 from the bridges", c.EVPN.VNIs)
	}
	if !c.EVPNBridge(&c.Bridges[0]) || c.Bridges[0].VNI != 5000 {
		t.Errorf("br1: VNI %d, EVPN %v", c.Bridges[0].VNI, c.EVPNBridge(&c.Bridges[0]))
	}
	bad := `bridges:
  - name: br1
    vni: 16777216
  - name: br2
    vni: 7000
    tunnels: [{remote_ip: 198.18.0.2, key: 7001}]
  - name: br3
    vni: 8000
evpn:
  asn: 0
  hold_time: 1s
  neighbors: [{address: nope}]
  vnis: [{vni: 9000}]
`
	_, err = ParseConfig([]byte(bad))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"bridges[0].vni: 16777216 is out of range",
		"bridges[1].vni: 7000 differs from tunnels[0].key 7001",
		"underlay: missing, but evpn is configured",
		"evpn.asn: 0 is not an AS number",
		"evpn.hold_time: \"1s\" is not a whole number of seconds between 3s and 65535s",
		"evpn.neighbors[0].address: \"nope\" is not a unicast IP address",
		"evpn.vnis[0].vni: 9000 is the VNI of no bridge; give a bridge `vni: 9000`",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// A reload cannot change the evpn: section.
	c2, err := ParseConfig([]byte(strings.Replace(evpnYAML, "asn: 65000", "asn: 65001", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := diffConfig(c, c2); err == nil || !strings.Contains(err.Error(), "evpn: changed, but a reload does not apply it") {
		t.Errorf("reload of a changed evpn section: %v", err)
	}
	c3, _ := ParseConfig([]byte(evpnYAML))
	if _, err := diffConfig(c, c3); err != nil {
		t.Errorf("reload of the same evpn section: %v", err)
	}
}

// FuzzParseEVPNConfig: any variation of a configuration with an evpn:
// section gives a config or an error, never a panic; an accepted one has
// every EVPN VNI on a bridge.
func FuzzParseEVPNConfig(f *testing.F) {
	f.Add([]byte(evpnYAML))
	f.Add([]byte("underlay: {interface: eth0, local_ip: 2001:2::1}\nbridges: [{name: br1, vni: 1}]\nevpn: {asn: 1, router_id: 1.2.3.4, neighbors: [{address: \"::1\"}], vnis: [{vni: 1, rd: \"1:1\", route_targets: [\"1.2.3.4:5\"]}]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil || c.EVPN == nil {
			return
		}
		for _, v := range c.EVPN.VNIs {
			found := false
			for i := range c.Bridges {
				found = found || (c.Bridges[i].VNI == uint32(v.VNI) && c.EVPNBridge(&c.Bridges[i]))
			}
			if !found {
				t.Fatalf("accepted evpn VNI %d without a bridge", v.VNI)
			}
		}
	})
}
