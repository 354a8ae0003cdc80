package flowtable

// Prediction is what Learn would do with a MAC now (Predict).
type Prediction struct {
	Result LearnResult
	// Prev is the MAC's Dest in the table (every result but Added, Full and
	// Multicast); Static says that entry is static, Aged that it is past
	// MaxAge (absent for forwarding, not yet expired).
	Prev   Dest
	Static bool
	Aged   bool
}

// Predict reports what Learn(m, d, now) would return, without writing the
// table, its move history or its counters: `xswitch ctl trace` asks it in
// place of learning. It takes no lock; a concurrent writer may make Learn
// decide otherwise a moment later (as it would for another frame).
func (t *Table) Predict(m MAC, d Dest, now uint32) Prediction {
	if m.IsMulticast() {
		return Prediction{Result: LearnMulticast}
	}
	id := uint64(m)&macMask | usedBit
	i, k, v, ok := t.locate(id)
	if !ok {
		if t.count.Load() >= t.max && !t.mayEvict(uint64(m), now) {
			return Prediction{Result: LearnFull}
		}
		return Prediction{Result: LearnAdded}
	}
	p := Prediction{Prev: Dest(v), Static: k&staticBit != 0, Aged: t.aged(k, v, now)}
	switch {
	case Dest(v) == d && (p.Static || int32(now-uint32(v>>32)) <= 0):
		p.Result = LearnUnchanged
	case Dest(v) == d:
		p.Result = LearnRefreshed
	case p.Static:
		p.Result = LearnStatic
	default:
		if _, allowed := t.flapStep(k, v, flapState(t.flap[i].Load()), now); !allowed {
			p.Result = LearnDamped
		} else {
			p.Result = LearnMoved
		}
	}
	return p
}
