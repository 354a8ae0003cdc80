package xsk

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestTxIdleFinishesStalledTransmit: a copy-mode transmit whose kick could
// not move (the completion ring full of completions nobody read yet) leaves
// its descriptors in the TX ring. Completing alone never sends them: the
// kernel transmits only from a syscall. The idle path's TxIdle completes
// and kicks, and every frame leaves, byte for byte, without a new
// Transmit.
func TestTxIdleFinishesStalledTransmit(t *testing.T) {
	for _, wakeup := range []bool{true, false} {
		t.Run(fmt.Sprintf("need_wakeup=%v", wakeup), func(t *testing.T) {
			sn := newSockNet(t, 1, UmemConfig{NumFrames: 1024})
			p := sn.mustOpen(PortConfig{RingSize: 64, NeedWakeup: wakeup})
			s := p.Sockets()[0]
			peer := openRaw(t, sn.peer, "p0")
			c := sn.u.NewCache()
			sent := make(map[uint32][]byte)
			var frames [][]byte
			for seq := uint32(0); seq < 128; seq++ {
				f := testFrame(sn.pmac, sn.xmac, 0, seq, 60+int(seq))
				sent[seq] = f
				frames = append(frames, f)
			}
			descs := txFrames(sn.u, c, frames, 0)
			done := make(chan map[uint32][]byte)
			go func() { done <- peer.collect(len(sent), 2*time.Second) }()

			// 64 go out and fill the 64-entry completion ring; the next
			// 64 find no completion entry to reserve and stay.
			if n := s.Transmit(descs[:64]); n != 64 {
				t.Fatalf("first Transmit placed %d of 64", n)
			}
			if n := s.Transmit(descs[64:]); n != 64 {
				t.Fatalf("second Transmit placed %d of 64 (the kernel should have taken the first 64)", n)
			}
			waiting := func() uint32 { return s.tx.local - atomic.LoadUint32(s.tx.consumer) }
			if w := waiting(); w == 0 {
				t.Fatalf("no descriptor waits in the TX ring: the completion ring did not stall the kernel (stats %+v)", mustStats(t, s))
			}
			// The old idle path: completing only. The ring keeps its
			// descriptors however long we wait.
			deadline := time.Now().Add(200 * time.Millisecond)
			for time.Now().Before(deadline) {
				s.Complete(c)
				time.Sleep(5 * time.Millisecond)
			}
			w := waiting()
			if w == 0 {
				t.Fatalf("the stalled descriptors left without a kick: the test shows nothing")
			}
			t.Logf("%d descriptors wait after completing alone; completed %d", w, s.completed.Load())

			// The idle path as the switch runs it.
			deadline = time.Now().Add(5 * time.Second)
			for s.txPackets.Load() != s.completed.Load() {
				s.TxIdle(c)
				if time.Now().After(deadline) {
					t.Fatalf("TxIdle: %d descriptors still waiting, %d not completed after 5s (stats %+v)",
						waiting(), s.txPackets.Load()-s.completed.Load(), mustStats(t, s))
				}
				time.Sleep(time.Millisecond)
			}
			checkFrames(t, "TX", <-done, sent)
			st := mustStats(t, s)
			if st.TxPackets != 128 || st.Completed != 128 || st.KickErrors != 0 {
				t.Errorf("stats %+v: want TxPackets = Completed = 128, no kick errors", st)
			}
			c.Flush()
			sn.closeAll()
		})
	}
}

func mustStats(t testing.TB, s *Socket) Stats {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}
