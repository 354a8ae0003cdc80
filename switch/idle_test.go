package vswitch

import (
	"strings"
	"testing"
	"time"
)

const us = int64(time.Microsecond)

func sleepCfg(step, maxSleep int64, pollAfter int) idleConfig {
	return idleConfig{mode: idleModeSleep, sleepStep: step, sleepMax: maxSleep, pollAfter: pollAfter}
}

// TestIdleSleepGrowsAndResets: light rounds sleep 0, step, 2 steps, ... up
// to the maximum (as OVS: the first light round does not sleep); a round
// of at least half a burst resets the sleep to 0.
func TestIdleSleepGrowsAndResets(t *testing.T) {
	s := newIdleState(sleepCfg(10*us, 35*us, 100))
	want := []int64{0, 10 * us, 20 * us, 30 * us, 35 * us, 35 * us}
	for i, w := range want {
		act, d := s.next(halfBurst - 1)
		if w == 0 {
			if act != actNone {
				t.Fatalf("round %d: %v %d, want no sleep", i, act, d)
			}
			continue
		}
		if act != actSleep || d != w {
			t.Fatalf("round %d: %v %d ns, want sleep %d ns", i, act, d, w)
		}
	}
	if act, _ := s.next(halfBurst); act != actNone {
		t.Fatalf("a half-full burst: %v, want no sleep", act)
	}
	if act, _ := s.next(1); act != actNone {
		t.Fatalf("first light round after a reset: %v, want no sleep", act)
	}
	if act, d := s.next(0); act != actSleep || d != 10*us {
		t.Fatalf("second light round after a reset: %v %d, want sleep 10µs", act, d)
	}
	if act, _ := s.next(maxBurst); act != actNone {
		t.Fatalf("full burst: %v", act)
	}
}

// TestIdleSleepFallsBackToPoll: after pollAfter empty rounds at the
// maximum the poller polls, keeps polling while nothing arrives, and
// starts from no sleep once frames come; frames at the maximum (even a
// few) restart the count of empty rounds.
func TestIdleSleepFallsBackToPoll(t *testing.T) {
	s := newIdleState(sleepCfg(20*us, 40*us, 3))
	seq := []struct {
		n    int
		act  idleAction
		d    int64
		what string
	}{
		{0, actNone, 0, "ramp 0"},
		{0, actSleep, 20 * us, "ramp 20"},
		{0, actSleep, 40 * us, "at max, empty 1"},
		{0, actSleep, 40 * us, "empty 2"},
		{3, actSleep, 40 * us, "a few frames: count restarts"},
		{0, actSleep, 40 * us, "empty 1"},
		{0, actSleep, 40 * us, "empty 2"},
		{0, actPoll, 0, "empty 3: poll"},
		{0, actPoll, 0, "still idle: poll again"},
		{0, actPoll, 0, "and again"},
		{2, actNone, 0, "traffic back: no sleep first"},
		{2, actSleep, 20 * us, "then grow"},
		{0, actSleep, 40 * us, "at max"},
	}
	for i, c := range seq {
		act, d := s.next(c.n)
		if act != c.act || d != c.d {
			t.Fatalf("round %d (%s): %v %d, want %v %d", i, c.what, act, d, c.act, c.d)
		}
	}
}

// TestIdlePollAndBusy: poll polls exactly when nothing was received; busy
// never waits.
func TestIdlePollAndBusy(t *testing.T) {
	p := newIdleState(idleConfig{mode: idleModePoll})
	b := newIdleState(idleConfig{mode: idleModeBusy})
	for _, n := range []int{0, 1, halfBurst, maxBurst, 0} {
		pa, _ := p.next(n)
		if (pa == actPoll) != (n == 0) || pa == actSleep {
			t.Errorf("poll, %d frames: %v", n, pa)
		}
		if ba, _ := b.next(n); ba != actNone {
			t.Errorf("busy, %d frames: %v", n, ba)
		}
	}
}

// TestKickCoalescing: frames wait for a kick until kickFrames are
// pending or the oldest waited kickDelay; before poll() always; before a
// sleep only when the sleep would pass the delay; after a kick the count
// and the age start again.
func TestKickCoalescing(t *testing.T) {
	s := newIdleState(idleConfig{mode: idleModeSleep, kickFrames: 64, kickDelay: 20 * us})
	if !s.coalescing() || s.pending() {
		t.Fatal("coalescing off or frames pending at start")
	}
	now := int64(1000 * us)
	if s.placed(0, now) || s.pending() {
		t.Fatal("nothing placed counts as pending")
	}
	if s.placed(30, now) {
		t.Fatal("30 frames, fresh: kicked")
	}
	now += 5 * us
	if s.placed(30, now) {
		t.Fatal("60 frames after 5µs: kicked")
	}
	if s.kickDue(actNone, 0, now) || s.kickDue(actSleep, 10*us, now) {
		t.Fatal("kick due before the delay")
	}
	if !s.kickDue(actSleep, 15*us, now) {
		t.Fatal("a sleep reaching the delay must kick first")
	}
	if !s.kickDue(actPoll, 0, now) {
		t.Fatal("poll() must kick first")
	}
	if !s.placed(4, now) {
		t.Fatal("64 frames: not kicked")
	}
	s.kicked()
	if s.pending() || s.kickDue(actPoll, 0, now) {
		t.Fatal("pending after a kick")
	}
	// The age counts from the first frame after the kick.
	now += 100 * us
	if s.placed(1, now) {
		t.Fatal("1 frame, fresh after a kick: kicked")
	}
	if s.placed(1, now+19*us) {
		t.Fatal("19µs: kicked")
	}
	if !s.placed(1, now+20*us) {
		t.Fatal("20µs old: not kicked")
	}
	s.kicked()
	s.placed(1, now)
	if !s.kickDue(actNone, 0, now+20*us) {
		t.Fatal("delay passed while spinning: not due")
	}
}

