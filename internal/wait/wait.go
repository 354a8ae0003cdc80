// Package wait polls for a condition with a deadline. Tests use it instead
// of a fixed sleep before an assertion: they wait for the event that makes
// the assertion meaningful (a counter reached, a frame written, a state
// seen), so they are as fast as the machine allows and fail with a message
// that names what never happened rather than flaking on a slow machine.
package wait

import (
	"testing"
	"time"
)

// Poll intervals: the first checks come quickly (most conditions hold
// almost at once), later ones back off so that a long wait does not keep a
// CPU busy.
const (
	firstInterval = 5 * time.Millisecond
	maxInterval   = 100 * time.Millisecond
)

// Until calls cond until it returns true or timeout has passed, and reports
// whether it returned true. cond is always called at least once, and once
// more after the deadline, so a condition that became true while the
// caller was descheduled still counts.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	interval := firstInterval
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(interval, left))
		interval = min(2*interval, maxInterval)
	}
}

// For waits like Until and fails t, naming what did not happen, when cond
// is still false after timeout.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}
