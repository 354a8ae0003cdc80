package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	vswitch "xswitch/switch"
)

type fakeSwitch struct{}

func (fakeSwitch) Status() vswitch.Status {
	return vswitch.Status{Version: "t", Bridges: []vswitch.BridgeStatus{{Name: "br1", VNI: 5000,
		Tunnels: []vswitch.TunnelStatus{{Remote: "198.18.0.2", Key: 5000, Local: "198.18.0.1", NextHop: vswitch.NextHopStatus{State: "resolved", MAC: "02:00:00:00:00:02"}}}}}}
}
func (fakeSwitch) FDB() []vswitch.FDBEntry {
	return []vswitch.FDBEntry{{Bridge: "br1", VNI: 5000, MAC: "02:00:00:00:00:09", Port: "tunnel:198.18.0.2", Remote: "198.18.0.2", Age: 3}}
}
func (fakeSwitch) Stats() vswitch.Stats {
	return vswitch.Stats{Ports: []vswitch.PortStats{{Name: "eth0", Kind: "underlay", RxPackets: 7, Drops: map[string]uint64{"unknown_remote": 2}}},
		Options: []vswitch.OptionStat{{Class: "0x0102", Type: "0x80", Count: 4}}}
}

// TestControl: the control protocol and ctl's output, on an abstract socket
// unique to this test; a second listener on the same socket is refused.
func TestControl(t *testing.T) {
	sock := fmt.Sprintf("@xswitch-test-%d", os.Getpid())
	srv, err := listenControl(sock, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	go srv.serve()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := request(ctx, sock, "show"); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("before attach: %v", err)
	}
	srv.attach(fakeSwitch{})
	if _, err := listenControl(sock, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "another xswitch already runs") {
		t.Errorf("second listener: %v", err)
	}
	for cmd, want := range map[string]string{
		"show":  "tunnel 198.18.0.1 -> 198.18.0.2 key 5000: next hop resolved lladdr 02:00:00:00:00:02",
		"fdb":   "02:00:00:00:00:09  tunnel:198.18.0.2  3s",
		"stats": "unknown_remote=2",
	} {
		var out, errb bytes.Buffer
		if rc := mainArgs([]string{"ctl", "--socket", sock, cmd}, &out, &errb); rc != 0 {
			t.Errorf("ctl %s: rc %d: %s", cmd, rc, errb.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("ctl %s output lacks %q:\n%s", cmd, want, out.String())
		}
		out.Reset()
		if rc := mainArgs([]string{"ctl", cmd, "--json", "--socket=" + sock}, &out, &errb); rc != 0 {
			t.Errorf("ctl %s --json: rc %d", cmd, rc)
		}
		var v any
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Errorf("ctl %s --json is not JSON: %v\n%s", cmd, err, out.String())
		}
	}
	var errb bytes.Buffer
	if rc := mainArgs([]string{"ctl", "--socket", sock, "frobnicate"}, &bytes.Buffer{}, &errb); rc == 0 || !strings.Contains(errb.String(), "give show, fdb or stats") {
		t.Errorf("unknown ctl command: rc %d %s", rc, errb.String())
	}
	if rc := mainArgs([]string{"ctl", "--socket", "@xswitch-nobody-here", "show"}, &bytes.Buffer{}, &errb); rc == 0 || !strings.Contains(errb.String(), "is it running") {
		t.Errorf("no daemon: rc %d %s", rc, errb.String())
	}
}
