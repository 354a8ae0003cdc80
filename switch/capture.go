package vswitch

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// MaxSnaplen is the longest part of a frame a capture keeps (tcpdump's
// default); the internal port's merged frames reach 64 KB.
const MaxSnaplen = 262144

// Capture is a running capture of one port or of tunnel:REMOTE
// (`xswitch ctl capture`): what the port receives and sends, or the inner
// frames to and from the remote endpoint. Every poller copies the frames it
// sees into its own ring (captureRing); the one reader drains them. A reader
// that does not keep up loses copies (Lost), never frames of the switch.
type Capture struct {
	Target  string // the port name, or tunnel:REMOTE
	Kind    string // the port's kind, or "tunnel"
	Snaplen int
	tap     *captureTap
	ports   []*port
	tuns    []*tunnel
	recs    []CapturedFrame
	tails   []uint64
	stop    sync.Once
	sw      *Switch
}

// StartCapture starts capturing target: a port's name (underlay: Geneve
// frames as on the wire; local and internal ports: their Ethernet frames) or
// "tunnel:REMOTE" (the inner frames of every bridge's tunnel to REMOTE).
// Frames are cut to snaplen bytes (0: MaxSnaplen). One capture per port or
// tunnel at a time. Call Stop when done.
func (s *Switch) StartCapture(target string, snaplen int) (*Capture, error) {
	if snaplen <= 0 || snaplen > MaxSnaplen {
		snaplen = MaxSnaplen
	}
	// applyMu: no generation is being built meanwhile (buildFabric
	// carries a capture over to the next generation's port).
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return nil, errors.New("xswitch is stopping")
	}
	c := &Capture{Target: target, Snaplen: snaplen, sw: s}
	if err := s.captureTargets(c); err != nil {
		return nil, err
	}
	c.tap = &captureTap{snap: snaplen}
	for _, core := range s.dp.cores() {
		c.tap.rings = append(c.tap.rings, coreRing{c: core, r: newCaptureRing(captureRingSz)})
	}
	c.tails = make([]uint64, len(c.tap.rings))
	for i, p := range c.ports {
		if !p.capture.CompareAndSwap(nil, c.tap) {
			c.uninstall(c.ports[:i], nil)
			return nil, fmt.Errorf("a capture of %s already runs; one capture per port at a time", target)
		}
	}
	for i, t := range c.tuns {
		if !t.capture.CompareAndSwap(nil, c.tap) {
			c.uninstall(c.ports, c.tuns[:i])
			return nil, fmt.Errorf("a capture of %s already runs; one capture per tunnel at a time", target)
		}
	}
	return c, nil
}

// captureTargets finds the port or the tunnels c.Target names.
func (s *Switch) captureTargets(c *Capture) error {
	if rest, ok := strings.CutPrefix(c.Target, "tunnel:"); ok {
		a, err := netip.ParseAddr(rest)
		if err != nil {
			return fmt.Errorf("capture %s: %q is not an IP address; write tunnel:REMOTE_IP", c.Target, rest)
		}
		for _, t := range s.cur().tunnels {
			if t.remote == a.Unmap() || t.remote == a {
				c.tuns = append(c.tuns, t)
			}
		}
		if len(c.tuns) == 0 {
			return fmt.Errorf("capture %s: no tunnel to %s; the tunnels are: %s", c.Target, a, strings.Join(s.targetNames(true), ", "))
		}
		c.Kind = "tunnel"
		return nil
	}
	for _, p := range s.cur().ports {
		if p.name == c.Target && !p.isTomb() {
			c.ports, c.Kind = []*port{p}, p.kind.String()
			return nil
		}
	}
	return fmt.Errorf("capture: no port %q; the ports are: %s", c.Target, strings.Join(s.targetNames(false), ", "))
}

// targetNames lists what can be captured: the ports, or the tunnels.
func (s *Switch) targetNames(tunnels bool) []string {
	var out []string
	if tunnels {
		for _, t := range s.cur().tunnels {
			if t.remote.IsValid() {
				out = append(out, "tunnel:"+t.remote.String())
			}
		}
	} else {
		for _, p := range s.cur().ports {
			if !p.isTomb() {
				out = append(out, p.name)
			}
		}
	}
	if len(out) == 0 {
		return []string{"(none)"}
	}
	return slices.Compact(out)
}

func (c *Capture) uninstall(ports []*port, tuns []*tunnel) {
	for _, p := range ports {
		p.capture.CompareAndSwap(c.tap, nil)
	}
	for _, t := range tuns {
		t.capture.CompareAndSwap(c.tap, nil)
	}
}

// Stop ends the capture: the pollers stop copying (at the latest after the
// batch they are in). Frames copied before stay readable with Drain.
func (c *Capture) Stop() {
	c.stop.Do(func() {
		c.uninstall(c.ports, c.tuns)
		if c.sw == nil {
			return
		}
		// A reload or link event may have carried the capture over to a
		// port object of a later generation (buildFabric).
		c.sw.applyMu.Lock()
		defer c.sw.applyMu.Unlock()
		for _, p := range c.sw.cur().ports {
			if p.name == c.Target {
				p.capture.CompareAndSwap(c.tap, nil)
			}
		}
	})
}

// Drain calls fn for every frame captured since the last Drain, oldest
// first, at most max of them (0: all), and returns how many. Data is valid
// only during fn. One goroutine at a time.
func (c *Capture) Drain(max int, fn func(CapturedFrame)) int {
	c.recs = c.recs[:0]
	for i, cr := range c.tap.rings {
		c.recs, c.tails[i] = cr.r.peek(c.recs)
	}
	slices.SortStableFunc(c.recs, func(a, b CapturedFrame) int {
		switch {
		case a.Time < b.Time:
			return -1
		case a.Time > b.Time:
			return 1
		}
		return 0
	})
	n := len(c.recs)
	if max > 0 && n > max {
		n = max
	}
	for _, r := range c.recs[:n] {
		fn(r)
	}
	for i, cr := range c.tap.rings {
		cr.r.commit(c.tails[i])
	}
	return n
}

// Lost is how many frame copies the capture lost: its rings were full
// because the reader did not keep up (the frames themselves went on).
func (c *Capture) Lost() uint64 {
	n := c.tap.stray.Load()
	for _, cr := range c.tap.rings {
		n += cr.r.lost.Load()
	}
	return n
}
