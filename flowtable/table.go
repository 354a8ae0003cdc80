// Package flowtable is the MAC learning table of xswitch: per bridge (VNI) it
// maps a MAC address to a Dest (an opaque port or tunnel id chosen by the
// switch). One Table serves one bridge, so bridges are isolated by construction:
// a MAC learned in one Table is invisible in every other.
//
// # Concurrency
//
// Many pollers (one goroutine per queue) call Lookup and Learn at the same time.
// The table is an open-addressing hash table with linear probing whose slots are
// two atomic 64-bit words: the key word (MAC, in-use and static flags, a 14-bit
// version) and the value word (Dest and last-seen second). Beside the slots, a
// 32-bit word per slot holds the entry's move history for flap damping (4
// bytes per slot; written inside the slot's seqlock, moved with its entry,
// never read by Lookup). It is allocated once
// in New with room for MaxEntries at a load factor of at most 1/2 and never
// grows; tables of 4 MiB and more ask for transparent huge pages, since a
// random lookup otherwise pays a TLB miss on top of its cache miss.
//
//   - Lookup takes no lock, does not allocate and performs loads only. A writer
//     changing a slot makes the slot's version odd, stores the value, then stores
//     the new key with the next even version (a per-slot seqlock). A reader
//     accepts a slot only if it read the same even key word before and after the
//     value, so it never pairs the MAC of one entry with the Dest of another.
//   - Deletion (Delete, Expire, Flush, eviction) uses backward-shift deletion, so
//     there are no tombstones and probe chains stay short under churn. Because a
//     shift can move an entry behind a concurrent reader, shifts bump a
//     table-wide sequence counter, and a reader that reaches a miss while that
//     counter changed looks again. Retries are bounded: under extreme deletion
//     churn a lookup may give up and report a miss (Stats.LookupGaveUp); the
//     switch then floods that frame, which is always correct for L2.
//   - Learn of a known MAC on the same Dest within the same second only loads.
//     In a later second it updates the last-seen second with one compare-and-swap
//     of the value word (no lock): at most one write per entry per second.
//     Everything that changes a key or a Dest (new MAC, move, delete, expire)
//     takes the table's mutex, which only serializes writers.
//   - Learn refuses without the mutex what it can decide from a snapshot: a
//     move of a static entry (LearnStatic), a move of an entry in flap
//     hold-down (LearnDamped) and a new MAC when the table is full and no
//     entry near the MAC's home slot is idle enough to evict (LearnFull). So a
//     MAC flood into a full table, a spoofer claiming a static MAC or a MAC
//     flapping at line rate costs loads and one counter increment per frame,
//     not a lock. Stats.LearnLocked counts the Learn calls that did lock.
//
// # Time and aging
//
// Times are coarse seconds from a Clock (Tick once per batch). The table
// remembers the latest second it was given (by Learn or Expire). A dynamic
// entry whose last-seen second is MaxAge (default 300 s) or more behind that is
// aged: Lookup and Entries report it absent at once, even before Expire
// physically removes it (Learn on the same Dest revives it). Expire should be
// called periodically from the control path (for example once a second) to free
// the slots. Static entries (AddStatic) never age and are never moved by
// learning; a learning attempt that would move one is refused and counted
// (Stats.StaticConflicts).
//
// # Flap damping
//
// A dynamic entry may move (change Dest) at most FlapMoves times (default 5)
// within a window of FlapWindow (default 5 s) that opens with its first move.
// The next move attempt within the window is refused and starts a hold-down
// of FlapHold (default 10 s): the entry stays on its current Dest and every
// move attempt is refused (LearnDamped, Stats.MovesDamped) until the hold-down
// ends; then the count starts over. Frames whose move was refused are still
// forwarded by the switch; only the table does not follow them. So a MAC
// flapping at line rate (an L2 loop, two hosts with one MAC, a spoofer) costs
// at most FlapMoves+1 locked writes per window plus hold-down instead of one
// per frame, while a real move (a VM migrating, a bond failing over and back)
// takes effect with its first frame. Why these values: 5 is the move count
// of RFC 7432's MAC mobility duplicate detection (N = 5), so a later EVPN
// layer and the learning table call the same thing flapping; a 5 s window
// (instead of the RFC's 180 s, meant for control-plane advertisements) never
// damps a host that moves and moves back, or a spoofer that claims a MAC
// every few seconds (damping cannot tell who is right; static entries protect
// the MACs that matter); a 10 s hold-down bounds a flapping MAC to about one
// table write per second and ends well before neighbour caches (Linux: 15 to
// 45 s reachable time) and TCP give up on a MAC held on the wrong side.
//
// # Limits and eviction policy
//
// A table holds at most MaxEntries (default 8192) entries, static ones
// included; memory is fixed at New, so a MAC flood cannot grow it. When the
// table is full and a new MAC is learned, the table looks at the 16 slots
// starting at the new MAC's home slot and picks the least recently seen dynamic
// entry there. If that entry has been idle for at least EvictIdle (default 60 s,
// at most MaxAge) it is evicted (Stats.Evictions) and the new MAC takes its
// place; otherwise the new MAC is refused (LearnFull, Stats.Full) and frames to
// it are flooded until aging frees room. So hosts that were active within the
// last EvictIdle are never pushed out by a flood, while idle entries make room
// for new hosts before they fully age out. AddStatic may evict any dynamic entry
// in the window, regardless of idleness (configuration wins over learning).
//
// Multicast and broadcast source MACs are never learned (LearnMulticast; not
// counted by the table, the caller counts them per port).
package flowtable

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Dest is where frames to a MAC go. It is opaque to the table: the switch
// encodes local ports and tunnel endpoints in it.
type Dest uint32

