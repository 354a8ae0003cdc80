package vswitch

import (
	"strings"
	"testing"

	"go.uber.org/zap"

	"xswitch/internal/testnet"
)

func TestCheckFrameFit(t *testing.T) {
	for _, c := range []struct {
		mtu, frameSize int
		mb             string
		needMB         bool
		want           []string // substrings of the error; none: accepted
	}{
		{1500, 2048, MultiBufferAuto, false, nil},
		{1774, 2048, MultiBufferOff, false, nil},
		{1775, 2048, MultiBufferAuto, true, nil},
		{1775, 2048, MultiBufferOff, false, []string{"MTU 1775 needs frames of 1793 bytes", "umem.multi_buffer is off", "set umem.multi_buffer: auto", "lower the MTU to 1774", "umem.frame_size: 4096 (MTU up to 3822)"}},
		{3822, 4096, MultiBufferOff, false, nil},
		{9000, 2048, MultiBufferAuto, true, nil},
		{9000, 4096, MultiBufferOn, true, nil},
		{9000, 2048, MultiBufferOff, false, []string{"lower the MTU to 1774 (ip link set eth0 mtu 1774)"}},
		{9216, 2048, MultiBufferAuto, true, nil},
		{9217, 2048, MultiBufferAuto, false, []string{"MTU 9217 is more than the 9216 xswitch forwards", "ip link set eth0 mtu 9216"}},
		{1500, 0, MultiBufferAuto, false, nil},
	} {
		needMB, err := checkFrameFit(kindUnderlay, "eth0", c.mtu, c.frameSize, 0, c.mb)
		if (err == nil) != (c.want == nil) || needMB != c.needMB {
			t.Errorf("MTU %d frame %d %s: multi-buffer %v, error %v", c.mtu, c.frameSize, c.mb, needMB, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("MTU %d frame %d: %q lacks %q", c.mtu, c.frameSize, err, w)
			}
		}
	}
}

// TestJumboUnderlayRefused: with umem.multi_buffer: off, the data plane of
// a switch whose underlay is a veth with MTU 9000 (in a namespace) refuses
// to open, naming the MTU that works and the setting that would take it,
// before it creates anything.
func TestJumboUnderlayRefused(t *testing.T) {
	testnet.RequireRoot(t)
	n := testnet.New(t)
	a, b := n.NS("ja"), n.NS("jb")
	n.Veth(a, "eth0", b, "p0", 1)
	n.Run(a, "ip", "link", "set", "eth0", "mtu", "9000")
	n.Run(a, "ip", "addr", "add", "198.18.0.1/24", "dev", "eth0")
	cfg, err := ParseConfig([]byte("umem:\n  multi_buffer: \"off\"\nunderlay:\n  interface: eth0\nbridges:\n  - name: br1\n    internal: false\n    tunnels:\n      - remote_ip: 198.18.0.2\n"))
	if err != nil {
		t.Fatal(err)
	}
	var openErr error
	if err := testnet.Do(a, func() error {
		sw, err := New(cfg, Options{Logger: zap.NewNop()})
		if err == nil {
			return sw.Close()
		}
		openErr = err
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if openErr == nil {
		t.Fatal("the data plane opened on a 9000-byte underlay MTU")
	}
	for _, w := range []string{"underlay port eth0: MTU 9000", "lower the MTU to 1774", "set umem.multi_buffer: auto"} {
		if !strings.Contains(openErr.Error(), w) {
			t.Errorf("error %q lacks %q", openErr, w)
		}
	}
	t.Logf("open: %v", openErr)
	if out := n.Run(a, "ip", "-d", "link", "show", "eth0"); strings.Contains(out, "prog/xdp") {
		t.Errorf("XDP attached to the underlay by the refused open:\n%s", out)
	}
}
