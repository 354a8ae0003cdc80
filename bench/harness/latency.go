package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xswitch/bench/internal/frames"
	"xswitch/bench/internal/gen"
	"xswitch/bench/internal/report"
	"xswitch/geneve"
	"xswitch/internal/testnet"
	"xswitch/internal/xdpcount"
)

// Latency probes: ICMP echo requests from the generator's namespace to the
// sink's, through the switch and back (both of its ports' pollers). This
// kernel has no geneve device, so both ends are in user space, on AF_PACKET
// sockets: the prober (generator side) sends the request, Geneve-wrapped
// on decap, and takes the reply's kernel receive timestamp; the reflector
// (sink side, whose XDP counter passes ICMP, plain or in Geneve, to the
// kernel) turns each request into a reply and sends it back the same way.
var (
	ProbeGenIP  = netip.MustParseAddr("198.19.2.1")
	ProbeSinkIP = netip.MustParseAddr("198.19.2.2")
	// ProbeGenMAC is the prober's inner source MAC on decap (its outer is
	// the generator interface's).
	ProbeGenMAC = [6]byte{0x02, 0xbe, 0x00, 0x05, 0x00, 0x01}
	// ProbeSinkMAC is the reflector's inner MAC on encap (the remote VM).
	ProbeSinkMAC = [6]byte{0x02, 0xbe, 0x00, 0x05, 0x00, 0x02}
)

// probeEnds are the MACs of the probe's inner frame and the tunnel
// encapsulation of each side (nil: plain).
type probeEnds struct {
	genMAC, sinkMAC [6]byte
	genEnc, sinkEnc *geneve.Encapsulator
	genIf, sinkIf   string
}

func probeSetup(tp *Topo) (probeEnds, error) {
	e := probeEnds{genMAC: GenMAC, sinkMAC: SinkMAC, genIf: tp.GenIf, sinkIf: tp.SinkIf}
	enc := func(src [6]byte) (*geneve.Encapsulator, error) {
		c := geneve.DefaultEncapConfig()
		c.SrcMAC, c.DstMAC = src, tp.UnderlayMAC
		c.Src, c.Dst = PeerUnderlayIP, SwitchUnderlayIP
		c.VNI = VNI
		return geneve.NewEncapsulator(c)
	}
	var err error
	switch {
	case tp.UnderlayIsIn:
		e.genMAC = ProbeGenMAC
		e.genEnc, err = enc(GenMAC)
	case tp.UnderlayIsOut:
		e.sinkMAC = ProbeSinkMAC
		e.sinkEnc, err = enc(SinkMAC)
	}
	return e, err
}

// icmpEcho builds an Ethernet/IPv4/ICMP echo frame (typ 8 request, 0
// reply) of 98 bytes, as ping's, wrapped by enc when not nil.
func icmpEcho(enc *geneve.Encapsulator, dst, src [6]byte, sip, dip netip.Addr, typ byte, seq uint16) []byte {
	const n = 98
	head := 0
	if enc != nil {
		head = enc.HeaderLen()
	}
	buf := make([]byte, head+n)
	f := buf[head:]
	copy(f[0:], dst[:])
	copy(f[6:], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(ip[2:], n-14)
	copy(ip[12:], sip.AsSlice())
	copy(ip[16:], dip.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], ^frames.Fold(frames.Sum(0, ip)))
	ic := f[34:]
	ic[0] = typ
	binary.BigEndian.PutUint16(ic[4:], 0x7862)
	binary.BigEndian.PutUint16(ic[6:], seq)
	binary.BigEndian.PutUint16(ic[2:], ^frames.Fold(frames.Sum(0, ic)))
	if enc != nil {
		enc.Encap(buf, head, n)
	}
	return buf
}

// echoSeq returns the type and sequence number of an ICMP echo frame
// (plain, or in Geneve without options) to or from the probe addresses.
func echoSeq(f []byte) (typ byte, seq uint16, ok bool) {
	if len(f) >= 50+98 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[23] == 17 && binary.BigEndian.Uint16(f[36:]) == 6081 {
		f = f[50:]
	}
	if len(f) < 98 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[23] != 1 || binary.BigEndian.Uint16(f[34+4:]) != 0x7862 {
		return 0, 0, false
	}
	return f[34], binary.BigEndian.Uint16(f[34+6:]), true
}