// Limits and defaults of Config.
const (
	DefaultMaxEntries = 8192
	DefaultMaxAge     = 300 * time.Second
	DefaultEvictIdle  = 60 * time.Second
	// MaxMaxEntries is the largest MaxEntries (2^24 entries = 512 MiB of slots
	// and 128 MiB of move history).
	MaxMaxEntries = 1 << 24
	// EvictWindow is how many slots from a new MAC's home slot are searched for
	// an eviction victim when the table is full.
	EvictWindow = 16
	// Flap damping defaults (see the package documentation for why).
	DefaultFlapMoves  = 5
	DefaultFlapWindow = 5 * time.Second
	DefaultFlapHold   = 10 * time.Second
	// MaxFlapMoves bounds FlapMoves (the move count has 8 bits).
	MaxFlapMoves = 254
	// MaxFlapTime bounds FlapWindow and FlapHold (the window start is kept
	// modulo 2^24 seconds; differences must stay below 2^23).
	MaxFlapTime = (1<<22 - 1) * time.Second
)

// Config sizes a Table. Zero fields take their defaults.
type Config struct {
	// MaxEntries bounds the entries of the table (static ones included).
	// Default 8192; at most MaxMaxEntries.
	MaxEntries int
	// MaxAge is how long a dynamic entry lives without being seen. Default 300 s;
	// rounded up to whole seconds.
	MaxAge time.Duration
	// EvictIdle is how long an entry must have been idle before a new MAC may
	// evict it from a full table. Default 60 s; values above MaxAge are capped to
	// MaxAge.
	EvictIdle time.Duration
	// FlapMoves is how many moves an entry may make within FlapWindow before
	// further moves are refused for FlapHold. Default 5; at most MaxFlapMoves.
	FlapMoves int
	// FlapWindow is the window of FlapMoves. Default 5 s; rounded up to whole
	// seconds; at most MaxFlapTime.
	FlapWindow time.Duration
	// FlapHold is how long a flapping entry stays where it is. Default 10 s;
	// rounded up to whole seconds; at most MaxFlapTime.
	FlapHold time.Duration
}

