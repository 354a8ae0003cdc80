package evpn

import (
	"net/netip"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestConfigAuto(t *testing.T) {
	var c Config
	src := `
asn: 65000
neighbors: [{address: 198.18.5.1}, {address: 198.18.5.2, password: s3cret}]
vnis: [{vni: 5000}, {vni: 70000, rd: "198.18.0.9:7", route_targets: ["65000:1", auto]}]
`
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if errs := c.Validate("evpn", netip.MustParseAddr("198.18.0.1")); len(errs) > 0 {
		t.Fatalf("valid config refused: %v", errs)
	}
	if c.routerID.String() != "198.18.0.1" || c.localIP.String() != "198.18.0.1" {
		t.Errorf("router id %v, local %v; want both 198.18.0.1 (from the underlay)", c.routerID, c.localIP)
	}
	if got := c.VNIs[0].rd.String(); got != "198.18.0.1:5000" {
		t.Errorf("auto RD = %s, want 198.18.0.1:5000", got)
	}
	if got := c.VNIs[0].exportRTs[0].String(); got != "65000:5000" {
		t.Errorf("auto RT = %s, want 65000:5000", got)
	}
	if got := c.VNIs[1].rd.String(); got != "198.18.0.9:7" {
		t.Errorf("RD = %s", got)
	}
	if len(c.VNIs[1].importRTs) != 2 || c.VNIs[1].importRTs[1].String() != "65000:70000" {
		t.Errorf("RTs = %v, want [65000:1 65000:70000]", c.VNIs[1].importRTs)
	}
	if !c.FloodUnknown() || c.holdTime != DefaultHoldTime {
		t.Errorf("defaults: flood %v hold %v", c.FloodUnknown(), c.holdTime)
	}
}

func TestConfigErrors(t *testing.T) {
	c := Config{
		RouterID: "2001:db8::1", ASN: 0, LocalIP: "nope", HoldTime: "1s",
		GracefulRestart: GracefulRestartConfig{RestartTime: "10s"},
		Neighbors:       []NeighborConfig{{Address: "198.18.5.1"}, {Address: "198.18.5.1"}, {}, {Address: "198.18.5.3", ASN: -1}},
		VNIs: []VNIConfig{{VNI: 5000}, {VNI: 5000}, {VNI: 1 << 24}, {VNI: 70536}, {VNI: 6000, RD: "x"},
			{VNI: 6001, RouteTargets: []string{"bad"}}},
	}
	errs := c.Validate("evpn", netip.Addr{})
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{
		`evpn.router_id: "2001:db8::1" is not an IPv4 address`,
		`evpn.asn: 0 is not an AS number; write 1..4294967295`,
		`evpn.local_ip: "nope" is not a unicast IP address; write the local tunnel endpoint`,
		`evpn.hold_time: "1s" is not a whole number of seconds between 3s and 65535s`,
		`evpn.graceful_restart.restart_time: set, but graceful_restart.enabled is false`,
		`evpn.neighbors[1].address: 198.18.5.1 is also neighbors[0]`,
		`evpn.neighbors[2].address: missing`,
		`evpn.neighbors[3].asn: -1 is not an AS number`,
		`evpn.vnis[1].vni: 5000 is also vnis[0]`,
		`evpn.vnis[2].vni: 16777216 is out of range`,
		`evpn.vnis[4].rd: "x" is not a route distinguisher`,
		`evpn.vnis[5].route_targets[0]: "bad" is not a route target`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing error %q in:\n%s", want, text)
		}
	}
	// 70536 mod 65536 = 5000: the auto RDs collide (router id known now).
	c = Config{ASN: 65000, LocalIP: "198.18.0.1", Neighbors: []NeighborConfig{{Address: "198.18.5.1"}},
		VNIs: []VNIConfig{{VNI: 5000}, {VNI: 70536}}}
	errs = c.Validate("evpn", netip.Addr{})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "evpn.vnis[1].rd: 198.18.0.1:5000 is also the route distinguisher of vnis[0]") {
		t.Errorf("RD collision: %v", errs)
	}
	c = Config{ASN: 65000, LocalIP: "2001:db8::1", Neighbors: []NeighborConfig{{Address: "2001:db8::2"}}, VNIs: []VNIConfig{{VNI: 1}}}
	errs = c.Validate("evpn", netip.Addr{})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "evpn.router_id: missing, and local_ip 2001:db8::1 is IPv6") {
		t.Errorf("IPv6 VTEP without router id: %v", errs)
	}
}
