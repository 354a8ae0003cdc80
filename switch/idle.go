package vswitch

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
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
	defaultSleepMax   = 50 * time.Microsecond
	defaultSleepStep  = time.Microsecond
	defaultSleepIdle  = 2 * time.Millisecond
	defaultKickDelay  = 20 * time.Microsecond
	sleepTimerSlackNs = 1000 // PR_SET_TIMERSLACK of a sleeping poller (OVS: PMD_TIMER_RES_NS)
)

// halfBurst is the burst that counts as load (OVS: PMD_SLEEP_THRESH, half
// of its 32-packet burst): a poller that receives fewer sleeps.
const halfBurst = maxBurst / 2

type idleMode uint8

const (
	idleModePoll  idleMode = iota // poll() when the RX ring is empty
	idleModeSleep                 // load-based nanosleep, poll() when idle
	idleModeBusy                  // busy_poll: spin, never sleep
)

// idleConfig is the parsed idle settings (Config.idle).
type idleConfig struct {
	mode      idleMode
	sleepStep int64 // ns
	sleepMax  int64 // ns
	// pollAfter is how many empty rounds at sleepMax lead to poll().
	pollAfter int
	// kickFrames > 0 coalesces TX kicks: frames placed on TX rings wait
	// for a sendto until kickFrames are pending or the oldest has waited
	// kickDelay, and are always kicked before a sleep that would pass
	// that delay. 0 kicks after every burst (Transmit).
	kickFrames int
	kickDelay  int64 // ns
}

// IdleStatus is the pollers' idle policy as `xswitch ctl show` reports it.
type IdleStatus struct {
	Policy     string `json:"policy"`                // poll, sleep or busy (busy_poll)
	SleepMax   string `json:"sleep_max,omitempty"`   // sleep: longest sleep
	SleepStep  string `json:"sleep_step,omitempty"`  // sleep: growth per light round
	SleepIdle  string `json:"sleep_idle,omitempty"`  // sleep: empty time at the longest sleep before poll()
	KickFrames int    `json:"kick_frames,omitempty"` // > 0: TX kicks coalesced up to this many frames
	KickDelay  string `json:"kick_delay,omitempty"`  // ... or this long
}

func (c idleConfig) status() IdleStatus {
	st := IdleStatus{Policy: IdlePoll}
	switch c.mode {
	case idleModeBusy:
		st.Policy = "busy"
	case idleModeSleep:
		st.Policy = IdleSleep
		st.SleepMax = time.Duration(c.sleepMax).String()
		st.SleepStep = time.Duration(c.sleepStep).String()
		st.SleepIdle = (time.Duration(c.sleepMax) * time.Duration(c.pollAfter)).String()
	}
	if c.kickFrames > 0 {
		st.KickFrames = c.kickFrames
		st.KickDelay = time.Duration(c.kickDelay).String()
	}
	return st
}

// IdleStatus reports the pollers' idle policy (valid after Validate).
func (c *Config) IdleStatus() IdleStatus { return c.idle.status() }

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
	ic := idleConfig{}
	switch c.PollerIdle {
	case "", IdlePoll:
		c.PollerIdle = IdlePoll
	case IdleSleep:
		ic.mode = idleModeSleep
	default:
		bad("poller_idle", "%q is not an idle policy; write %s or %s", c.PollerIdle, IdlePoll, IdleSleep)
	}
	ic.sleepMax = dur("poller_sleep_max", c.PollerSleepMax, defaultSleepMax, time.Microsecond, 10*time.Millisecond)
	ic.sleepStep = dur("poller_sleep_step", c.PollerSleepStep, defaultSleepStep, time.Microsecond, 10*time.Millisecond)
	idle := dur("poller_sleep_idle", c.PollerSleepIdle, defaultSleepIdle, 0, time.Second)
	if ic.sleepStep > ic.sleepMax {
		bad("poller_sleep_step", "%v is longer than poller_sleep_max (%v); write a step of at most the maximum", time.Duration(ic.sleepStep), time.Duration(ic.sleepMax))
	}
	ic.pollAfter = max(1, int(idle/ic.sleepMax))
	if ic.mode != idleModeSleep && (c.PollerSleepMax != "" || c.PollerSleepStep != "" || c.PollerSleepIdle != "") {
		bad("poller_idle", "poller_sleep_* settings apply to poller_idle: %s only; set poller_idle: %s or remove them", IdleSleep, IdleSleep)
	}
	if c.BusyPoll {
		if ic.mode == idleModeSleep {
			bad("poller_idle", "busy_poll spins and %s sleeps; set one of them", IdleSleep)
		}
		ic.mode = idleModeBusy
	}
	if c.PollerKickFrames < 0 || c.PollerKickFrames > 1024 {
		bad("poller_kick_frames", "%d is out of range; write 0 (kick after every burst) to 1024", c.PollerKickFrames)
	} else {
		ic.kickFrames = c.PollerKickFrames
	}
	ic.kickDelay = dur("poller_kick_delay", c.PollerKickDelay, defaultKickDelay, time.Microsecond, 10*time.Millisecond)
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