// packetSocket opens an AF_PACKET socket on dev in the calling thread's
// namespace, receiving every protocol, with kernel receive timestamps and
// a receive timeout.
func packetSocket(dev string) (int, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return -1, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind AF_PACKET to %s: %w", dev, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recvStamped receives one frame into buf with its kernel timestamp (or
// the time now when the kernel gave none).
func recvStamped(fd int, buf, oob []byte) (int, time.Time, error) {
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
	if err != nil {
		return 0, time.Time{}, err
	}
	at := time.Now()
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
				nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
				at = time.Unix(sec, nsec)
			}
		}
	}
	return n, at, nil
}

// reflector answers probe requests on the sink side, from a thread in the
// sink's namespace pinned to cpu, until stop is closed; ready (buffered)
// gets nil once it listens, or the error that keeps it from it.
func reflector(tp *Topo, e probeEnds, cpu int, ready chan<- error, stop <-chan struct{}) {
	go func() {
		err := testnet.Do(tp.Sink, func() error {
			if err := gen.Pin(cpu); err != nil { // the thread ends with the goroutine
				return err
			}
			fd, err := packetSocket(e.sinkIf)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			sa := &unix.SockaddrLinklayer{Ifindex: ifindexOf(e.sinkIf)}
			ready <- nil
			buf, oob := make([]byte, 2048), make([]byte, 128)
			for {
				select {
				case <-stop:
					return nil
				default:
				}
				n, _, err := recvStamped(fd, buf, oob)
				if err != nil {
					continue // the receive timeout: look at stop
				}
				if typ, seq, ok := echoSeq(buf[:n]); ok && typ == 8 {
					reply := icmpEcho(e.sinkEnc, e.genMAC, e.sinkMAC, ProbeSinkIP, ProbeGenIP, 0, seq)
					_ = unix.Sendto(fd, reply, 0, sa)
				}
			}
		})
		if err != nil {
			select {
			case ready <- err:
			default:
			}
		}
	}()
}

// sendProbe sends req and returns when; under load the generator may keep
// the interface's queue full (ENOBUFS) for a moment: it tries again a few
// times.
func sendProbe(fd int, req []byte, sa *unix.SockaddrLinklayer) (time.Time, error) {
	for try := 0; ; try++ {
		sent := time.Now()
		err := unix.Sendto(fd, req, 0, sa)
		if err == nil || !errors.Is(err, unix.ENOBUFS) || try == 50 {
			return sent, err
		}
		time.Sleep(20 * time.Microsecond)
	}
}

func ifindexOf(dev string) int {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return 0
	}
	return ifi.Index
}

// probeRTT sends n echo requests every interval from the generator side
// and sums up the round trips (send time to the reply's kernel receive
// timestamp). It runs in the generator's namespace, pinned to cpu.
func probeRTT(tp *Topo, e probeEnds, cpu, n int, interval time.Duration, seq0 uint16) (report.RTT, error) {
	var rtts []float64
	err := testnet.Do(tp.Gen, func() error {
		if err := gen.Pin(cpu); err != nil {
			return err
		}
		fd, err := packetSocket(e.genIf)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifindexOf(e.genIf)}
		buf, oob := make([]byte, 2048), make([]byte, 128)
		for i := 0; i < n; i++ {
			seq := seq0 + uint16(i)
			req := icmpEcho(e.genEnc, e.sinkMAC, e.genMAC, ProbeGenIP, ProbeSinkIP, 8, seq)
			sent, err := sendProbe(fd, req, sa)
			if errors.Is(err, unix.ENOBUFS) {
				continue // the interface's queue stayed full: a lost probe
			}
			if err != nil {
				return fmt.Errorf("send probe: %w", err)
			}
			for deadline := sent.Add(time.Second); time.Now().Before(deadline); {
				m, at, err := recvStamped(fd, buf, oob)
				if err != nil {
					continue
				}
				if typ, s, ok := echoSeq(buf[:m]); ok && typ == 0 && s == seq {
					rtts = append(rtts, float64(at.Sub(sent))/float64(time.Microsecond))
					break
				}
			}
			if wait := time.Until(sent.Add(interval)); wait > 0 {
				time.Sleep(wait)
			}
		}
		return nil
	})
	var r report.RTT
	if err != nil {
		return r, err
	}
	if len(rtts) == 0 {
		return r, fmt.Errorf("no reply to %d probes", n)
	}
	r.Replies, r.Lost = len(rtts), n-len(rtts)
	r.MedianUs, r.P99Us, r.MaxUs = report.Median(rtts), report.Percentile(rtts, 99), report.Percentile(rtts, 100)
	return r, nil
}

