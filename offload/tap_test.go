package offload

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xswitch/internal/testnet"
)

const (
	tunFUSO4 = 0x20 // TUN_F_USO4 (Linux 6.2), not in older headers
	tunFUSO6 = 0x40 // TUN_F_USO6
)

// openTAP creates a TAP in ns with IFF_VNET_HDR and TCP (and, where the
// kernel accepts it, UDP) segmentation offload, as xswitch will open it.
func openTAP(t *testing.T, ns, name, addr4, addr6 string) (*os.File, bool) {
	var f *os.File
	uso := false
	err := testnet.Do(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		base := unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
		if unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, base|tunFUSO4|tunFUSO6) == nil {
			uso = true
		} else if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, base); err != nil {
			return fmt.Errorf("TUNSETOFFLOAD: %w", err)
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			return err
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	if err != nil {
		t.Fatalf("TAP %s in %s: %v", name, ns, err)
	}
	t.Cleanup(func() { f.Close() })
	for _, args := range [][]string{
		{"addr", "add", addr4, "dev", name},
		{"addr", "add", addr6, "dev", name, "nodad"},
		{"link", "set", name, "up"},
	} {
		if _, err := testnet.Try(ns, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	return f, uso
}

// wireStats counts what a wire direction did.
type wireStats struct {
	gsoIn, segments, merged, drops atomic.Int64
}

// wire copies frames from one TAP to the other the way xswitch will: each
// frame read (with its virtio-net header, maybe a 64 KB GSO frame) is cut by
// the Segmenter into frames of at most maxLen bytes, the segments are merged
// again by the Coalescer and written with their headers. The kernel on the
// other side accepts only frames whose headers, lengths and checksums are
// right, so a TCP stream crossing it intact proves both directions.
func wire(from, to *os.File, maxLen int, st *wireStats) {
	in := make([]byte, VnetHdrLen+MaxFrameLen)
	arena := make([]byte, 64*2048)
	burst := make([][]byte, 0, 64)
	out := make([]CoalesceOut, 64)
	wbuf := make([]byte, VnetHdrLen+MaxFrameLen)
	bufs := [][]byte{make([]byte, VnetHdrLen+MaxFrameLen), make([]byte, VnetHdrLen+MaxFrameLen)}
	co, _ := NewCoalescer(bufs, VnetHdrLen)
	var seg Segmenter
	for {
		n, err := from.Read(in)
		if err != nil {
			return
		}
		h, err := DecodeVnetHdr(in[:n])
		if err != nil {
			st.drops.Add(1)
			continue
		}
		if h.IsGSO() {
			st.gsoIn.Add(1)
		}
		k, r := seg.Start(h, in[VnetHdrLen:n], maxLen, CsumFull)
		if r != DropNone {
			st.drops.Add(1)
			continue
		}
		burst = burst[:0]
		for i := 0; i < k && i < 64; i++ {
			dst := arena[i*2048 : (i+1)*2048]
			m, r := seg.Next(dst)
			if r != DropNone {
				st.drops.Add(1)
				break
			}
			burst = append(burst, dst[:m])
		}
		st.segments.Add(int64(len(burst)))
		for _, o := range out[:co.Coalesce(burst, out)] {
			if o.Count > 1 {
				st.merged.Add(1)
			}
			o.Hdr.Encode(wbuf)
			m := copy(wbuf[VnetHdrLen:], o.Frame)
			if _, err := to.Write(wbuf[:VnetHdrLen+m]); err != nil {
				if errors.Is(err, os.ErrClosed) {
					return
				}
				st.drops.Add(1)
			}
		}
	}
}

// TestTAPWire: TCP over IPv4 and IPv6 between two namespaces whose only link
// is a pair of TAPs joined by wire (segmentation to 1500-byte frames, then
// coalescing). 8 MiB each way must arrive intact, and the run must have
// used GSO frames from the kernel and merged frames toward it.
func TestTAPWire(t *testing.T) {
	n := testnet.New(t)
	a, b := n.NS("tapa"), n.NS("tapb")
	ta, uso := openTAP(t, a, "ta0", "198.18.78.1/24", "2001:2:0:78::1/64")
	tb, _ := openTAP(t, b, "tb0", "198.18.78.2/24", "2001:2:0:78::2/64")
	t.Logf("TAP offloads: TSO4/TSO6, USO accepted: %v", uso)
	var ab, ba wireStats
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); wire(ta, tb, 1514, &ab) }()
	go func() { defer wg.Done(); wire(tb, ta, 1514, &ba) }()
	defer func() { ta.Close(); tb.Close(); wg.Wait() }()

	for _, c := range []struct{ network, listen string }{
		{"tcp4", "198.18.78.2:0"},
		{"tcp6", "[2001:2:0:78::2]:0"},
	} {
		transfer(t, a, b, c.network, c.listen, 8<<20)
	}
	before := ab.gsoIn.Load()
	udpSegments(t, a, b)
	if uso && ab.gsoIn.Load() == before {
		t.Error("USO accepted by the TAP but no UDP GSO frame crossed the wire")
	}
	t.Logf("a→b: %d GSO frames in, %d segments, %d merged frames out, %d drops", ab.gsoIn.Load(), ab.segments.Load(), ab.merged.Load(), ab.drops.Load())
	t.Logf("b→a: %d GSO frames in, %d segments, %d merged frames out, %d drops", ba.gsoIn.Load(), ba.segments.Load(), ba.merged.Load(), ba.drops.Load())
	if ab.gsoIn.Load() == 0 || ab.merged.Load() == 0 {
		t.Fatal("the transfer did not exercise GSO frames from the kernel and merged frames toward it")
	}
	if ab.drops.Load()+ba.drops.Load() != 0 {
		t.Fatal("the wire dropped frames")
	}
}