type idleAction uint8

const (
	actNone  idleAction = iota // receive again at once
	actSleep                   // nanosleep, then receive
	actPoll                    // poll() until the RX ring has frames
)

// idleState is one poller's idle policy at work: the loop calls next once
// per round, and placed / kickDue around its transmits. No allocation, no
// syscall, no clock read of its own: the caller passes the time (tests use
// a fake clock).
type idleState struct {
	cfg        idleConfig
	sleep      int64 // ns the next light round sleeps
	emptyAtMax int   // empty rounds in a row at sleepMax
	deep       bool  // idle: poll() until frames arrive
	unkicked   int   // frames placed on TX rings since the last kick
	since      int64 // when the oldest of them was placed
}

func newIdleState(c idleConfig) idleState { return idleState{cfg: c} }

// next says what to do after a round that received n frames: receive
// again, sleep for the returned ns, or poll().
func (s *idleState) next(n int) (idleAction, int64) {
	switch s.cfg.mode {
	case idleModeBusy:
		return actNone, 0
	case idleModePoll:
		if n == 0 {
			return actPoll, 0
		}
		return actNone, 0
	}
	if n >= halfBurst {
		s.sleep, s.emptyAtMax, s.deep = 0, 0, false
		return actNone, 0
	}
	if n > 0 {
		s.emptyAtMax, s.deep = 0, false
	} else if s.deep {
		return actPoll, 0
	} else if s.sleep >= s.cfg.sleepMax {
		if s.emptyAtMax++; s.emptyAtMax >= s.cfg.pollAfter {
			// Idle: sleep in poll() until traffic comes back, then
			// start again from no sleep.
			s.sleep, s.emptyAtMax, s.deep = 0, 0, true
			return actPoll, 0
		}
	}
	// As OVS: sleep what the previous light rounds built up, then grow.
	d := s.sleep
	s.sleep = min(s.sleep+s.cfg.sleepStep, s.cfg.sleepMax)
	if d == 0 {
		return actNone, 0
	}
	return actSleep, d
}

// coalescing says whether TX kicks wait (poller_kick_frames > 0).
func (s *idleState) coalescing() bool { return s.cfg.kickFrames > 0 }

// placed records k frames put on TX rings without a kick at time now and
// says whether to kick now.
func (s *idleState) placed(k int, now int64) bool {
	if k <= 0 {
		return false
	}
	if s.unkicked == 0 {
		s.since = now
	}
	s.unkicked += k
	return s.unkicked >= s.cfg.kickFrames || now-s.since >= s.cfg.kickDelay
}

// pending says whether frames wait for a kick.
func (s *idleState) pending() bool { return s.unkicked > 0 }

// kickDue says whether frames waiting for a kick must be kicked at now,
// before the action act (sleeping d ns): before poll() always, before a
// sleep that would take them past the delay, and once the delay passed.
func (s *idleState) kickDue(act idleAction, d, now int64) bool {
	if s.unkicked == 0 {
		return false
	}
	switch act {
	case actPoll:
		return true
	case actSleep:
		return now+d-s.since >= s.cfg.kickDelay
	}
	return now-s.since >= s.cfg.kickDelay
}

// kicked records that every placed frame was kicked.
func (s *idleState) kicked() { s.unkicked = 0 }

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow is the monotonic time in ns (a vDSO clock read).
func monoNow() int64 { return int64(time.Since(monoBase)) }

// nanosleep sleeps d ns in the kernel: the poller's thread blocks alone,
// where time.Sleep would park the goroutine and need another thread's
// timer to wake it (two wake-ups instead of one).
func nanosleep(d int64) {
	ts := unix.NsecToTimespec(d)
	if err := unix.Nanosleep(&ts, nil); err != nil && !errors.Is(err, unix.EINTR) {
		// Nanosleep fails only on a bad argument: fall back to Go's sleep.
		time.Sleep(time.Duration(d))
	}
}

// prepareThread sets up the calling (locked) poller thread for the
// policy: a sleeping poller asks for 1 µs timer slack, or the kernel would
// stretch every sleep by its default 50 µs.
func (c idleConfig) prepareThread() error {
	if c.mode != idleModeSleep {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, sleepTimerSlackNs, 0, 0, 0); err != nil {
		return fmt.Errorf("timer slack (PR_SET_TIMERSLACK %d ns): %w", sleepTimerSlackNs, err)
	}
	return nil
}

// kickPending wakes the kernel on every TX socket this poller placed
// frames on without a kick (Transmit(nil) makes the syscall only when
// descriptors wait and the ring asks for a wake-up).
func (p *poller) kickPending() {
	for _, id := range p.dests {
		pt := p.core.f.ports[id]
		tq := pt.tx[p.txIdx%len(pt.tx)]
		tq.mu.Lock()
		tq.sock.Transmit(nil)
		tq.mu.Unlock()
	}
	p.idle.kicked()
}
