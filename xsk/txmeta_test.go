package xsk

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var txmdMarker = []byte("TXMD")

// refSum is a plain RFC 1071 sum of b (odd length padded with a zero).
func refSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func refFold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// l4Frame is an Ethernet frame carrying TCP or UDP over IPv4 or IPv6 with
// payload; its checksum field holds the pseudo-header sum (what a sender
// with checksum offload leaves). It returns the frame, the L4 offset, the
// checksum field's offset from it, and the complete checksum computed
// plainly (field zero, pseudo header, ones' complement; UDP 0 as 0xffff).
func l4Frame(dst, src net.HardwareAddr, v6, tcp bool, payload []byte) (f []byte, l4, csumOff int, want uint16) {
	proto, hl := byte(unix.IPPROTO_UDP), 8
	csumOff = 6
	if tcp {
		proto, hl, csumOff = unix.IPPROTO_TCP, 20, 16
	}
	ipl := 20
	et := uint16(0x0800)
	if v6 {
		ipl, et = 40, 0x86dd
	}
	l4 = 14 + ipl
	l4len := hl + len(payload)
	f = make([]byte, l4+l4len)
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], et)
	ip := f[14:]
	var addrs []byte
	if v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(l4len))
		ip[6], ip[7] = proto, 64
		s, d := netip.MustParseAddr("2001:2::1").As16(), netip.MustParseAddr("2001:2::2").As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		addrs = ip[8:40]
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+l4len))
		ip[8], ip[9] = 64, proto
		copy(ip[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
		binary.BigEndian.PutUint16(ip[10:], ^refFold(refSum(ip[:20])))
		addrs = ip[12:20]
	}
	h := f[l4:]
	binary.BigEndian.PutUint16(h[0:], 40000)
	binary.BigEndian.PutUint16(h[2:], 9)
	if tcp {
		binary.BigEndian.PutUint32(h[4:], 1000)
		h[12] = 5 << 4
		h[13] = 0x10 // ACK
		binary.BigEndian.PutUint16(h[14:], 65535)
	} else {
		binary.BigEndian.PutUint16(h[4:], uint16(l4len))
	}
	copy(h[hl:], payload)
	pseudo := refSum(addrs) + uint32(proto) + uint32(l4len)
	want = ^refFold(pseudo + refSum(h))
	if want == 0 && !tcp {
		want = 0xffff
	}
	binary.BigEndian.PutUint16(h[csumOff:], refFold(pseudo))
	return f, l4, csumOff, want
}