// latency measures the round trips through sys with no load and with the
// generator sending 64-byte frames at half of r.Mpps (r: this system's
// 64-byte result on this topology).
func (b *Bench) latency(t *testing.T, tp *Topo, r *report.Result, ctr *xdpcount.Counter) *report.Latency {
	o := b.Opt
	l := &report.Latency{Probes: o.LatencyProbes, IntervalMs: float64(o.LatencyInterval) / float64(time.Millisecond),
		Method: fmt.Sprintf("ICMP echo %v → %v through the switch and back (AF_PACKET prober and reflector on the generator CPU; send time to the reply's kernel receive timestamp), every %v, no load then with the generator at half of the forwarded rate (bursts of %d)",
			ProbeGenIP, ProbeSinkIP, o.LatencyInterval, halfLoadBurst)}
	e, err := probeSetup(tp)
	if err != nil {
		l.Error = err.Error()
		return l
	}
	ready, stopRefl := make(chan error, 1), make(chan struct{})
	reflector(tp, e, o.GenCPU, ready, stopRefl)
	defer close(stopRefl)
	if err := <-ready; err != nil {
		l.Error = "reflector: " + err.Error()
		return l
	}
	// A few first probes: the switch learns the probe MACs.
	if _, err := probeRTT(tp, e, o.GenCPU, 3, 50*time.Millisecond, 60000); err != nil {
		l.Error = err.Error()
		return l
	}
	if l.Idle, err = probeRTT(tp, e, o.GenCPU, o.LatencyProbes, o.LatencyInterval, 0); err != nil {
		l.Error = "no load: " + err.Error()
		return l
	}
	rate := r.Mpps * 1e6 / 2
	l.HalfRateMpps = rate / 1e6
	g, stop, err := b.startGenWith(t, tp, 64, func(c *gen.Config) { c.Rate, c.Burst, c.KernelRX = rate, halfLoadBurst, true })
	if err != nil {
		l.Error = "half load: " + err.Error()
		return l
	}
	defer stop()
	time.Sleep(o.Warmup)
	c0, err := ctr.Read()
	if err != nil {
		l.Error = err.Error()
		return l
	}
	s0, t0 := g.Sent(), time.Now()
	l.Half, err = probeRTT(tp, e, o.GenCPU, o.LatencyProbes, o.LatencyInterval, 20000)
	if err != nil {
		l.Error = "half load: " + err.Error()
		return l
	}
	c1, err := ctr.Read()
	if err != nil {
		l.Error = err.Error()
		return l
	}
	dt := time.Since(t0).Seconds()
	l.HalfOfferedMpps = float64(g.Sent()-s0) / dt / 1e6
	l.HalfForwardedMpps = float64(c1.Sub(c0).Packets) / dt / 1e6
	o.Log("  %-8s %-6s    64 B  RTT µs median/p99: no load %.0f/%.0f, half load (%.3f Mpps) %.0f/%.0f", r.System, tp.Path,
		l.Idle.MedianUs, l.Idle.P99Us, l.HalfOfferedMpps, l.Half.MedianUs, l.Half.P99Us)
	return l
}

// halfLoadBurst is the generator's burst at half load: smaller than the
// full-speed 64, so that the load arrives as a stream rather than in rare
// full bursts.
const halfLoadBurst = 16
