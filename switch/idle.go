package vswitch

import (
	"time"

	"xswitch/internal/pollidle"
)

// Idle policies of the AF_XDP pollers (Config.PollerIdle): what a poller
// does between two receive bursts. docs/configuration.md, docs/benchmarks.md.
const (
	// IdlePoll sleeps in poll() as soon as the RX ring is empty: one
	// sleep and one wake-up per burst, however small.
	IdlePoll = "poll"
	// IdleSleep is Open vSwitch's load-based sleeping (pmd-maxsleep): no
	// syscall while bursts are at least half full; after a lighter one,
	// nanosleep for a time that grows by poller_sleep_step up to
	// poller_sleep_max, back to 0 after a fuller one; after
	// poller_sleep_idle with nothing received at the longest sleep, poll()
	// until traffic comes back (an idle switch costs no CPU).
	IdleSleep = "sleep"
)

// Defaults of the idle settings.
const (
	defaultSleepMax  = 50 * time.Microsecond
	defaultSleepStep = time.Microsecond
	defaultSleepIdle = 2 * time.Millisecond
	defaultKickDelay = 20 * time.Microsecond
)

// halfBurst is the burst that counts as load (OVS: PMD_SLEEP_THRESH, half
// of its 32-packet burst): a poller that receives fewer sleeps.
const halfBurst = maxBurst / 2

// idleConfig is the parsed idle settings (Config.idle); the state machine
// is package pollidle, shared with bench/l2fwd.
type idleConfig = pollidle.Config

// IdleStatus is the pollers' idle policy as `xswitch ctl show` reports it.
type IdleStatus struct {
	Policy     string `json:"policy"`                // poll, sleep or busy (busy_poll)
	SleepMax   string `json:"sleep_max,omitempty"`   // sleep: longest sleep
	SleepStep  string `json:"sleep_step,omitempty"`  // sleep: growth per light round
	SleepIdle  string `json:"sleep_idle,omitempty"`  // sleep: empty time at the longest sleep before poll()
	KickFrames int    `json:"kick_frames,omitempty"` // > 0: TX kicks coalesced up to this many frames
	KickDelay  string `json:"kick_delay,omitempty"`  // ... or this long
}

func idleStatus(c idleConfig) IdleStatus {
	st := IdleStatus{Policy: c.Mode.String()}
	if c.Mode == pollidle.Sleep {
		st.SleepMax = time.Duration(c.SleepMax).String()
		st.SleepStep = time.Duration(c.SleepStep).String()
		st.SleepIdle = (time.Duration(c.SleepMax) * time.Duration(c.PollAfter)).String()
	}
	if c.KickFrames > 0 {
		st.KickFrames = c.KickFrames
		st.KickDelay = time.Duration(c.KickDelay).String()
	}
	return st
}

// IdleStatus reports the pollers' idle policy (valid after Validate).
func (c *Config) IdleStatus() IdleStatus { return idleStatus(c.idle) }

// validateIdle checks the poller_idle, poller_sleep_* and poller_kick_*
// settings and fills c.idle.
func (c *Config) validateIdle(bad func(field, format string, a ...any)) {
	dur := func(field, v string, def, lo, hi time.Duration) int64 {
		if v == "" {
			return int64(def)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			bad(field, "%q is not a duration between %v and %v; write e.g. %v, or leave it out (default %v)", v, lo, hi, def, def)
			return int64(def)
		}
		return int64(d)
	}
	ic := idleConfig{Mode: pollidle.Poll, HalfBurst: halfBurst}
	switch c.PollerIdle {
	case "", IdlePoll:
		c.PollerIdle = IdlePoll
	case IdleSleep:
		ic.Mode = pollidle.Sleep
	default:
		bad("poller_idle", "%q is not an idle policy; write %s or %s", c.PollerIdle, IdlePoll, IdleSleep)
	}
	ic.SleepMax = dur("poller_sleep_max", c.PollerSleepMax, defaultSleepMax, time.Microsecond, 10*time.Millisecond)
	ic.SleepStep = dur("poller_sleep_step", c.PollerSleepStep, defaultSleepStep, time.Microsecond, 10*time.Millisecond)
	idle := dur("poller_sleep_idle", c.PollerSleepIdle, defaultSleepIdle, 0, time.Second)
	if ic.SleepStep > ic.SleepMax {
		bad("poller_sleep_step", "%v is longer than poller_sleep_max (%v); write a step of at most the maximum", time.Duration(ic.SleepStep), time.Duration(ic.SleepMax))
	}
	ic.PollAfter = max(1, int(idle/ic.SleepMax))
	if ic.Mode != pollidle.Sleep && (c.PollerSleepMax != "" || c.PollerSleepStep != "" || c.PollerSleepIdle != "") {
		bad("poller_idle", "poller_sleep_* settings apply to poller_idle: %s only; set poller_idle: %s or remove them", IdleSleep, IdleSleep)
	}
	if c.BusyPoll {
		if ic.Mode == pollidle.Sleep {
			bad("poller_idle", "busy_poll spins and %s sleeps; set one of them", IdleSleep)
		}
		ic.Mode = pollidle.Busy
	}
	if c.PollerKickFrames < 0 || c.PollerKickFrames > 1024 {
		bad("poller_kick_frames", "%d is out of range; write 0 (kick after every burst) to 1024", c.PollerKickFrames)
	} else {
		ic.KickFrames = c.PollerKickFrames
	}
	ic.KickDelay = dur("poller_kick_delay", c.PollerKickDelay, defaultKickDelay, time.Microsecond, 10*time.Millisecond)
	if c.PollerKickFrames == 0 && c.PollerKickDelay != "" {
		bad("poller_kick_delay", "applies only when TX kicks are coalesced; set poller_kick_frames (e.g. 64) or remove it")
	}
	c.checkKickFrames(bad)
	c.idle = ic
}

// checkKickFrames refuses a coalescing bound the rings cannot hold: the
// frames waiting for a kick sit in a TX ring.
func (c *Config) checkKickFrames(bad func(field, format string, a ...any)) {
	check := func(ring int, field string) {
		if ring <= 0 {
			ring = 2048
		}
		if c.PollerKickFrames > ring/2 {
			bad("poller_kick_frames", "%d is more than half of %s (%d); write at most %d", c.PollerKickFrames, field, ring, ring/2)
		}
	}
	if c.PollerKickFrames <= 0 {
		return
	}
	check(c.Ports.RingSize, "port_options.ring_size")
	if c.Underlay != nil {
		check(c.Underlay.RingSize, "underlay.ring_size")
	}
}

// kickPending wakes the kernel on every TX socket this poller placed
// frames on without a kick (Transmit(nil) makes the syscall only when
// descriptors wait and the ring asks for a wake-up).
func (p *poller) kickPending() {
	for _, id := range p.core.f.xdp {
		pt := p.core.f.ports[id]
		tq := pt.tx[p.txIdx%len(pt.tx)]
		tq.mu.Lock()
		tq.sock.Transmit(nil)
		tq.mu.Unlock()
	}
	p.idle.Kicked()
}