// transfer sends size random bytes from a client in nsA to a server in nsB
// and compares their SHA-256.
func transfer(t *testing.T, nsA, nsB, network, listen string, size int) {
	var ln net.Listener
	if err := testnet.Do(nsB, func() (err error) { ln, err = net.Listen(network, listen); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		io.Copy(h, c)
		var s [32]byte
		copy(s[:], h.Sum(nil))
		got <- s
	}()
	data := make([]byte, size)
	rand.Read(data)
	var c net.Conn
	if err := testnet.Do(nsA, func() (err error) {
		c, err = net.DialTimeout(network, ln.Addr().String(), 10*time.Second)
		return
	}); err != nil {
		t.Fatalf("%s: dial: %v", network, err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.Copy(c, bytes.NewReader(data)); err != nil {
		t.Fatalf("%s: send: %v", network, err)
	}
	c.Close()
	select {
	case s := <-got:
		if s != sha256.Sum256(data) {
			t.Fatalf("%s: the bytes received differ from the bytes sent", network)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: transfer did not finish in 60 s", network)
	}
}

// udpSegments sends one 20000-byte buffer with UDP_SEGMENT 1000 (USO) from
// nsA; nsB must receive 20 datagrams of 1000 bytes with the right content.
func udpSegments(t *testing.T, nsA, nsB string) {
	var rc *net.UDPConn
	if err := testnet.Do(nsB, func() (err error) {
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 78, 2)})
		return
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var sc *net.UDPConn
	if err := testnet.Do(nsA, func() (err error) {
		sc, err = net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
		return
	}); err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	raw, _ := sc.SyscallConn()
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, 1000) })
	if serr != nil {
		t.Fatalf("UDP_SEGMENT: %v", serr)
	}
	data := make([]byte, 20000)
	rand.Read(data)
	if _, err := sc.Write(data); err != nil {
		t.Fatalf("USO send: %v", err)
	}
	buf := make([]byte, 2000)
	rc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range 20 {
		n, err := rc.Read(buf)
		if err != nil {
			t.Fatalf("USO datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], data[i*1000:(i+1)*1000]) {
			t.Fatalf("USO datagram %d: %d bytes, content differs", i, n)
		}
	}
}
