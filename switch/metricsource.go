package vswitch

// What the metrics package reads beyond Stats and Status: per-socket
// AF_XDP counters and the names of every drop reason (so that each
// reason's counter exists from the start, at 0, and rates need no first
// increment to appear).

// DropReasons are the names of every drop reason, as Stats names them.
func DropReasons() []string {
	return append([]string(nil), dropNames[1:]...)
}

// SocketStats are the counters of one AF_XDP socket (one queue of a port):
// the kernel's XDP_STATISTICS and the socket's own. Stats sums them per
// port (PortStats.Kernel.XSK); metrics show them per socket, so that one
// starved queue stands out.
type SocketStats struct {
	Port   string   `json:"port"`
	Bridge string   `json:"bridge,omitempty"`
	Kind   string   `json:"kind"`
	Queue  int      `json:"queue"`
	XSK    XSKStats `json:"xsk"` // Sockets is 1
	Error  string   `json:"error,omitempty"`
}

// SocketStats reads every AF_XDP socket's counters, in port order, then
// queue order.
func (s *Switch) SocketStats() []SocketStats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []SocketStats
	for _, p := range livePorts(s.cur()) {
		xp := s.dp.xports[p.id]
		if xp == nil {
			continue
		}
		for _, sock := range xp.Sockets() {
			st := SocketStats{Port: p.name, Kind: p.kind.String(), Queue: sock.Queue()}
			if p.br != nil {
				st.Bridge = p.br.name
			}
			ks, err := sock.Stats()
			if err != nil {
				st.Error = err.Error()
			} else {
				st.XSK = XSKStats{Sockets: 1, RxDropped: ks.RxDropped, RxRingFull: ks.RxRingFull, RxFillRingEmpty: ks.RxFillRingEmpty,
					RxInvalidDescs: ks.RxInvalidDescs, TxInvalidDescs: ks.TxInvalidDescs, TxRingEmpty: ks.TxRingEmpty,
					RingStats: ks.RingStats, RxPackets: ks.RxPackets, TxPackets: ks.TxPackets, KickErrors: ks.KickErrors}
			}
			out = append(out, st)
		}
	}
	return out
}
