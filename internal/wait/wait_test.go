package wait

import (
	"runtime"
	"testing"
	"time"
)

// TestUntil: true as soon as the condition holds; false once the timeout
// has passed, after a last check.
func TestUntil(t *testing.T) {
	calls := 0
	if !Until(time.Second, func() bool { calls++; return calls == 3 }) || calls != 3 {
		t.Errorf("Until returned after %d calls, want true at the 3rd", calls)
	}
	calls = 0
	start := time.Now()
	if Until(50*time.Millisecond, func() bool { calls++; return false }) {
		t.Error("Until reported true for a condition that never held")
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Errorf("Until gave up after %v, before the 50ms timeout", el)
	}
	if calls < 2 {
		t.Errorf("%d calls in 50ms, want at least the first and the one after the deadline", calls)
	}
	calls = 0
	if !Until(0, func() bool { calls++; return true }) || calls != 1 {
		t.Errorf("a zero timeout must still check once: %d calls", calls)
	}
}

// TestForFails: For fails the test (here a recorder) when the condition
// never holds.
func TestForFails(t *testing.T) {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		For(r, 10*time.Millisecond, "nothing", func() bool { return false })
	}()
	<-done
	if !r.failed {
		t.Error("For did not fail on a condition that never held")
	}
}

// recorder catches Fatalf (which ends the goroutine like the real one).
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(string, ...any) {
	r.failed = true
	runtime.Goexit()
}
