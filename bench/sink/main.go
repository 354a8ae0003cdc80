// Command sink counts the frames arriving on an interface with an XDP
// program (a per-CPU counter; frames are dropped, ARP is passed to the
// kernel) and prints the rate each second. At the end it prints the totals
// and, given -sent (what the generator reported), the loss. Run it inside
// the sink's namespace:
//
//	ip netns exec sink sink -i veth1 -duration 10s -sent 12345678
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"xswitch/internal/xdpcount"
)

// Summary is the final line printed with -json.
type Summary struct {
	Packets uint64  `json:"packets"`
	Bytes   uint64  `json:"bytes"`
	Passed  uint64  `json:"passed_arp"`
	Seconds float64 `json:"seconds"`
	Mpps    float64 `json:"mpps"`
	Gbps    float64 `json:"gbps"`
	Sent    uint64  `json:"sent,omitempty"`
	Lost    int64   `json:"lost,omitempty"`
	LossPct float64 `json:"loss_pct,omitempty"`
	Mode    string  `json:"mode"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		iface    = flag.String("i", "", "interface to count on (required)")
		mode     = flag.String("mode", "", "XDP mode: native, generic or empty (native, else generic)")
		duration = flag.Duration("duration", 0, "stop after this long (0: until a signal)")
		idle     = flag.Duration("idle", 0, "stop once nothing arrived for this long after the first frame (0: never)")
		sent     = flag.Uint64("sent", 0, "packets the generator sent, to report the loss")
		asJSON   = flag.Bool("json", false, "print a JSON summary on stdout at the end")
		quiet    = flag.Bool("q", false, "no per-second lines")
		ready    = flag.String("ready", "", "create this file once the program is attached")
	)
	flag.Parse()
	if *iface == "" {
		flag.Usage()
		return fmt.Errorf("-i is required")
	}
	c, err := xdpcount.Attach(*iface, *mode)
	if err != nil {
		return err
	}
	defer c.Close()
	base, err := c.Read()
	if err != nil {
		return err
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("ready\n"), 0o644); err != nil {
			return fmt.Errorf("-ready: %w", err)
		}
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "counting on %s (XDP %s)\n", *iface, c.Mode())
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if *duration > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, *duration)
		defer c2()
	}
	start := time.Now()
	step := time.Second
	if *idle > 0 && *idle < step {
		step = *idle
	}
	tick := time.NewTicker(step)
	defer tick.Stop()
	last, lastT, lastChange := base, start, time.Time{}
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case now := <-tick.C:
			cur, err := c.Read()
			if err != nil {
				return err
			}
			d := cur.Sub(last)
			if d.Packets > 0 {
				lastChange = now
			}
			if !*quiet && step == time.Second {
				fmt.Fprintf(os.Stderr, "%6.1fs  received %12d  %8.3f Mpps  %7.3f Gbps\n", now.Sub(start).Seconds(),
					cur.Packets-base.Packets, float64(d.Packets)/now.Sub(lastT).Seconds()/1e6,
					float64(d.Bytes)*8/now.Sub(lastT).Seconds()/1e9)
			}
			last, lastT = cur, now
			if *idle > 0 && !lastChange.IsZero() && now.Sub(lastChange) >= *idle {
				running = false
			}
		}
	}
	cur, err := c.Read()
	if err != nil {
		return err
	}
	tot := cur.Sub(base)
	el := time.Since(start).Seconds()
	s := Summary{Packets: tot.Packets, Bytes: tot.Bytes, Passed: tot.Passed, Seconds: el,
		Mpps: float64(tot.Packets) / el / 1e6, Gbps: float64(tot.Bytes) * 8 / el / 1e9, Mode: c.Mode()}
	if *sent > 0 {
		s.Sent = *sent
		s.Lost = int64(*sent) - int64(tot.Packets)
		s.LossPct = float64(s.Lost) / float64(*sent) * 100
	}
	if !*quiet {
		fmt.Fprintf(os.Stderr, "total: %d packets, %d bytes in %.2fs", s.Packets, s.Bytes, s.Seconds)
		if *sent > 0 {
			fmt.Fprintf(os.Stderr, "; sent %d, lost %d (%.3f%%)", s.Sent, s.Lost, s.LossPct)
		}
		fmt.Fprintln(os.Stderr)
	}
	if *asJSON {
		b, _ := json.Marshal(s)
		fmt.Println(string(b))
	}
	return nil
}
