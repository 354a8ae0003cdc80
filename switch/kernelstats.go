package vswitch

import (
	"xswitch/xsk"
)

// Frames the kernel lost before xswitch saw them, or after it let them go,
// are counted by the kernel, not by the pollers: kernelStats puts those
// counters next to the switch's own in `ctl stats`, so that every lost frame
// shows in one place.

// KernelPortStats are the kernel's counters of one port.
type KernelPortStats struct {
	// Device is the port's network device (netlink link statistics): for
	// an internal port, TxDropped counts frames the host sent that the
	// kernel could not queue to xswitch (the TAP queue was full).
	Device *DeviceStats `json:"device,omitempty"`
	// XSK sums the AF_XDP sockets' XDP_STATISTICS over the port's queues.
	XSK *XSKStats `json:"xsk,omitempty"`
	// Steer are the XDP steering program's counters.
	Steer *SteerStats `json:"steer,omitempty"`
	// Errors are counters that could not be read.
	Errors []string `json:"errors,omitempty"`
}

// DeviceStats are a device's kernel counters.
type DeviceStats struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
	RxErrors  uint64 `json:"rx_errors"`
	TxErrors  uint64 `json:"tx_errors"`
	RxMissed  uint64 `json:"rx_missed"`
}

// XSKStats are a port's AF_XDP socket counters, summed over its queues.
type XSKStats struct {
	Sockets int `json:"sockets"`
	// Kernel (XDP_STATISTICS). RxDropped: no fill ring entry (the pollers
	// fell behind) or frame too big; RxRingFull: the RX ring was full.
	RxDropped       uint64 `json:"rx_dropped"`
	RxRingFull      uint64 `json:"rx_ring_full"`
	RxFillRingEmpty uint64 `json:"rx_fill_ring_empty"`
	RxInvalidDescs  uint64 `json:"rx_invalid_descs"`
	TxInvalidDescs  uint64 `json:"tx_invalid_descs"`
	TxRingEmpty     uint64 `json:"tx_ring_empty"`
	// RingStats is false on kernels before 5.9: RxRingFull,
	// RxFillRingEmpty and TxRingEmpty are then not reported (and RX-ring-
	// full drops are in RxDropped).
	RingStats bool `json:"ring_stats"`
	// Ours: descriptors taken from the RX ring and put on the TX ring.
	RxPackets  uint64 `json:"rx_packets"`
	TxPackets  uint64 `json:"tx_packets"`
	KickErrors uint64 `json:"kick_errors"`
}

// SteerStats are the steering program's counters: frames redirected to a
// socket, passed to the kernel (not for the switch, or NoSocket), and
// meant for the switch but arriving on a queue without a socket.
type SteerStats struct {
	Redirected uint64 `json:"redirected"`
	Passed     uint64 `json:"passed"`
	NoSocket   uint64 `json:"no_socket"`
}

// addKernelStats fills in the kernel's counters of every port (st.Ports in
// livePorts order) and the UMEM's lost frames.
func (s *Switch) addKernelStats(st *Stats) {
	if s.dp.umem != nil {
		st.UMEMLostFrames = s.dp.umem.LostFrames()
	}
	for i, p := range livePorts(s.cur()) {
		if i >= len(st.Ports) {
			return
		}
		var k *KernelPortStats
		if xp := s.dp.xports[p.id]; xp != nil {
			k = xportKernelStats(xp)
		} else if t := s.tapOf(p); t != nil {
			k = &KernelPortStats{}
			if ds, err := t.stats(); err != nil {
				k.Errors = append(k.Errors, err.Error())
			} else {
				k.Device = deviceStats(ds)
			}
		}
		st.Ports[i].Kernel = k
	}
}

func (s *Switch) tapOf(p *port) *tapDev {
	if pr := s.ports[p.name]; p.kind == kindInternal && pr != nil {
		return pr.tap
	}
	return nil
}

// xportKernelStats reads an AF_XDP port's device, socket and program
// counters; what cannot be read is named in Errors.
func xportKernelStats(xp *xsk.Port) *KernelPortStats {
	k := &KernelPortStats{}
	if ds, err := xp.DeviceStats(); err != nil {
		k.Errors = append(k.Errors, err.Error())
	} else {
		k.Device = deviceStats(ds)
	}
	x := &XSKStats{RingStats: true}
	for _, sock := range xp.Sockets() {
		ss, err := sock.Stats()
		if err != nil {
			k.Errors = append(k.Errors, err.Error())
			continue
		}
		x.Sockets++
		x.RxDropped += ss.RxDropped
		x.RxRingFull += ss.RxRingFull
		x.RxFillRingEmpty += ss.RxFillRingEmpty
		x.RxInvalidDescs += ss.RxInvalidDescs
		x.TxInvalidDescs += ss.TxInvalidDescs
		x.TxRingEmpty += ss.TxRingEmpty
		x.RingStats = x.RingStats && ss.RingStats
		x.RxPackets += ss.RxPackets
		x.TxPackets += ss.TxPackets
		x.KickErrors += ss.KickErrors
	}
	if x.Sockets > 0 {
		k.XSK = x
	}
	if sc, err := xp.Steering().Counters(); err != nil {
		k.Errors = append(k.Errors, err.Error())
	} else {
		k.Steer = &SteerStats{Redirected: sc.Redirected, Passed: sc.Passed, NoSocket: sc.NoSocket}
	}
	return k
}

func deviceStats(d xsk.DeviceStats) *DeviceStats {
	return &DeviceStats{RxPackets: d.RxPackets, TxPackets: d.TxPackets, RxDropped: d.RxDropped, TxDropped: d.TxDropped,
		RxErrors: d.RxErrors, TxErrors: d.TxErrors, RxMissed: d.RxMissed}
}
