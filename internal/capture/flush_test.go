package capture_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/capture"
	"xswitch/internal/rawsend"
	"xswitch/internal/testnet"
)

// TestFlushWaitFrames: a burst of frames sent without any pause is all in
// the file once WaitFrames has seen them (no fixed sleep), the count is
// exact, and Stop's flush loses none of them. Flush on an idle capture
// returns at once (tcpdump answers SIGUSR1 as soon as it listens).
func TestFlushWaitFrames(t *testing.T) {
	n := testnet.New(t)
	a, b := n.NS("a"), n.NS("b")
	n.Veth(a, "v0", b, "v0", 1)
	c := capture.Start(t, b, "v0", "udp", "dst", "port", "9")
	if err := c.Flush(5 * time.Second); err != nil {
		t.Fatalf("flush of an idle capture: %v", err)
	}
	const burst = 100 // frames of each kind: the ring holds them all
	marked := innerUDP(40009, 9)
	other := innerUDP(40010, 9)
	err := testnet.Do(a, func() error { return rawsend.Send("v0", [][]byte{marked, other}, burst) })
	if err != nil {
		t.Fatal(err)
	}
	isMarked := func(f []byte) bool { return len(f) >= 36 && binary.BigEndian.Uint16(f[34:]) == 40009 }
	got, err := c.WaitFrames(burst, 10*time.Second, isMarked)
	if err != nil {
		t.Fatal(err)
	}
	if got != burst {
		t.Errorf("WaitFrames counted %d marked frames, want %d", got, burst)
	}
	// Asking for more than was sent times out with the count.
	if got, err := c.WaitFrames(burst+1, 50*time.Millisecond, isMarked); err == nil || got != burst {
		t.Errorf("WaitFrames(%d) = %d, %v; want %d and a timeout", burst+1, got, err, burst)
	}
	pcap, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	frames, err := capture.ReadPcap(pcap)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 2*burst {
		t.Errorf("the file holds %d frames, want %d", len(frames), 2*burst)
	}
	for i, f := range frames {
		want := marked
		if i%2 == 1 {
			want = other
		}
		if !bytes.Equal(f, want) {
			t.Fatalf("frame %d is %x, want %x", i, f, want)
		}
	}
	// tshark reads the same file the same way.
	out, err := capture.Tshark(pcap, "-Y", "udp.srcport == 40009", "-T", "fields", "-e", "frame.number")
	if err != nil {
		t.Fatal(err)
	}
	if k := len(strings.Fields(out)); k != burst {
		t.Errorf("tshark counts %d marked frames, want %d", k, burst)
	}
	if strings.Contains(c.Stderr(), "packets captured,") {
		t.Errorf("the counts asked for with SIGUSR1 ended up in Stderr:\n%s", c.Stderr())
	}
}

// TestOverflowReported: when tcpdump's ring overflows (here: tcpdump is
// paused while a burst arrives), Stop says the capture is incomplete
// instead of handing back a file that silently lacks frames.
func TestOverflowReported(t *testing.T) {
	n := testnet.New(t)
	a, b := n.NS("a"), n.NS("b")
	n.Veth(a, "v0", b, "v0", 1)
	c := capture.Start(t, b, "v0", "udp", "dst", "port", "9")
	if err := syscall.Kill(c.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	err := testnet.Do(a, func() error { return rawsend.Send("v0", [][]byte{innerUDP(40009, 9)}, 3000) })
	if cerr := syscall.Kill(c.Pid(), syscall.SIGCONT); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stop()
	if err == nil || !strings.Contains(err.Error(), "ring overflowed") {
		t.Fatalf("Stop after an overflow: %v, want a ring overflow error", err)
	}
	t.Log(err)
}
