package xsk

import "golang.org/x/sys/unix"

// TEMP until the mbuf branch merges.
const (
	OptContinued = unix.XDP_PKT_CONTD
	MaxFrags     = 18
)

func (u *Umem) MultiBuffer() bool { return false }