// Validate reports a configuration New would have to correct, naming the field.
func (c Config) Validate() error {
	if c.MaxEntries < 0 || c.MaxEntries > MaxMaxEntries {
		return fmt.Errorf("flowtable: max_entries %d out of range: use 1..%d (0 for the default %d)",
			c.MaxEntries, MaxMaxEntries, DefaultMaxEntries)
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("flowtable: max_age %v is negative: use a positive duration (0 for the default %v)", c.MaxAge, DefaultMaxAge)
	}
	if c.MaxAge > 0 && c.MaxAge/time.Second >= 1<<30 {
		return fmt.Errorf("flowtable: max_age %v too large: use less than %d seconds", c.MaxAge, 1<<30)
	}
	if c.EvictIdle < 0 {
		return fmt.Errorf("flowtable: evict_idle %v is negative: use a positive duration (0 for the default %v)", c.EvictIdle, DefaultEvictIdle)
	}
	if c.FlapMoves < 0 || c.FlapMoves > MaxFlapMoves {
		return fmt.Errorf("flowtable: flap_moves %d out of range: use 1..%d (0 for the default %d)", c.FlapMoves, MaxFlapMoves, DefaultFlapMoves)
	}
	if c.FlapWindow < 0 || c.FlapWindow > MaxFlapTime {
		return fmt.Errorf("flowtable: flap_window %v out of range: use up to %v (0 for the default %v)", c.FlapWindow, MaxFlapTime, DefaultFlapWindow)
	}
	if c.FlapHold < 0 || c.FlapHold > MaxFlapTime {
		return fmt.Errorf("flowtable: flap_hold %v out of range: use up to %v (0 for the default %v)", c.FlapHold, MaxFlapTime, DefaultFlapHold)
	}
	return nil
}

// LearnResult says what Learn did.
type LearnResult uint8

// Learn results.
const (
	// LearnUnchanged: known MAC on the same Dest, nothing written (same second, or static).
	LearnUnchanged LearnResult = iota
	// LearnRefreshed: known MAC on the same Dest, last-seen second updated.
	LearnRefreshed
	// LearnAdded: new MAC added (possibly after evicting an idle entry, see Stats.Evictions).
	LearnAdded
	// LearnMoved: the MAC was on another Dest and moved to this one (Stats.Moves).
	LearnMoved
	// LearnStatic: the MAC is static on another Dest; not moved (Stats.StaticConflicts).
	LearnStatic
	// LearnMulticast: multicast or broadcast source, never learned.
	LearnMulticast
	// LearnFull: table full and no idle entry to evict; refused (Stats.Full).
	LearnFull
	// LearnDamped: the MAC is on another Dest and in flap hold-down, or this
	// move would exceed FlapMoves within FlapWindow; not moved
	// (Stats.MovesDamped).
	LearnDamped
)

var learnNames = [...]string{"unchanged", "refreshed", "added", "moved", "static_conflict", "multicast", "full", "move_damped"}

func (r LearnResult) String() string {
	if int(r) < len(learnNames) {
		return learnNames[r]
	}
	return fmt.Sprintf("learn_result_%d", uint8(r))
}

// Entry is one table entry as reported by Entries.
type Entry struct {
	MAC    MAC
	Dest   Dest
	Age    time.Duration // time since last seen; 0 for static entries
	Static bool
}

// Stats are the table's counters since New.
type Stats struct {
	Entries         int    // entries now in the table (aged ones not yet expired included)
	Learned         uint64 // new MACs added by Learn
	Moves           uint64 // MACs moved to another Dest by Learn
	Evictions       uint64 // idle entries evicted to make room for a new MAC
	Expired         uint64 // entries removed by Expire
	Full            uint64 // new MACs refused because the table was full
	StaticConflicts uint64 // Learn attempts that would have moved a static entry
	Flushed         uint64 // entries removed by Flush
	Deleted         uint64 // entries removed by Delete
	MovesDamped     uint64 // moves refused by flap damping (LearnDamped)
	// LearnLocked counts the Learn calls that took the writer mutex (new
	// MACs, moves, starts of a flap hold-down). Refusals (static, damped, full
	// without an evictable entry) and refreshes never lock.
	LearnLocked uint64
	// LookupGaveUp counts lookups that reported a miss because entries kept
	// shifting or a slot stayed mid-write for their whole retry budget
	// (heavy concurrent deletion; the frame is flooded).
	LookupGaveUp uint64
}

// Errors of AddStatic.
var (
	ErrMulticast = errors.New("multicast or broadcast MAC")
	ErrFull      = errors.New("table full")
)

