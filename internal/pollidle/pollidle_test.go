package pollidle

import (
	"testing"
	"time"
)

const us = int64(time.Microsecond)

// halfBurst and maxBurst are xswitch's (64-frame bursts).
const (
	maxBurst  = 64
	halfBurst = maxBurst / 2
)

func sleepCfg(step, maxSleep int64, pollAfter int) Config {
	return Config{Mode: Sleep, HalfBurst: halfBurst, SleepStep: step, SleepMax: maxSleep, PollAfter: pollAfter}
}

// TestIdleSleepGrowsAndResets: light rounds sleep 0, step, 2 steps, ... up
// to the maximum (as OVS: the first light round does not sleep); a round
// of at least half a burst resets the sleep to 0.
func TestIdleSleepGrowsAndResets(t *testing.T) {
	s := New(sleepCfg(10*us, 35*us, 100))
	want := []int64{0, 10 * us, 20 * us, 30 * us, 35 * us, 35 * us}
	for i, w := range want {
		act, d := s.Next(halfBurst - 1)
		if w == 0 {
			if act != None {
				t.Fatalf("round %d: %v %d, want no sleep", i, act, d)
			}
			continue
		}
		if act != SleepNs || d != w {
			t.Fatalf("round %d: %v %d ns, want sleep %d ns", i, act, d, w)
		}
	}
	if act, _ := s.Next(halfBurst); act != None {
		t.Fatalf("a half-full burst: %v, want no sleep", act)
	}
	if act, _ := s.Next(1); act != None {
		t.Fatalf("first light round after a reset: %v, want no sleep", act)
	}
	if act, d := s.Next(0); act != SleepNs || d != 10*us {
		t.Fatalf("second light round after a reset: %v %d, want sleep 10µs", act, d)
	}
	if act, _ := s.Next(maxBurst); act != None {
		t.Fatalf("full burst: %v", act)
	}
}

// TestIdleSleepFallsBackToPoll: after pollAfter empty rounds at the
// maximum the poller polls, keeps polling while nothing arrives, and
// starts from no sleep once frames come; frames at the maximum (even a
// few) restart the count of empty rounds.
func TestIdleSleepFallsBackToPoll(t *testing.T) {
	s := New(sleepCfg(20*us, 40*us, 3))
	seq := []struct {
		n    int
		act  Action
		d    int64
		what string
	}{
		{0, None, 0, "ramp 0"},
		{0, SleepNs, 20 * us, "ramp 20"},
		{0, SleepNs, 40 * us, "at max, empty 1"},
		{0, SleepNs, 40 * us, "empty 2"},
		{3, SleepNs, 40 * us, "a few frames: count restarts"},
		{0, SleepNs, 40 * us, "empty 1"},
		{0, SleepNs, 40 * us, "empty 2"},
		{0, PollRx, 0, "empty 3: poll"},
		{0, PollRx, 0, "still idle: poll again"},
		{0, PollRx, 0, "and again"},
		{2, None, 0, "traffic back: no sleep first"},
		{2, SleepNs, 20 * us, "then grow"},
		{0, SleepNs, 40 * us, "at max"},
	}
	for i, c := range seq {
		act, d := s.Next(c.n)
		if act != c.act || d != c.d {
			t.Fatalf("round %d (%s): %v %d, want %v %d", i, c.what, act, d, c.act, c.d)
		}
	}
}

// TestIdlePollAndBusy: poll polls exactly when nothing was received; busy
// never waits.
func TestIdlePollAndBusy(t *testing.T) {
	p := New(Config{Mode: Poll})
	b := New(Config{Mode: Busy})
	for _, n := range []int{0, 1, halfBurst, maxBurst, 0} {
		pa, _ := p.Next(n)
		if (pa == PollRx) != (n == 0) || pa == SleepNs {
			t.Errorf("poll, %d frames: %v", n, pa)
		}
		if ba, _ := b.Next(n); ba != None {
			t.Errorf("busy, %d frames: %v", n, ba)
		}
	}
}

// TestKickCoalescing: frames wait for a kick until kickFrames are
// pending or the oldest waited kickDelay; before poll() always; before a
// sleep only when the sleep would pass the delay; after a kick the count
// and the age start again.
func TestKickCoalescing(t *testing.T) {
	s := New(Config{Mode: Sleep, HalfBurst: halfBurst, KickFrames: 64, KickDelay: 20 * us})
	if !s.Coalescing() || s.Pending() {
		t.Fatal("coalescing off or frames pending at start")
	}
	now := int64(1000 * us)
	if s.Placed(0, now) || s.Pending() {
		t.Fatal("nothing placed counts as pending")
	}
	if s.Placed(30, now) {
		t.Fatal("30 frames, fresh: kicked")
	}
	now += 5 * us
	if s.Placed(30, now) {
		t.Fatal("60 frames after 5µs: kicked")
	}
	if s.KickDue(None, 0, now) || s.KickDue(SleepNs, 10*us, now) {
		t.Fatal("kick due before the delay")
	}
	if !s.KickDue(SleepNs, 15*us, now) {
		t.Fatal("a sleep reaching the delay must kick first")
	}
	if !s.KickDue(PollRx, 0, now) {
		t.Fatal("poll() must kick first")
	}
	if !s.Placed(4, now) {
		t.Fatal("64 frames: not kicked")
	}
	s.Kicked()
	if s.Pending() || s.KickDue(PollRx, 0, now) {
		t.Fatal("pending after a kick")
	}
	// The age counts from the first frame after the kick.
	now += 100 * us
	if s.Placed(1, now) {
		t.Fatal("1 frame, fresh after a kick: kicked")
	}
	if s.Placed(1, now+19*us) {
		t.Fatal("19µs: kicked")
	}
	if !s.Placed(1, now+20*us) {
		t.Fatal("20µs old: not kicked")
	}
	s.Kicked()
	s.Placed(1, now)
	if !s.KickDue(None, 0, now+20*us) {
		t.Fatal("delay passed while spinning: not due")
	}
}

// TestIdleNoAlloc: the per-round calls allocate nothing.
func TestIdleNoAlloc(t *testing.T) {
	s := New(Config{Mode: Sleep, HalfBurst: halfBurst, SleepStep: us, SleepMax: 50 * us, PollAfter: 10, KickFrames: 32, KickDelay: 20 * us})
	n := 0
	if a := testing.AllocsPerRun(1000, func() {
		n = (n + 7) % (maxBurst + 1)
		s.Next(n)
		if s.Placed(n, int64(n)*us) || s.KickDue(SleepNs, 5*us, int64(n)*us) {
			s.Kicked()
		}
	}); a != 0 {
		t.Fatalf("%v allocations per round", a)
	}
}
