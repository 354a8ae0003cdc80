package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"xswitch/internal/testnet"
)

// buildCmds builds pktgen and sink into a temporary directory.
func buildCmds(t *testing.T) (pktgen, sink string) {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "xswitch/bench/pktgen", "xswitch/bench/sink").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "pktgen"), filepath.Join(dir, "sink")
}

// TestPktgenToSink sends a fixed number of frames with pktgen across one
// veth pair and checks that the sink counted exactly that many, for each
// backend and for plain and Geneve frames. The rate is limited so that the
// veth queue never overflows: the test is about counting, not speed.
func TestPktgenToSink(t *testing.T) {
	n := testnet.New(t)
	pktgen, sink := buildCmds(t)
	cases := []struct {
		name string
		args []string
	}{
		{"xsk-64", []string{"-backend", "xsk", "-size", "64"}},
		{"xsk-1500-geneve", []string{"-backend", "xsk", "-size", "1400", "-geneve", "-outer-dst-mac", "02:be:00:00:09:09", "-vni", "5000"}},
		{"packet-512", []string{"-backend", "packet", "-size", "512", "-flows", "3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := n.NS("gen"), n.NS("sink")
			for _, ns := range []string{a, b} { // no IPv6 chatter from the kernel: only our frames cross
				n.Run(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", "net.ipv6.conf.all.disable_ipv6=1")
			}
			n.Veth(a, "g0", b, "s0", 1)
			const count = 20000
			ready := filepath.Join(t.TempDir(), "ready")
			sk := testnet.Cmd(b, sink, "-i", "s0", "-json", "-q", "-idle", "1s", "-duration", "60s", "-ready", ready)
			var sout, serr bytes.Buffer
			sk.Stdout, sk.Stderr = &sout, &serr
			if err := sk.Start(); err != nil {
				t.Fatal(err)
			}
			defer sk.Process.Kill()
			for i := 0; ; i++ {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				if i == 200 {
					t.Fatalf("sink not ready: %s", serr.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			args := append([]string{"-i", "g0", "-json", "-q", "-count", strconv.Itoa(count), "-rate", "100000", "-cpu", "0"}, c.args...)
			out, err := testnet.Cmd(a, pktgen, args...).Output()
			if err != nil {
				t.Fatalf("pktgen %v: %v\n%s", args, err, out)
			}
			var gs Summary
			if err := json.Unmarshal(out, &gs); err != nil {
				t.Fatalf("pktgen output %q: %v", out, err)
			}
			if err := sk.Wait(); err != nil {
				t.Fatalf("sink: %v\n%s", err, serr.String())
			}
			var ss struct {
				Packets, Bytes uint64
			}
			if err := json.Unmarshal(sout.Bytes(), &ss); err != nil {
				t.Fatalf("sink output %q: %v", sout.String(), err)
			}
			t.Logf("pktgen: %+v; sink: %+v", gs, ss)
			if gs.Sent != count {
				t.Fatalf("pktgen sent %d, want %d", gs.Sent, count)
			}
			if ss.Packets != gs.Sent || ss.Bytes != gs.Sent*uint64(gs.FrameLen) {
				t.Fatalf("sink counted %d packets, %d bytes; pktgen sent %d of %d bytes", ss.Packets, ss.Bytes, gs.Sent, gs.FrameLen)
			}
		})
	}
}