// Key word layout.
const (
	usedBit   = 1 << 48
	staticBit = 1 << 49
	verShift  = 50
	verOne    = 1 << verShift // an odd version means "being written"
	idMask    = macMask | usedBit
	flagMask  = idMask | staticBit

	maxSpins    = 1 << 10 // reads of a slot being rewritten before yielding
	maxAttempts = 16      // probe rounds before a lookup gives up (counted)
)

// slot is one hash table slot. key: MAC | used | static | version<<50.
// val: Dest | last-seen second<<32. Both are only accessed atomically.
type slot struct {
	key atomic.Uint64
	val atomic.Uint64
}

// Table is the MAC table of one bridge. All methods are safe for concurrent use.
type Table struct {
	// Read-only after New.
	slots []slot
	// flap[i] is the move history of the entry in slots[i] (flapState). It
	// is written only under the seqlock of slots[i] or, for the same entry,
	// under t.mu; Lookup never reads it.
	flap       []atomic.Uint32
	mask       uint64
	shift      uint8
	mult       uint64 // random odd multiplier of the multiply-shift hash
	maxAge     int32  // seconds
	evictIdle  int32  // seconds
	flapMoves  uint32
	flapWindow int32 // seconds
	flapHold   int32 // seconds
	max        int64

	_ [64]byte
	// Read by every lookup, written rarely: now once a second, moveSeq when a
	// delete shifts entries.
	now     atomic.Uint32
	moveSeq atomic.Uint64

	_     [64]byte
	mu    sync.Mutex // serializes writers of keys and Dests
	count atomic.Int64

	_                                                          [64]byte
	learned, moves, evictions, expired, full, flushed, deleted atomic.Uint64
	_                                                          [64]byte
	staticConflicts, gaveUp, damped, locked                    atomic.Uint64
}

func secondsCeil(d time.Duration) int32 {
	s := (d + time.Second - 1) / time.Second
	if s < 1 {
		s = 1
	}
	if s >= 1<<30 {
		s = 1<<30 - 1
	}
	return int32(s)
}

