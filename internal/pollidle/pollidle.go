// Package pollidle is the idle policy of an AF_XDP polling loop: what the
// loop does between two receive bursts (receive again, nanosleep, or
// poll()) and when it wakes the kernel to transmit (TX kick coalescing).
// xswitch's pollers (switch/idle.go) and the benchmark's l2fwd ceiling
// (bench/l2fwd) run the same code, so that the ceiling can run the same
// pattern as the switch.
//
// State is a small state machine the loop calls once per round: no
// allocation, no syscall, no clock read of its own (the caller passes the
// time, so tests use a fake clock).
package pollidle

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is how a loop waits for traffic.
type Mode uint8

const (
	// Poll sleeps in poll() as soon as the RX ring is empty.
	Poll Mode = iota
	// Sleep is Open vSwitch's load-based sleeping (pmd-maxsleep): no
	// syscall while bursts are at least HalfBurst; after a lighter one,
	// nanosleep for a time that starts at 0 and grows by SleepStep per
	// light round up to SleepMax, back to 0 after a fuller one; after
	// PollAfter empty rounds at SleepMax, poll() until frames arrive.
	Sleep
	// Busy spins: never sleeps (busy_poll).
	Busy
)

// String is the mode's configuration name.
func (m Mode) String() string {
	switch m {
	case Poll:
		return "poll"
	case Sleep:
		return "sleep"
	case Busy:
		return "busy"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Config is an idle policy.
type Config struct {
	Mode      Mode
	HalfBurst int   // Sleep: a burst of at least this many frames is load (OVS: half its burst)
	SleepStep int64 // Sleep: ns added per light round
	SleepMax  int64 // Sleep: the longest sleep, ns
	PollAfter int   // Sleep: empty rounds at SleepMax before poll()
	// KickFrames > 0 coalesces TX kicks: frames placed on TX rings wait for
	// a sendto until KickFrames are pending or the oldest has waited
	// KickDelay; always before poll() and before a sleep that would pass
	// that delay. 0 kicks after every burst.
	KickFrames int
	KickDelay  int64 // ns
}

// Action is what to do before the next receive.
type Action uint8

const (
	None    Action = iota // receive again at once
	SleepNs               // nanosleep the returned ns, then receive
	PollRx                // poll() until the RX ring has frames
)

// State is one loop's policy at work.
type State struct {
	cfg        Config
	sleep      int64 // ns the next light round sleeps
	emptyAtMax int   // empty rounds in a row at SleepMax
	deep       bool  // idle: poll() until frames arrive
	unkicked   int   // frames placed on TX rings since the last kick
	since      int64 // when the oldest of them was placed
}

// New returns the state of a loop that starts with no sleep.
func New(c Config) State { return State{cfg: c} }

// Config returns the policy.
func (s *State) Config() Config { return s.cfg }

// Next says what to do after a round that received n frames.
func (s *State) Next(n int) (Action, int64) {
	switch s.cfg.Mode {
	case Busy:
		return None, 0
	case Poll:
		if n == 0 {
			return PollRx, 0
		}
		return None, 0
	}
	if n >= s.cfg.HalfBurst {
		s.sleep, s.emptyAtMax, s.deep = 0, 0, false
		return None, 0
	}
	if n > 0 {
		s.emptyAtMax, s.deep = 0, false
	} else if s.deep {
		return PollRx, 0
	} else if s.sleep >= s.cfg.SleepMax {
		if s.emptyAtMax++; s.emptyAtMax >= s.cfg.PollAfter {
			// Idle: poll() until traffic comes back, then start again
			// from no sleep.
			s.sleep, s.emptyAtMax, s.deep = 0, 0, true
			return PollRx, 0
		}
	}
	// As OVS: sleep what the previous light rounds built up, then grow.
	d := s.sleep
	s.sleep = min(s.sleep+s.cfg.SleepStep, s.cfg.SleepMax)
	if d == 0 {
		return None, 0
	}
	return SleepNs, d
}

// Coalescing says whether TX kicks wait (KickFrames > 0).
func (s *State) Coalescing() bool { return s.cfg.KickFrames > 0 }

// Placed records k frames put on TX rings without a kick at time now and
// says whether to kick now.
func (s *State) Placed(k int, now int64) bool {
	if k <= 0 {
		return false
	}
	if s.unkicked == 0 {
		s.since = now
	}
	s.unkicked += k
	return s.unkicked >= s.cfg.KickFrames || now-s.since >= s.cfg.KickDelay
}

// Pending says whether frames wait for a kick.
func (s *State) Pending() bool { return s.unkicked > 0 }

// KickDue says whether frames waiting for a kick must be kicked at now,
// before the action act (sleeping d ns): before poll() always, before a
// sleep that would take them past the delay, and once the delay passed.
func (s *State) KickDue(act Action, d, now int64) bool {
	if s.unkicked == 0 {
		return false
	}
	switch act {
	case PollRx:
		return true
	case SleepNs:
		return now+d-s.since >= s.cfg.KickDelay
	}
	return now-s.since >= s.cfg.KickDelay
}

// Kicked records that every placed frame was kicked.
func (s *State) Kicked() { s.unkicked = 0 }

// monoBase anchors Now.
var monoBase = time.Now()

// Now is the monotonic time in ns (a vDSO clock read).
func Now() int64 { return int64(time.Since(monoBase)) }

// Nanosleep sleeps d ns in the kernel: the calling thread blocks alone,
// where time.Sleep would park the goroutine and need another thread's
// timer to wake it (two wake-ups instead of one).
func Nanosleep(d int64) {
	ts := unix.NsecToTimespec(d)
	if err := unix.Nanosleep(&ts, nil); err != nil && !errors.Is(err, unix.EINTR) {
		// Nanosleep fails only on a bad argument: fall back to Go's sleep.
		time.Sleep(time.Duration(d))
	}
}

// TimerSlackNs is the timer slack a sleeping loop's thread asks for (OVS:
// PMD_TIMER_RES_NS): with the kernel's default of 50 µs every sleep would
// be stretched by up to that.
const TimerSlackNs = 1000

// PrepareThread sets up the calling (locked) thread for mode: a sleeping
// loop gets TimerSlackNs of timer slack.
func PrepareThread(m Mode) error {
	if m != Sleep {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, TimerSlackNs, 0, 0, 0); err != nil {
		return fmt.Errorf("timer slack (PR_SET_TIMERSLACK %d ns): %w", TimerSlackNs, err)
	}
	return nil
}
