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
		want           []string // substrings; none: fits
	}{
		{1500, 2048, nil},
		{1774, 2048, nil},
		{1775, 2048, []string{"MTU 1775 needs frames of 1793 bytes", "lower the MTU to 1774", "umem.frame_size: 4096 (MTU up to 3822)"}},
		{3822, 4096, nil},
		{9000, 2048, []string{"lower the MTU to 1774 (ip link set eth0 mtu 1774)", "umem.frame_size: 4096 for an MTU up to 3822", "at least 9274"}},
		{9000, 4096, []string{"lower the MTU to 3822", "at least 9274, more than the 4096"}},
		{1500, 0, nil},
	} {
		err := checkFrameFit(kindUnderlay, "eth0", c.mtu, c.frameSize, 0)
		if (err == nil) != (c.want == nil) {
			t.Errorf("MTU %d frame %d: error %v", c.mtu, c.frameSize, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("MTU %d frame %d: %q lacks %q", c.mtu, c.frameSize, err, w)
			}
		}
	}
}

// TestJumboUnderlayRefused: the data plane of a switch whose underlay is a
// veth with MTU 9000 (in a namespace) refuses to open, naming the MTU that
// works and the frame size that would be needed, before it creates
// anything.
func TestJumboUnderlayRefused(t *testing.T) {
	testnet.RequireRoot(t)
	n := testnet.New(t)
	a, b := n.NS("ja"), n.NS("jb")
	n.Veth(a, "eth0", b, "p0", 1)
	n.Run(a, "ip", "link", "set", "eth0", "mtu", "9000")
	n.Run(a, "ip", "addr", "add", "198.18.0.1/24", "dev", "eth0")
	cfg, err := ParseConfig([]byte("underlay:\n  interface: eth0\nbridges:\n  - name: br1\n    internal: false\n    tunnels:\n      - remote_ip: 198.18.0.2\n"))
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
	for _, w := range []string{"underlay port eth0: MTU 9000", "lower the MTU to 1774", "umem.frame_size: 4096 for an MTU up to 3822", "umem.frame_size of at least 9274"} {
		if !strings.Contains(openErr.Error(), w) {
			t.Errorf("error %q lacks %q", openErr, w)
		}
	}
	t.Logf("open: %v", openErr)
	if out := n.Run(a, "ip", "-d", "link", "show", "eth0"); strings.Contains(out, "prog/xdp") {
		t.Errorf("XDP attached to the underlay by the refused open:\n%s", out)
	}
}