// New allocates a table for c.MaxEntries entries. Out-of-range values are
// corrected (0 or negative: default; above MaxMaxEntries: MaxMaxEntries); use
// Config.Validate first to report them instead.
func New(c Config) *Table {
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxEntries > MaxMaxEntries {
		c.MaxEntries = MaxMaxEntries
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.EvictIdle <= 0 {
		c.EvictIdle = DefaultEvictIdle
	}
	if c.EvictIdle > c.MaxAge {
		c.EvictIdle = c.MaxAge
	}
	if c.FlapMoves <= 0 {
		c.FlapMoves = DefaultFlapMoves
	}
	c.FlapMoves = min(c.FlapMoves, MaxFlapMoves)
	if c.FlapWindow <= 0 {
		c.FlapWindow = DefaultFlapWindow
	}
	if c.FlapHold <= 0 {
		c.FlapHold = DefaultFlapHold
	}
	c.FlapWindow, c.FlapHold = min(c.FlapWindow, MaxFlapTime), min(c.FlapHold, MaxFlapTime)
	// At least twice MaxEntries slots (load factor <= 1/2), at least EvictWindow.
	n := max(2*c.MaxEntries, EvictWindow)
	lg := bits.Len(uint(n - 1))
	t := &Table{
		slots:      make([]slot, 1<<lg),
		flap:       make([]atomic.Uint32, 1<<lg),
		mask:       1<<lg - 1,
		shift:      uint8(64 - lg),
		mult:       rand.Uint64() | 1, // per table: MAC sets crafted to collide in one table do not in another
		maxAge:     secondsCeil(c.MaxAge),
		evictIdle:  secondsCeil(c.EvictIdle),
		flapMoves:  uint32(c.FlapMoves),
		flapWindow: secondsCeil(c.FlapWindow),
		flapHold:   secondsCeil(c.FlapHold),
		max:        int64(c.MaxEntries),
	}
	adviseHugePages(t.slots)
	return t
}

// home is the first slot probed for m: multiply-shift on the 48-bit value.
func (t *Table) home(m uint64) uint64 {
	return (m * t.mult) >> t.shift
}

// Cap returns MaxEntries as corrected by New.
func (t *Table) Cap() int { return int(t.max) }

// locate finds the slot holding id (MAC | usedBit) without locking and returns
// its index and a consistent snapshot of its key and value words. Under the
// writer mutex it is exact (no slot is mid-write and nothing shifts). Without
// it, it retries when it meets a slot being rewritten or reaches a miss while
// entries were shifted; after maxAttempts such rounds it reports a miss and
// counts it (Stats.LookupGaveUp): the switch then floods that one frame.
func (t *Table) locate(id uint64) (i, k, v uint64, ok bool) {
	slots := t.slots
	mask := t.mask
	for attempt := 0; attempt < maxAttempts; attempt++ {
		seq := t.moveSeq.Load()
		i = t.home(id & macMask)
		spins := 0
		for n := uint64(0); n <= mask; {
			s := &slots[i&mask]
			k = s.key.Load()
			if k&usedBit == 0 {
				break // empty slot: end of the probe chain
			}
			if k&idMask != id {
				i = (i + 1) & mask
				n++
				continue
			}
			if k&verOne == 0 {
				v = s.val.Load()
				if s.key.Load() == k {
					return i & mask, k, v, true
				}
			}
			// The slot is being rewritten: read it again.
			if spins++; spins > maxSpins {
				break // the writer was descheduled: yield below, then start over
			}
		}
		if spins <= maxSpins && seq&1 == 0 && t.moveSeq.Load() == seq {
			return 0, 0, 0, false
		}
		// Entries were shifted while we probed (the MAC may have moved behind
		// us), or a writer stalls mid-write: look again.
		if spins > maxSpins || attempt >= 2 {
			runtime.Gosched()
		}
	}
	t.gaveUp.Add(1)
	return 0, 0, 0, false
}

// aged reports whether a dynamic entry last seen at seen is aged at now.
func (t *Table) aged(k, v uint64, now uint32) bool {
	return k&staticBit == 0 && int32(now-uint32(v>>32)) >= t.maxAge
}

// Lookup returns the Dest of m. It takes no lock, does not allocate and never
// writes. Entries aged relative to the latest time the table was given count as
// absent.
func (t *Table) Lookup(m MAC) (Dest, bool) {
	id := uint64(m)&macMask | usedBit
	// Fast path, most hits: the entry sits stable in its home slot.
	s := &t.slots[t.home(id&macMask)]
	k := s.key.Load()
	var v uint64
	if k&(idMask|verOne) == id {
		v = s.val.Load()
		if s.key.Load() != k {
			_, k, v, _ = t.locate(id)
		}
	} else {
		var ok bool
		if _, k, v, ok = t.locate(id); !ok {
			return 0, false
		}
	}
	if k&usedBit == 0 || t.aged(k, v, t.now.Load()) {
		return 0, false
	}
	return Dest(v), true
}

// advance moves the table's notion of now forward (never back).
func (t *Table) advance(now uint32) {
	for {
		cur := t.now.Load()
		if int32(now-cur) <= 0 {
			return
		}
		if t.now.CompareAndSwap(cur, now) {
			return
		}
	}
}

// Learn records that source MAC m was seen on d at second now (Clock.Now). A
// known MAC on the same Dest costs loads only within a second and one
// compare-and-swap in a new second. New MACs and moves take the writer mutex,
// except when they are refused: a static MAC on another Dest (LearnStatic), a
// move during flap hold-down (LearnDamped) and a new MAC into a full table with
// no evictable entry (LearnFull) are decided without locking. Learn never
// allocates.
func (t *Table) Learn(m MAC, d Dest, now uint32) LearnResult {
	if m.IsMulticast() {
		return LearnMulticast
	}
	t.advance(now)
	id := uint64(m)&macMask | usedBit
	for try := 0; try < 4; try++ {
		i, k, v, ok := t.locate(id)
		if !ok {
			if t.count.Load() >= t.max && !t.mayEvict(uint64(m), now) {
				t.full.Add(1)
				return LearnFull
			}
			break
		}
		if Dest(v) != d {
			if k&staticBit != 0 {
				t.staticConflicts.Add(1)
				return LearnStatic
			}
			if t.held(i, k, v, now) {
				t.damped.Add(1)
				return LearnDamped
			}
			break // a move: slow path
		}
		if k&staticBit != 0 || int32(now-uint32(v>>32)) <= 0 {
			return LearnUnchanged
		}
		// Only the last-seen second changes; the Dest stays, so a reader sees a
		// consistent pair either way. (If the slot was rekeyed in between to
		// another MAC with exactly this value, we refresh that entry's second
		// instead: harmless.)
		if t.slots[i].val.CompareAndSwap(v, uint64(d)|uint64(now)<<32) {
			return LearnRefreshed
		}
	}
	return t.learnSlow(m, id, d, now)
}

// mayEvict reports, without locking, whether the EvictWindow slots from m's
// home slot hold a dynamic entry idle for at least EvictIdle: only then can a
// new MAC get into a full table, and only then does Learn take the mutex (which
// decides exactly; a slot rewritten during this scan at worst sends one
// frame's MAC to the locked path for nothing, or refuses it as a concurrent
// learner would have).
func (t *Table) mayEvict(m uint64, now uint32) bool {
	i := t.home(m)
	for n := 0; n < EvictWindow; n++ {
		s := &t.slots[i]
		if k := s.key.Load(); k&usedBit != 0 && k&staticBit == 0 &&
			int32(now-uint32(s.val.Load()>>32)) >= t.evictIdle {
			return true
		}
		i = (i + 1) & t.mask
	}
	return false
}

// flapState is an entry's move history: the second its window or hold-down
// started (modulo 2^24) in the low 24 bits and its move count in the high 8;
// a count of flapMoves+1 means "held". Zero is a fresh entry.
type flapState uint32

func (f flapState) start() uint32 { return uint32(f) & (1<<24 - 1) }
func (f flapState) moves() uint32 { return uint32(f) >> 24 }
func newFlapState(start, moves uint32) flapState {
	return flapState(start&(1<<24-1) | moves<<24)
}

// since is how many seconds before now f started. Pollers' clocks may lag one
// another by a second or so: a start slightly after now counts as now. A start
// far "after" now is one more than 2^23 s (97 days) before it, where the
// 24-bit difference wrapped: long ago. (One 2^24 s later it aliases to recent
// again; an entry would have to live 194 days and try to move within one
// FlapHold of that second to notice.)
func (f flapState) since(now uint32) int32 {
	d := int32((now-f.start())<<8) >> 8
	switch {
	case d >= 0:
		return d
	case d >= -4:
		return 0
	}
	return 1 << 23
}

// held reports, without locking, whether the dynamic entry read from slot i
// as key k, value v is in flap hold-down at now. The flap word is trusted only
// if the slot still holds k (same version) after reading it: writers change it
// only inside the slot's seqlock or under the mutex for the same entry.
func (t *Table) held(i, k, v uint64, now uint32) bool {
	f := flapState(t.flap[i].Load())
	if t.slots[i].key.Load() != k {
		return false // rewritten meanwhile: let the locked path decide
	}
	return f.moves() > t.flapMoves && f.since(now) < t.flapHold && !t.aged(k, v, now)
}

// flapStep applies one move attempt at now to the entry (key k, value v, move
// history f): the new history and whether the move may happen (see Flap
// damping in the package documentation). An aged entry is absent for
// forwarding: its "move" is a new host and starts a new history.
func (t *Table) flapStep(k, v uint64, f flapState, now uint32) (flapState, bool) {
	n, age := f.moves(), f.since(now)
	switch {
	case t.aged(k, v, now):
		return newFlapState(now, 1), true
	case n > t.flapMoves && age < t.flapHold:
		return f, false // held
	case n == 0 || n > t.flapMoves || age >= t.flapWindow:
		return newFlapState(now, 1), true // a new window
	case n < t.flapMoves:
		return newFlapState(f.start(), n+1), true
	default:
		return newFlapState(now, t.flapMoves+1), false // one move too many: hold from now
	}
}

func (t *Table) learnSlow(m MAC, id uint64, d Dest, now uint32) LearnResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.locked.Add(1)
	i, k, v, ok := t.locate(id)
	val := uint64(d) | uint64(now)<<32
	if ok {
		if k&staticBit != 0 {
			if Dest(v) == d {
				return LearnUnchanged
			}
			t.staticConflicts.Add(1)
			return LearnStatic
		}
		if Dest(v) == d {
			if int32(now-uint32(v>>32)) <= 0 {
				return LearnUnchanged
			}
			t.slots[i].val.CompareAndSwap(v, val)
			return LearnRefreshed
		}
		f := flapState(t.flap[i].Load())
		nf, allowed := t.flapStep(k, v, f, now)
		if !allowed {
			if nf != f {
				// Start of the hold-down. Same entry, mutex held: no need to
				// rewrite the slot (lock-free readers accept either value).
				t.flap[i].Store(uint32(nf))
			}
			t.damped.Add(1)
			return LearnDamped
		}
		t.write(i, k&flagMask, val, nf)
		t.moves.Add(1)
		return LearnMoved
	}
	if t.count.Load() >= t.max {
		victim, found := t.victim(uint64(m), now, t.evictIdle)
		if !found {
			t.full.Add(1)
			return LearnFull
		}
		t.deleteAt(victim)
		t.evictions.Add(1)
	}
	t.insert(id, val)
	t.learned.Add(1)
	return LearnAdded
}

