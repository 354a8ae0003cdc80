package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"xswitch/evpn"
	vswitch "xswitch/switch"
)

type plainSwitch struct{}

func (plainSwitch) Status() vswitch.Status  { return vswitch.Status{} }
func (plainSwitch) FDB() []vswitch.FDBEntry { return nil }
func (plainSwitch) Stats() vswitch.Stats    { return vswitch.Stats{} }

type evpnFake struct {
	plainSwitch
	on bool
}

func (e evpnFake) EVPNStatus(context.Context) (evpn.Status, bool) {
	return evpn.Status{RouterID: "198.18.0.1", ASN: 65000, VTEP: "198.18.0.1",
		Neighbors: []evpn.NeighborStatus{{Address: "198.18.0.201", ASN: 65000, State: "established", Received: 12, Accepted: 9, Advertised: 3}},
		VNIs:      []evpn.VNIStatus{{VNI: 5000, RD: "198.18.0.1:5000", ExportRTs: []string{"65000:5000"}, FloodVTEPs: []netip.Addr{netip.MustParseAddr("198.18.0.2")}, RemoteMACs: 1}},
		Counters:  evpn.Counters{Ignored: map[string]uint64{"unknown_vni": 2}}}, e.on
}

// TestBGPCommand: ctl bgp answers with the speaker's status (text and
// JSON), and with an error naming the cause without one.
func TestBGPCommand(t *testing.T) {
	if _, msg := bgpStatus(plainSwitch{}); !strings.Contains(msg, "no EVPN speaker") {
		t.Errorf("switch without EVPN support: %q", msg)
	}
	if _, msg := bgpStatus(evpnFake{}); !strings.Contains(msg, "no evpn: section") {
		t.Errorf("switch without evpn section: %q", msg)
	}
	data, msg := bgpStatus(evpnFake{on: true})
	if msg != "" {
		t.Fatal(msg)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := formatText(&b, "bgp", raw); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"router id 198.18.0.1, AS 65000, VTEP 198.18.0.1", "198.18.0.201  65000  established", "5000  198.18.0.1:5000  65000:5000  198.18.0.2",
		"ignored: unknown_vni=2"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("ctl bgp text lacks %q:\n%s", want, b.String())
		}
	}
}
