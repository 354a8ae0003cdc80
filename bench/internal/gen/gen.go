// Package gen is the benchmark traffic generator: prebuilt frames (package
// frames) are placed once in transmit buffers and sent again and again in
// bursts, at full speed or at a given rate, from a thread pinned to one CPU.
// No per-packet work is done beyond writing a descriptor.
//
// The AF_XDP backend (package xsk) is the generator; an AF_PACKET sendmmsg
// backend exists for machines or interfaces without AF_XDP and for
// comparison. Both send the same frames.
package gen

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Backend selects how frames are sent.
type Backend string

// Backends.
const (
	BackendXSK    Backend = "xsk"    // AF_XDP socket (package xsk): the generator proper
	BackendPacket Backend = "packet" // AF_PACKET sendmmsg: slower, for reference
)

// Config describes a generator.
type Config struct {
	Interface string
	Frames    [][]byte // one prebuilt frame per flow, all sent in turn
	Rate      float64  // packets per second; 0 sends as fast as possible
	Count     uint64   // stop after this many packets; 0 runs until the context ends
	Burst     int      // packets per submit; default 64
	CPU       int      // pin the sending thread to this CPU; < 0 leaves it unpinned
	Backend   Backend  // default BackendXSK

	// AF_XDP settings.
	UmemFrames int    // transmit buffers; default 4096
	RingSize   int    // TX ring size; default 2048
	ZeroCopy   string // "auto" (default), "on", "off"
	XDPMode    string // "auto" (default), "native", "generic"
	// KernelRX leaves frames arriving on the interface to the kernel (the
	// AF_XDP backend otherwise steers them all to its socket, which takes
	// none): replies to pings sent beside the load (latency probes).
	KernelRX bool

	Logger *zap.Logger
}

func (c *Config) defaults() error {
	if c.Interface == "" {
		return errors.New("gen: Interface is empty")
	}
	if len(c.Frames) == 0 {
		return errors.New("gen: no Frames to send")
	}
	for i, f := range c.Frames {
		if len(f) != len(c.Frames[0]) {
			return fmt.Errorf("gen: frame %d is %d bytes, frame 0 %d: all frames must have one length", i, len(f), len(c.Frames[0]))
		}
	}
	if c.Burst <= 0 {
		c.Burst = 64
	}
	if c.Rate < 0 {
		return fmt.Errorf("gen: Rate %v is negative", c.Rate)
	}
	if c.Backend == "" {
		c.Backend = BackendXSK
	}
	if c.UmemFrames <= 0 {
		c.UmemFrames = 4096
	}
	if c.RingSize <= 0 {
		c.RingSize = 2048
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return nil
}

// txer is a backend. send is called once per burst (never per packet).
type txer interface {
	// send submits up to n prebuilt frames and returns how many were taken.
	send(n int) int
	// drain waits until every submitted frame has left (or timeout).
	drain(timeout time.Duration) error
	mode() string
	close() error
}

// Generator sends prebuilt frames on one interface.
type Generator struct {
	c    Config
	tx   txer
	sent atomic.Uint64
}

// Open creates the backend on c.Interface in the calling thread's network
// namespace (a caller that switched namespaces holds its OS thread locked).
// The frames are copied into the transmit buffers here, once.
func Open(c Config) (*Generator, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	g := &Generator{c: c}
	var err error
	switch c.Backend {
	case BackendXSK:
		g.tx, err = openXSK(&g.c)
	case BackendPacket:
		g.tx, err = openPacket(&g.c)
	default:
		return nil, fmt.Errorf("gen: unknown Backend %q (xsk or packet)", c.Backend)
	}
	if err != nil {
		return nil, err
	}
	c.Logger.Info("generator ready", zap.String("interface", c.Interface), zap.String("mode", g.tx.mode()),
		zap.Int("flows", len(c.Frames)), zap.Int("frame_len", len(c.Frames[0])), zap.Float64("rate_pps", c.Rate))
	return g, nil
}

// Sent returns the number of packets submitted so far (safe from any goroutine).
func (g *Generator) Sent() uint64 { return g.sent.Load() }

// Mode describes the backend (e.g. "xsk copy/native").
func (g *Generator) Mode() string { return g.tx.mode() }

// FrameLen is the length of each sent frame.
func (g *Generator) FrameLen() int { return len(g.c.Frames[0]) }

// Close releases the backend.
func (g *Generator) Close() error { return g.tx.close() }

// Pin locks the calling goroutine to its OS thread and binds the thread to
// cpu (no binding for cpu < 0). The caller must not unlock the thread: Go
// then ends it with the goroutine, instead of handing a thread with a
// narrowed CPU affinity to other goroutines (and to the processes they
// start, which inherit it).
func Pin(cpu int) error {
	runtime.LockOSThread()
	if cpu < 0 {
		return nil
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to CPU %d: %w", cpu, err)
	}
	return nil
}

// Run sends until ctx ends or Count packets are sent, then waits for the
// last frames to complete. It runs on the calling goroutine, locked to its
// thread and pinned to c.CPU: the thread ends with the goroutine, so Run
// must be called on a goroutine of its own.
func (g *Generator) Run(ctx context.Context) error {
	if err := Pin(g.c.CPU); err != nil {
		return err
	}
	var stop atomic.Bool
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			stop.Store(true)
		case <-done:
		}
	}()

	burst := uint64(g.c.Burst)
	rate := g.c.Rate
	count := g.c.Count
	start := time.Now()
	var sent uint64
	for !stop.Load() {
		n := burst
		if count > 0 {
			if sent >= count {
				break
			}
			n = min(n, count-sent)
		}
		if rate > 0 {
			// Send a whole burst once it is due; sleep when the next one is far.
			due := uint64(time.Since(start).Seconds() * rate)
			if due < sent+n {
				wait := time.Duration(float64(sent+n-due) / rate * float64(time.Second))
				if wait > time.Millisecond {
					time.Sleep(wait - 500*time.Microsecond)
				}
				continue
			}
		}
		if m := g.tx.send(int(n)); m > 0 {
			sent += uint64(m)
			g.sent.Store(sent)
		}
	}
	if err := g.tx.drain(2 * time.Second); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	return nil
}