// write rewrites slot i (and its flap word) under the seqlock protocol.
// Caller holds t.mu.
func (t *Table) write(i, keyBits, val uint64, f flapState) {
	s := &t.slots[i]
	k := s.key.Load()
	s.key.Store(k + verOne) // odd version: readers of this slot wait
	s.val.Store(val)
	// Most writes leave the flap word as it is (0 for entries that never
	// moved): a store on amd64 is a full barrier, so skip it then.
	if fl := &t.flap[i]; fl.Load() != uint32(f) {
		fl.Store(uint32(f))
	}
	s.key.Store((k+2*verOne)&^(verOne-1) | keyBits)
}

// insert puts an absent id into the first free slot of its chain. Caller holds t.mu.
func (t *Table) insert(keyBits, val uint64) {
	i := t.home(keyBits & macMask)
	for t.slots[i].key.Load()&usedBit != 0 {
		i = (i + 1) & t.mask
	}
	t.write(i, keyBits, val, 0)
	t.count.Add(1)
}

// victim picks the least recently seen dynamic entry idle for at least minIdle
// seconds among the EvictWindow slots from m's home slot. Caller holds t.mu.
func (t *Table) victim(m uint64, now uint32, minIdle int32) (uint64, bool) {
	i := t.home(m)
	best, bestAge, found := uint64(0), int32(0), false
	for n := 0; n < EvictWindow; n++ {
		s := &t.slots[i]
		if k := s.key.Load(); k&usedBit != 0 && k&staticBit == 0 {
			age := int32(now - uint32(s.val.Load()>>32))
			if age >= minIdle && (!found || age > bestAge) {
				best, bestAge, found = i, age, true
			}
		}
		i = (i + 1) & t.mask
	}
	return best, found
}