// TestIdleNoAlloc: the per-round calls allocate nothing.
func TestIdleNoAlloc(t *testing.T) {
	s := newIdleState(idleConfig{mode: idleModeSleep, sleepStep: us, sleepMax: 50 * us, pollAfter: 10, kickFrames: 32, kickDelay: 20 * us})
	n := 0
	if a := testing.AllocsPerRun(1000, func() {
		n = (n + 7) % (maxBurst + 1)
		s.next(n)
		if s.placed(n, int64(n)*us) || s.kickDue(actSleep, 5*us, int64(n)*us) {
			s.kicked()
		}
	}); a != 0 {
		t.Fatalf("%v allocations per round", a)
	}
}

func TestIdleConfig(t *testing.T) {
	base := "bridges:\n  - name: br1\n"
	c, err := ParseConfig([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if st := c.IdleStatus(); st.Policy != IdlePoll || st.KickFrames != 0 || c.idle.mode != idleModePoll {
		t.Errorf("default: %+v", st)
	}
	c, err = ParseConfig([]byte(base + "poller_idle: sleep\npoller_sleep_max: 100us\npoller_sleep_step: 5us\npoller_sleep_idle: 1ms\npoller_kick_frames: 64\npoller_kick_delay: 30us\n"))
	if err != nil {
		t.Fatal(err)
	}
	ic := c.idle
	if ic.mode != idleModeSleep || ic.sleepMax != 100*us || ic.sleepStep != 5*us || ic.pollAfter != 10 || ic.kickFrames != 64 || ic.kickDelay != 30*us {
		t.Errorf("parsed %+v", ic)
	}
	st := c.IdleStatus()
	if st.Policy != IdleSleep || st.SleepMax != "100µs" || st.SleepStep != "5µs" || st.SleepIdle != "1ms" || st.KickFrames != 64 || st.KickDelay != "30µs" {
		t.Errorf("status %+v", st)
	}
	c, err = ParseConfig([]byte(base + "poller_idle: sleep\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ic := c.idle; ic.sleepMax != int64(defaultSleepMax) || ic.sleepStep != int64(defaultSleepStep) || ic.pollAfter != int(defaultSleepIdle/defaultSleepMax) {
		t.Errorf("defaults %+v", ic)
	}
	c, err = ParseConfig([]byte(base + "busy_poll: true\n"))
	if err != nil || c.IdleStatus().Policy != "busy" {
		t.Errorf("busy_poll: %v %+v", err, c.IdleStatus())
	}
	for _, tc := range []struct{ yaml, want string }{
		{"poller_idle: nap\n", `poller_idle: "nap" is not an idle policy; write poll or sleep`},
		{"poller_idle: sleep\npoller_sleep_max: 0s\n", `poller_sleep_max: "0s" is not a duration between 1µs and 10ms`},
		{"poller_idle: sleep\npoller_sleep_max: soon\n", `poller_sleep_max: "soon" is not a duration`},
		{"poller_idle: sleep\npoller_sleep_step: 100us\n", "poller_sleep_step: 100µs is longer than poller_sleep_max (50µs)"},
		{"poller_sleep_max: 100us\n", "poller_idle: poller_sleep_* settings apply to poller_idle: sleep only"},
		{"poller_idle: sleep\nbusy_poll: true\n", "poller_idle: busy_poll spins and sleep sleeps; set one of them"},
		{"poller_kick_frames: -1\n", "poller_kick_frames: -1 is out of range"},
		{"poller_kick_frames: 2000\n", "poller_kick_frames: 2000 is out of range"},
		{"poller_kick_frames: 600\nport_options: {ring_size: 1024}\n", "poller_kick_frames: 600 is more than half of port_options.ring_size (1024); write at most 512"},
		{"poller_kick_delay: 10us\n", "poller_kick_delay: applies only when TX kicks are coalesced"},
		{"poller_kick_frames: 32\npoller_kick_delay: 1h\n", `poller_kick_delay: "1h" is not a duration between 1µs and 10ms`},
	} {
		_, err := ParseConfig([]byte(base + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
