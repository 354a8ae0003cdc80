package flowtable

import (
	"sync/atomic"
	"time"
)

// epoch is the origin of every Clock; time.Since uses the monotonic clock, so
// wall-clock steps do not move table ages.
var epoch = time.Now()

// Clock is a coarse clock in whole seconds for the packet path. Pollers call
// Tick once per batch (one read of the system time); everything else reads Now,
// a single atomic load. Seconds count from process start and begin at 1, so 0
// means "never ticked". The zero Clock is usable after its first Tick; NewClock
// returns one already ticked. A Clock is safe for concurrent use and never goes
// backwards, even when several goroutines tick it.
type Clock struct {
	now atomic.Uint32
}

// NewClock returns a Clock that has already been ticked.
func NewClock() *Clock {
	c := &Clock{}
	c.Tick()
	return c
}

// Tick reads the time once and advances the clock if a new second has begun.
// It writes shared memory only when the second changes. It returns the current
// second.
func (c *Clock) Tick() uint32 {
	return c.tickTo(seconds(time.Since(epoch)))
}

// seconds converts time since epoch to the clock's seconds (1 at epoch).
func seconds(d time.Duration) uint32 {
	return uint32(d/time.Second) + 1
}

// tickTo advances the clock to second s unless it is already there or beyond,
// and returns the clock's second. Tick is tickTo of the time; tests drive it
// directly with chosen seconds.
func (c *Clock) tickTo(s uint32) uint32 {
	for {
		cur := c.now.Load()
		if int32(s-cur) <= 0 {
			return cur
		}
		if c.now.CompareAndSwap(cur, s) {
			return s
		}
	}
}

// Now returns the second of the last Tick.
func (c *Clock) Now() uint32 { return c.now.Load() }