// deleteAt empties slot i with backward-shift deletion: later entries of the
// chain that may live closer to their home slot move back, so no tombstones are
// needed. Caller holds t.mu.
func (t *Table) deleteAt(i uint64) {
	mask := t.mask
	hole := i
	shifting := false
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		k := t.slots[j].key.Load()
		if k&usedBit == 0 {
			break
		}
		h := t.home(k & macMask)
		if (j-h)&mask >= (j-hole)&mask {
			if !shifting {
				t.moveSeq.Add(1) // odd: lookups that miss look again
				shifting = true
			}
			t.write(hole, k&flagMask, t.slots[j].val.Load(), flapState(t.flap[j].Load()))
			hole = j
		}
	}
	t.write(hole, 0, 0, 0)
	if shifting {
		t.moveSeq.Add(1)
	}
	t.count.Add(-1)
}

// AddStatic adds or replaces a static entry m → d, which never ages and is never
// moved by learning. A dynamic entry for m becomes static. If the table is full,
// the least recently seen dynamic entry in m's window is evicted; ErrFull if
// there is none.
func (t *Table) AddStatic(m MAC, d Dest) error {
	if m.IsMulticast() {
		return fmt.Errorf("flowtable: static entry %s: %w", m, ErrMulticast)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now.Load()
	id := uint64(m)&macMask | usedBit
	val := uint64(d) | uint64(now)<<32
	if i, _, _, ok := t.locate(id); ok {
		t.write(i, id|staticBit, val, 0)
		return nil
	}
	if t.count.Load() >= t.max {
		victim, found := t.victim(uint64(m), now, -1<<31)
		if !found {
			return fmt.Errorf("flowtable: static entry %s: %w (%d entries, no dynamic entry to evict near it)", m, ErrFull, t.max)
		}
		t.deleteAt(victim)
		t.evictions.Add(1)
	}
	t.insert(id|staticBit, val)
	return nil
}

// RemoveStatic removes m if it is a static entry and reports whether it was:
// a dynamic entry for m stays (configuration removing its own entry must not
// forget what learning found meanwhile).
func (t *Table) RemoveStatic(m MAC) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, k, _, ok := t.locate(uint64(m)&macMask | usedBit)
	if !ok || k&staticBit == 0 {
		return false
	}
	t.deleteAt(i)
	t.deleted.Add(1)
	return true
}

