package xsk

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestStatsShortStruct: a kernel before 5.9 writes only the first three
// fields of struct xdp_statistics; the ring counters are then reported as
// missing (RingStats false), not as zeros read from our side of the buffer,
// and a reply shorter than the old struct is an error.
func TestStatsShortStruct(t *testing.T) {
	ks := unix.XDPStatistics{Rx_dropped: 1, Rx_invalid_descs: 2, Tx_invalid_descs: 3,
		Rx_ring_full: 4, Rx_fill_ring_empty_descs: 5, Tx_ring_empty_descs: 6}
	var st Stats
	if err := st.setKernel(&ks, xdpStatisticsV1); err != nil {
		t.Fatal(err)
	}
	if st.RingStats || st.RxDropped != 1 || st.RxInvalidDescs != 2 || st.TxInvalidDescs != 3 || st.RxRingFull+st.RxFillRingEmpty+st.TxRingEmpty != 0 {
		t.Errorf("old struct: %+v, want the first three fields only and RingStats false", st)
	}
	st = Stats{}
	if err := st.setKernel(&ks, unsafe.Sizeof(ks)); err != nil {
		t.Fatal(err)
	}
	if !st.RingStats || st.RxRingFull != 4 || st.RxFillRingEmpty != 5 || st.TxRingEmpty != 6 {
		t.Errorf("full struct: %+v, want every field and RingStats true", st)
	}
	if err := (&Stats{}).setKernel(&ks, 16); err == nil {
		t.Errorf("a 16-byte reply accepted")
	}
}
