package vswitch

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"xswitch/internal/testnet"
	"xswitch/offload"
)

// TestTAP: the internal port appears with its MAC, MTU and addresses, a
// frame written to it reaches the kernel, a frame the kernel sends is read
// back, and closing the fd removes the device.
func TestTAP(t *testing.T) {
	n := testnet.New(t)
	ns := n.NS("tap")
	var tap *tapDev
	err := testnet.Do(ns, func() error {
		var err error
		tap, err = openTAP("br1", []byte{2, 0, 0, 0, 0, 1}, 1450, []netip.Prefix{
			netip.MustParsePrefix("198.19.0.1/24"), netip.MustParsePrefix("2001:2:0:19::1/64")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.close()
	out := n.Run(ns, "ip", "addr", "show", "br1")
	for _, want := range []string{"02:00:00:00:00:01", "mtu 1450", "198.19.0.1/24", "2001:2:0:19::1/64", "UP"} {
		if !strings.Contains(out, want) {
			t.Errorf("br1 lacks %q:\n%s", want, out)
		}
	}
	// The kernel answers an ARP request written to the TAP (after the
	// virtio-net header: IFF_VNET_HDR, all zero = nothing to finish).
	req := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 9, 0x08, 0x06,
		0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 9, 198, 19, 0, 9, 0, 0, 0, 0, 0, 0, 198, 19, 0, 1}
	if _, err := unix.Write(tap.fd, req); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	pfd := []unix.PollFd{{Fd: int32(tap.fd), Events: unix.POLLIN}}
	got := false
	for i := 0; i < 20 && !got; i++ {
		if _, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		for {
			k, err := unix.Read(tap.fd, buf)
			if err != nil {
				break
			}
			if k < offload.VnetHdrLen {
				t.Fatalf("read %d bytes from the TAP: shorter than its virtio-net header", k)
			}
			f := buf[offload.VnetHdrLen:k]
			k -= offload.VnetHdrLen
			if k >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && string(f[0:6]) == "\x02\x00\x00\x00\x00\x09" {
				got = true
			}
		}
	}
	if !got {
		t.Errorf("no ARP reply read from the TAP")
	}
	if err := tap.close(); err != nil {
		t.Fatal(err)
	}
	if out, err := testnet.Try(ns, "ip", "link", "show", "br1"); err == nil {
		t.Errorf("br1 still exists after close:\n%s", out)
	}
}