// Delete removes m (static or dynamic) and reports whether it was present.
func (t *Table) Delete(m MAC) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, _, _, ok := t.locate(uint64(m)&macMask | usedBit)
	if ok {
		t.deleteAt(i)
		t.deleted.Add(1)
	}
	return ok
}

// removeIf deletes every entry for which drop returns true and returns how
// many. Caller holds t.mu.
func (t *Table) removeIf(drop func(k, v uint64) bool) int {
	n := 0
	for i := uint64(0); i <= t.mask; {
		s := &t.slots[i]
		k := s.key.Load()
		if k&usedBit != 0 && drop(k, s.val.Load()) {
			// An entry from later in the chain may shift into i: look at i again.
			// Entries shifted into later slots are visited later; entries that
			// wrap into already visited slots were visited (and kept) before.
			t.deleteAt(i)
			n++
			continue
		}
		i++
	}
	return n
}

// Expire removes the dynamic entries aged at now (last seen MaxAge or more
// before now) and returns how many. Call it periodically from the control path.
// It scans every slot under the writer mutex (about 0.5 ms for a 64k-entry
// table here): lookups and known-MAC learning go on meanwhile, new MACs and
// moves wait.
func (t *Table) Expire(now uint32) int {
	t.advance(now)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.removeIf(func(k, v uint64) bool { return t.aged(k, v, now) })
	t.expired.Add(uint64(n))
	return n
}

// Flush removes every entry on d, static ones included (the port or tunnel
// is gone, and its Dest value may be reused), and returns how many.
func (t *Table) Flush(d Dest) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.removeIf(func(_, v uint64) bool { return Dest(v) == d })
	t.flushed.Add(uint64(n))
	return n
}

// Entries returns the live entries at now (aged ones excluded), sorted by MAC.
func (t *Table) Entries(now uint32) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, t.count.Load())
	for i := range t.slots {
		s := &t.slots[i]
		k := s.key.Load()
		if k&usedBit == 0 {
			continue
		}
		v := s.val.Load()
		if t.aged(k, v, now) {
			continue
		}
		age := max(int32(now-uint32(v>>32)), 0)
		if k&staticBit != 0 {
			age = 0
		}
		out = append(out, Entry{
			MAC:    MAC(k & macMask),
			Dest:   Dest(v),
			Age:    time.Duration(age) * time.Second,
			Static: k&staticBit != 0,
		})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		switch {
		case a.MAC < b.MAC:
			return -1
		case a.MAC > b.MAC:
			return 1
		}
		return 0
	})
	return out
}

// Len returns the number of entries in the table (aged ones not yet expired included).
func (t *Table) Len() int { return int(t.count.Load()) }

// Stats returns the counters.
func (t *Table) Stats() Stats {
	return Stats{
		Entries:         int(t.count.Load()),
		Learned:         t.learned.Load(),
		Moves:           t.moves.Load(),
		Evictions:       t.evictions.Load(),
		Expired:         t.expired.Load(),
		Full:            t.full.Load(),
		StaticConflicts: t.staticConflicts.Load(),
		Flushed:         t.flushed.Load(),
		Deleted:         t.deleted.Load(),
		MovesDamped:     t.damped.Load(),
		LearnLocked:     t.locked.Load(),
		LookupGaveUp:    t.gaveUp.Load(),
	}
}