// TestTxChecksumMetadata: on a veth in copy mode with TX metadata and
// XDP_UMEM_TX_SW_CSUM, frames sent with a checksum request arrive at the
// peer with the complete, correct checksum (against a plain reference),
// for UDP over IPv6 and TCP over IPv4, odd and even lengths; a frame sent
// without the request arrives with the pseudo-header sum untouched (the
// kernel, not the test, did the work).
func TestTxChecksumMetadata(t *testing.T) {
	sn := newSockNet(t, 1, UmemConfig{NumFrames: 1024, TxMetadata: true, TxSwChecksum: true})
	p := sn.mustOpen(PortConfig{RingSize: 256, ZeroCopy: ZeroCopyOff})
	if p.Mode().ZeroCopy {
		t.Fatal("veth bound in zero-copy mode")
	}
	if !sn.u.TxMetadata() || !sn.u.TxSwChecksum() {
		t.Fatal("UMEM lost its TX metadata flags")
	}
	peer := openRaw(t, sn.peer, "p0")
	s := p.Sockets()[0]
	c := sn.u.NewCache()

	type sent struct {
		frame     []byte
		l4, field int
		want      uint16
		request   bool
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var frames []sent
	for i := 0; i < 24; i++ {
		v6, tcp, request := i%2 == 0, i%4 >= 2, i%8 != 7
		payload := make([]byte, 20+rng.IntN(1300))
		for j := range payload {
			payload[j] = byte(rng.Uint32())
		}
		copy(payload, txmdMarker)
		payload[4] = byte(i)
		f, l4, co, want := l4Frame(sn.pmac, sn.xmac, v6, tcp, payload)
		frames = append(frames, sent{f, l4, l4 + co, want, request})
	}
	addrs := make([]uint64, len(frames))
	if c.Get(addrs) != len(frames) {
		t.Fatal("no frames")
	}
	descs := make([]Desc, len(frames))
	const off = 256
	for i, fr := range frames {
		buf := sn.u.Frame(addrs[i])
		copy(buf[off:], fr.frame)
		descs[i] = Desc{Addr: addrs[i] + off, Len: uint32(len(fr.frame))}
		if fr.request {
			descs[i].Options |= SetTxChecksum(buf, off, uint16(fr.l4), uint16(fr.field-fr.l4))
		}
	}
	transmitAll(t, s, c, descs, 5*time.Second)

	got := map[byte][]byte{}
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(5 * time.Second); len(got) < len(frames) && time.Now().Before(deadline); {
		fds := []unix.PollFd{{Fd: int32(peer.fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 20); n <= 0 {
			continue
		}
		n, _, err := unix.Recvfrom(peer.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		i := -1
		for _, hl := range []int{8, 20} {
			for _, l4 := range []int{34, 54} {
				if n > l4+hl+5 && bytes.Equal(buf[l4+hl:l4+hl+4], txmdMarker) {
					i = int(buf[l4+hl+4])
				}
			}
		}
		if i >= 0 && i < len(frames) {
			got[byte(i)] = append([]byte(nil), buf[:n]...)
		}
	}
	st, _ := s.Stats()
	if len(got) != len(frames) {
		t.Fatalf("peer got %d of %d frames (stats %+v)", len(got), len(frames), st)
	}
	requested := 0
	for i, fr := range frames {
		g := got[byte(i)]
		field := binary.BigEndian.Uint16(g[fr.field:])
		want := fr.want
		if !fr.request {
			want = binary.BigEndian.Uint16(fr.frame[fr.field:]) // the pseudo-header sum, untouched
		} else {
			requested++
		}
		if field != want {
			t.Errorf("frame %d (request %v, %d bytes): checksum %#04x, want %#04x", i, fr.request, len(g), field, want)
		}
		// Everything else arrives as sent.
		g2 := append([]byte(nil), g...)
		copy(g2[fr.field:], fr.frame[fr.field:fr.field+2])
		if !bytes.Equal(g2, fr.frame) {
			t.Errorf("frame %d: bytes other than the checksum changed", i)
		}
	}
	t.Logf("%d frames with a checksum request completed by the kernel, %d without left partial; stats %+v", requested, len(frames)-requested, st)
	c.Flush()
	sn.closeAll()
}

// TestTxMetadataOptions: TxSwChecksum without TxMetadata is refused, and
// SetTxChecksum writes struct xsk_tx_metadata where the kernel reads it.
func TestTxMetadataOptions(t *testing.T) {
	if _, err := NewUmem(UmemConfig{NumFrames: 64, TxSwChecksum: true}); err == nil {
		t.Error("TxSwChecksum without TxMetadata accepted")
	}
	buf := make([]byte, 64)
	for i := range buf {
		buf[i] = 0xaa
	}
	if o := SetTxChecksum(buf, 32, 0x1234, 0x56); o != unix.XDP_TX_METADATA {
		t.Errorf("option %#x", o)
	}
	m := buf[16:32]
	if binary.NativeEndian.Uint64(m) != unix.XDP_TXMD_FLAGS_CHECKSUM || binary.NativeEndian.Uint16(m[8:]) != 0x1234 ||
		binary.NativeEndian.Uint16(m[10:]) != 0x56 || binary.NativeEndian.Uint32(m[12:]) != 0 {
		t.Errorf("metadata % x", m)
	}
	if buf[15] != 0xaa || buf[32] != 0xaa {
		t.Error("SetTxChecksum wrote outside the metadata")
	}
}
