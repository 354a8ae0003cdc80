package offload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"xswitch/internal/testnet"
)

// kernelFrame is one frame captured on the receiving veth, with what the
// kernel said about it.
type kernelFrame struct {
	hdr    VnetHdr
	status uint32 // tpacket_auxdata.tp_status
	frame  []byte
}

// openCapture opens, inside ns, a packet socket on ifname that delivers the
// virtio-net header the kernel derives from the skb (PACKET_VNET_HDR) and
// tpacket_auxdata (PACKET_AUXDATA), so the test sees the kernel's own view
// of each frame: CHECKSUM_PARTIAL shows as NEEDS_CSUM and
// TP_STATUS_CSUMNOTREADY, GSO frames arrive whole with their gso_type.
func openCapture(t *testing.T, ns, ifname string) int {
	var fd int
	err := testnet.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		for _, o := range []int{unix.PACKET_VNET_HDR, unix.PACKET_AUXDATA} {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o, 1); err != nil {
				return fmt.Errorf("setsockopt %d: %w", o, err)
			}
		}
		tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s in %s: %v", ifname, ns, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func readCaptured(fd int, buf, oob []byte) (kernelFrame, error) {
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
	if err != nil {
		return kernelFrame{}, err
	}
	h, err := DecodeVnetHdr(buf[:n])
	if err != nil {
		return kernelFrame{}, err
	}
	k := kernelFrame{hdr: h, frame: bytes.Clone(buf[VnetHdrLen:n])}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return k, err
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			k.status = binary.NativeEndian.Uint32(m.Data)
		}
	}
	return k, nil
}

// TestKernelPartialFrames checks the package against what Linux really hands
// over a veth with TX checksum and segmentation offload on (the default):
// UDP and TCP from one namespace, captured on the peer veth in the other.
// Every frame the kernel marks CHECKSUM_PARTIAL must be found by IsPartial
// at the kernel's csum_start/csum_offset and verify once completed; every
// GSO frame must pass Validate and segment into frames that verify and carry
// the same bytes.
func TestKernelPartialFrames(t *testing.T) {
	n := testnet.New(t)
	a, b := n.NS("offa"), n.NS("offb")
	n.Veth(a, "va", b, "vb", 0)
	n.Run(a, "ip", "addr", "add", "198.18.77.1/24", "dev", "va")
	n.Run(b, "ip", "addr", "add", "198.18.77.2/24", "dev", "vb")
	n.Run(a, "ip", "addr", "add", "2001:2:0:77::1/64", "dev", "va", "nodad")
	n.Run(b, "ip", "addr", "add", "2001:2:0:77::2/64", "dev", "vb", "nodad")
	fd := openCapture(t, b, "vb")

	// Senders: UDP v4/v6 datagrams, and a TCP stream large enough for TSO.
	var udp4, udp6 net.Conn
	var ln net.Listener
	var err error
	if err = testnet.Do(b, func() error {
		ln, err = net.Listen("tcp4", "198.18.77.2:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	var tcp net.Conn
	if err := testnet.Do(a, func() error {
		if udp4, err = net.Dial("udp4", "198.18.77.2:9"); err != nil {
			return err
		}
		if udp6, err = net.Dial("udp6", "[2001:2:0:77::2]:9"); err != nil {
			return err
		}
		tcp, err = net.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer udp4.Close()
	defer udp6.Close()
	defer tcp.Close()

	payload := bytes.Repeat([]byte("xswitch offload "), 4096) // 64 KiB
	seen := map[string]int{}
	buf, oob := make([]byte, VnetHdrLen+MaxFrameLen), make([]byte, 256)
	var seg Segmenter
	segBuf := make([]byte, MaxFrameLen)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !(seen["udp4 partial"] >= 3 && seen["udp6 partial"] >= 3 && seen["tcp gso"] >= 3) {
		for _, sz := range []int{1, 100, 1400} {
			udp4.Write(payload[:sz])
			udp6.Write(payload[:sz])
		}
		tcp.SetWriteDeadline(time.Now().Add(time.Second))
		tcp.Write(payload)
		for {
			k, err := readCaptured(fd, buf, oob)
			if err != nil {
				break // EAGAIN: the burst is read
			}
			f, r := ParseFrame(k.frame)
			if r != DropNone {
				continue // ARP, neighbour discovery, ICMP
			}
			kind := map[bool]string{false: "udp4", true: "udp6"}[f.IPv6]
			if f.Proto == protoTCP {
				kind = "tcp"
			}
			if k.hdr.Flags&FlagNeedsCsum != 0 && k.status&unix.TP_STATUS_CSUMNOTREADY == 0 {
				t.Fatalf("%s: NEEDS_CSUM without TP_STATUS_CSUMNOTREADY", kind)
			}
			if k.hdr.IsGSO() {
				seen[kind+" gso"]++
				checkKernelGSO(t, &seg, segBuf, k)
				continue
			}
			if k.hdr.Flags&FlagNeedsCsum == 0 {
				if err := refVerify(k.frame); err != nil {
					t.Fatalf("%s frame the kernel says is complete: %v", kind, err)
				}
				seen[kind+" complete"]++
				continue
			}
			c, ok := IsPartial(k.frame)
			if !ok || c.Start != int(k.hdr.CsumStart) || c.Offset != int(k.hdr.CsumOffset) {
				t.Fatalf("%s partial frame (kernel: csum_start %d offset %d): IsPartial = %+v, %v",
					kind, k.hdr.CsumStart, k.hdr.CsumOffset, c, ok)
			}
			CompleteL4(k.frame, c)
			if err := refVerify(k.frame); err != nil {
				t.Fatalf("%s partial frame after CompleteL4: %v", kind, err)
			}
			seen[kind+" partial"]++
		}
	}
	t.Logf("frames seen on the receiving veth: %v", seen)
	for _, want := range []string{"udp4 partial", "udp6 partial", "tcp gso"} {
		if seen[want] == 0 {
			t.Errorf("no %s frame seen in 20 s (seen: %v)", want, seen)
		}
	}
}

// checkKernelGSO: a GSO frame from the kernel validates and segments into
// frames that verify and carry its payload.
func checkKernelGSO(t *testing.T, s *Segmenter, buf []byte, k kernelFrame) {
	t.Helper()
	f, r := k.hdr.Validate(k.frame)
	if r != DropNone {
		t.Fatalf("kernel GSO frame %+v refused: %v", k.hdr, r)
	}
	n, r := s.Start(k.hdr, k.frame, 1500, CsumFull)
	if r != DropNone || n < 2 {
		t.Fatalf("kernel GSO frame %+v: %d segments, %v", k.hdr, n, r)
	}
	var pay []byte
	for range n {
		m, r := s.Next(buf)
		if r != DropNone {
			t.Fatal(r)
		}
		if err := refVerify(buf[:m]); err != nil {
			t.Fatalf("segment of a kernel GSO frame: %v", err)
		}
		sf, _ := ParseFrame(buf[:m])
		pay = append(pay, buf[sf.Payload:sf.End]...)
	}
	if !bytes.Equal(pay, k.frame[f.Payload:f.End]) {
		t.Fatal("segments of a kernel GSO frame lost or changed bytes")
	}
}
