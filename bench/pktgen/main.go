// Command pktgen is the benchmark traffic generator: it builds N flows of
// Ethernet/IPv4/UDP frames once (optionally Geneve-encapsulated, to drive a
// switch's decapsulation path), places them in AF_XDP transmit buffers and
// sends them again and again in bursts of 64, at full speed or at -rate
// packets/s, from a thread pinned to -cpu. It prints the rate each second.
// Run it inside the generator's namespace:
//
//	ip netns exec gen pktgen -i veth0 -size 64 -flows 16 -cpu 0 -duration 10s
//	ip netns exec gen pktgen -i veth0 -geneve -outer-dst-ip 198.18.1.1 -outer-dst-mac 02:... -count 1000000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"xswitch/bench/internal/frames"
	"xswitch/bench/internal/gen"
	"xswitch/geneve"
)

// Summary is the final line printed with -json.
type Summary struct {
	Sent     uint64  `json:"sent"`
	Seconds  float64 `json:"seconds"`
	Mpps     float64 `json:"mpps"`
	FrameLen int     `json:"frame_len"`
	Mode     string  `json:"mode"`
}

func mac(s string) ([6]byte, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return [6]byte{}, fmt.Errorf("bad MAC %q", s)
	}
	return [6]byte(hw), nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pktgen:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		iface    = flag.String("i", "", "interface to send on (required)")
		size     = flag.Int("size", 64, "frame length in bytes without FCS, 60..1518 (the inner frame with -geneve)")
		flows    = flag.Int("flows", 16, "number of flows (source MAC, source IP and UDP ports vary)")
		srcMAC   = flag.String("src-mac", "02:be:00:00:00:01", "source MAC of flow 0 (flow i adds i)")
		dstMAC   = flag.String("dst-mac", "02:be:00:00:01:01", "destination MAC (fixed)")
		srcIP    = flag.String("src-ip", "198.19.0.1", "source IPv4 of flow 0 (flow i adds i)")
		dstIP    = flag.String("dst-ip", "198.19.1.1", "destination IPv4")
		sport    = flag.Uint("sport", 1024, "UDP source port of flow 0")
		dport    = flag.Uint("dport", 5001, "UDP destination port (flow i adds i%16)")
		gnv      = flag.Bool("geneve", false, "send the frames encapsulated in Geneve (decapsulation path)")
		oSrcMAC  = flag.String("outer-src-mac", "", "Geneve: outer source MAC (default: the interface's)")
		oDstMAC  = flag.String("outer-dst-mac", "", "Geneve: outer destination MAC (the switch's underlay MAC)")
		oSrcIP   = flag.String("outer-src-ip", "198.18.1.2", "Geneve: outer source IP")
		oDstIP   = flag.String("outer-dst-ip", "198.18.1.1", "Geneve: outer destination IP (the switch's underlay IP)")
		vni      = flag.Uint("vni", 0, "Geneve: VNI")
		rate     = flag.Float64("rate", 0, "packets per second (0: as fast as possible)")
		count    = flag.Uint64("count", 0, "stop after this many packets (0: until -duration or a signal)")
		duration = flag.Duration("duration", 0, "stop after this long (0: until -count or a signal)")
		cpu      = flag.Int("cpu", 0, "CPU to pin the sending thread to (-1: no pinning)")
		burst    = flag.Int("burst", 64, "packets per submit")
		backend  = flag.String("backend", "xsk", "xsk (AF_XDP) or packet (AF_PACKET sendmmsg, for reference)")
		zc       = flag.String("zerocopy", "auto", "AF_XDP zero-copy: auto, on, off")
		xdpMode  = flag.String("xdp-mode", "auto", "XDP mode of the port's program: auto, native, generic")
		asJSON   = flag.Bool("json", false, "print a JSON summary on stdout at the end")
		quiet    = flag.Bool("q", false, "no progress lines")
	)
	flag.Parse()
	if *iface == "" {
		flag.Usage()
		return fmt.Errorf("-i is required")
	}
	log, _ := zap.NewProduction()
	if *quiet {
		log = zap.NewNop()
	}
	defer log.Sync()

	spec := frames.Spec{Size: *size, Flows: *flows, SrcPort: uint16(*sport), DstPort: uint16(*dport)}
	var err error
	if spec.SrcMAC, err = mac(*srcMAC); err != nil {
		return fmt.Errorf("-src-mac: %w", err)
	}
	if spec.DstMAC, err = mac(*dstMAC); err != nil {
		return fmt.Errorf("-dst-mac: %w", err)
	}
	if spec.SrcIP, err = netip.ParseAddr(*srcIP); err != nil {
		return fmt.Errorf("-src-ip: %w", err)
	}
	if spec.DstIP, err = netip.ParseAddr(*dstIP); err != nil {
		return fmt.Errorf("-dst-ip: %w", err)
	}
	if *gnv {
		c := geneve.DefaultEncapConfig()
		if *oSrcMAC == "" {
			ifi, err := net.InterfaceByName(*iface)
			if err != nil {
				return fmt.Errorf("-i: %w", err)
			}
			*oSrcMAC = ifi.HardwareAddr.String()
		}
		if c.SrcMAC, err = mac(*oSrcMAC); err != nil {
			return fmt.Errorf("-outer-src-mac: %w", err)
		}
		if c.DstMAC, err = mac(*oDstMAC); err != nil {
			return fmt.Errorf("-outer-dst-mac (required with -geneve): %w", err)
		}
		if c.Src, err = netip.ParseAddr(*oSrcIP); err != nil {
			return fmt.Errorf("-outer-src-ip: %w", err)
		}
		if c.Dst, err = netip.ParseAddr(*oDstIP); err != nil {
			return fmt.Errorf("-outer-dst-ip: %w", err)
		}
		c.VNI = uint32(*vni)
		if spec.Encap, err = geneve.NewEncapsulator(c); err != nil {
			return fmt.Errorf("geneve: %w", err)
		}
	}
	fs, err := frames.Build(spec)
	if err != nil {
		return err
	}
	g, err := gen.Open(gen.Config{Interface: *iface, Frames: fs, Rate: *rate, Count: *count, Burst: *burst,
		CPU: *cpu, Backend: gen.Backend(*backend), ZeroCopy: *zc, XDPMode: *xdpMode, Logger: log})
	if err != nil {
		return err
	}
	defer g.Close()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if *duration > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, *duration)
		defer c2()
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, lastT := uint64(0), start
	for {
		select {
		case err := <-done:
			el := time.Since(start)
			s := Summary{Sent: g.Sent(), Seconds: el.Seconds(), FrameLen: g.FrameLen(), Mode: g.Mode()}
			s.Mpps = float64(s.Sent) / el.Seconds() / 1e6
			if !*quiet {
				fmt.Fprintf(os.Stderr, "total: %d packets in %.2fs, %.3f Mpps (%s)\n", s.Sent, s.Seconds, s.Mpps, s.Mode)
			}
			if *asJSON {
				b, _ := json.Marshal(s)
				fmt.Println(string(b))
			}
			return err
		case now := <-tick.C:
			cur := g.Sent()
			if !*quiet {
				fmt.Fprintf(os.Stderr, "%6.1fs  sent %12d  %8.3f Mpps\n", now.Sub(start).Seconds(), cur,
					float64(cur-last)/now.Sub(lastT).Seconds()/1e6)
			}
			last, lastT = cur, now
		}
	}
}
