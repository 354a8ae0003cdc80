// Package metrics exposes the switch's counters to Prometheus. A Collector
// reads the control path's snapshots (Stats, Status, SocketStats,
// BatchHistograms) at scrape time and turns them into constant metrics: the
// packet path keeps its own counters and does nothing for Prometheus.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	vswitch "xswitch/switch"
)

// Source is what a Collector reads at each scrape; *vswitch.Switch is one.
type Source interface {
	Stats() vswitch.Stats
	Status() vswitch.Status
	SocketStats() []vswitch.SocketStats
	BatchHistograms() []vswitch.BatchHistogram
}

// Collector is a prometheus.Collector of one switch.
type Collector struct {
	src               Source
	version, revision string
	reasons           []string
}

// NewCollector returns a collector of src; version and revision label
// xswitch_build_info.
func NewCollector(src Source, version, revision string) *Collector {
	return &Collector{src: src, version: version, revision: revision, reasons: vswitch.DropReasons()}
}

var (
	portLabels   = []string{"bridge", "port", "kind"}
	tunnelLabels = []string{"bridge", "remote", "vni"}
	socketLabels = []string{"bridge", "port", "kind", "queue"}
	bridgeLabels = []string{"bridge", "vni"}
)

// allDescs collects every Desc that newDesc makes, for Describe.
var allDescs []*prometheus.Desc

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("xswitch_"+name, help, labels, nil)
	allDescs = append(allDescs, d)
	return d
}

func with(labels []string, more ...string) []string {
	return append(append([]string(nil), labels...), more...)
}

var (
	upDesc        = newDesc("up", "1: the switch answered this scrape.")
	buildInfoDesc = newDesc("build_info", "Always 1; the labels say which xswitch runs.", "version", "revision")

	portRxPackets = newDesc("port_rx_packets_total", "Frames the switch received on the port.", portLabels...)
	portRxBytes   = newDesc("port_rx_bytes_total", "Bytes of the frames the switch received on the port.", portLabels...)
	portTxPackets = newDesc("port_tx_packets_total", "Frames the switch sent on the port.", portLabels...)
	portTxBytes   = newDesc("port_tx_bytes_total", "Bytes of the frames the switch sent on the port.", portLabels...)
	portDrops     = newDesc("port_drops_total", "Frames received on the port and dropped by the switch, by reason (docs/operations.md).", with(portLabels, "reason")...)

	devRxPackets = newDesc("port_device_rx_packets_total", "Kernel: frames the port's device received.", portLabels...)
	devTxPackets = newDesc("port_device_tx_packets_total", "Kernel: frames the port's device sent.", portLabels...)
	devRxDropped = newDesc("port_device_rx_dropped_total", "Kernel: frames the port's device dropped on receive.", portLabels...)
	devTxDropped = newDesc("port_device_tx_dropped_total", "Kernel: frames the port's device dropped on transmit (internal port: the TAP queue to xswitch was full).", portLabels...)
	devRxErrors  = newDesc("port_device_rx_errors_total", "Kernel: receive errors of the port's device.", portLabels...)
	devTxErrors  = newDesc("port_device_tx_errors_total", "Kernel: transmit errors of the port's device.", portLabels...)
	devRxMissed  = newDesc("port_device_rx_missed_total", "Kernel: frames the port's device missed (NIC FIFO overrun).", portLabels...)

	steerRedirected = newDesc("port_steer_redirected_total", "XDP steering program: frames redirected to an AF_XDP socket.", portLabels...)
	steerPassed     = newDesc("port_steer_passed_total", "XDP steering program: frames passed to the kernel.", portLabels...)
	steerNoSocket   = newDesc("port_steer_no_socket_total", "XDP steering program: frames for the switch that arrived on a queue without a socket (passed to the kernel).", portLabels...)
	kernelErrors    = newDesc("port_kernel_stats_errors", "Kernel counters of the port that could not be read at this scrape.", portLabels...)

	xskRxDropped       = newDesc("xsk_rx_dropped_total", "XDP_STATISTICS rx_dropped: frames the kernel dropped for the socket (no fill ring entry, or too big).", socketLabels...)
	xskRxRingFull      = newDesc("xsk_rx_ring_full_total", "XDP_STATISTICS rx_ring_full: frames dropped because the socket's RX ring was full.", socketLabels...)
	xskRxFillRingEmpty = newDesc("xsk_rx_fill_ring_empty_total", "XDP_STATISTICS rx_fill_ring_empty_descs: times the fill ring was empty.", socketLabels...)
	xskRxInvalidDescs  = newDesc("xsk_rx_invalid_descs_total", "XDP_STATISTICS rx_invalid_descs.", socketLabels...)
	xskTxInvalidDescs  = newDesc("xsk_tx_invalid_descs_total", "XDP_STATISTICS tx_invalid_descs: TX descriptors the kernel refused.", socketLabels...)
	xskTxRingEmpty     = newDesc("xsk_tx_ring_empty_total", "XDP_STATISTICS tx_ring_empty_descs: times the kernel found the TX ring empty.", socketLabels...)
	xskRxPackets       = newDesc("xsk_rx_packets_total", "Descriptors the switch took from the socket's RX ring.", socketLabels...)
	xskTxPackets       = newDesc("xsk_tx_packets_total", "Descriptors the switch put on the socket's TX ring.", socketLabels...)
	xskKickErrors      = newDesc("xsk_kick_errors_total", "Failed TX wake-ups (sendto) of the socket.", socketLabels...)

	tunRxPackets = newDesc("tunnel_rx_packets_total", "Inner frames received from the remote endpoint.", tunnelLabels...)
	tunRxBytes   = newDesc("tunnel_rx_bytes_total", "Bytes of the inner frames received from the remote endpoint.", tunnelLabels...)
	tunTxPackets = newDesc("tunnel_tx_packets_total", "Inner frames sent to the remote endpoint.", tunnelLabels...)
	tunTxBytes   = newDesc("tunnel_tx_bytes_total", "Bytes of the inner frames sent to the remote endpoint.", tunnelLabels...)
	tunDrops     = newDesc("tunnel_drops_total", "Frames of the tunnel dropped by the switch, by reason (docs/operations.md).", with(tunnelLabels, "reason")...)
	tunResolved  = newDesc("tunnel_next_hop_resolved", "1: the tunnel's underlay next hop is resolved; 0: frames to it are dropped (no_neighbour).", tunnelLabels...)

	fdbEntries   = newDesc("fdb_entries", "MAC table entries of the bridge.", bridgeLabels...)
	fdbLearned   = newDesc("fdb_learned_total", "New MACs the bridge learned.", bridgeLabels...)
	fdbMoves     = newDesc("fdb_moves_total", "Learned MACs that moved to another port.", bridgeLabels...)
	fdbEvictions = newDesc("fdb_evictions_total", "Idle MACs evicted to make room for a new one.", bridgeLabels...)
	fdbExpired   = newDesc("fdb_expired_total", "MACs removed by ageing.", bridgeLabels...)
	fdbRefused   = newDesc("fdb_learn_refused_total", "New MACs not learned, by reason (table_full: fdb.max_entries reached).", with(bridgeLabels, "reason")...)

	umemFrames     = newDesc("umem_frames", "Frames of the UMEM shared by every AF_XDP socket.")
	umemFree       = newDesc("umem_free_frames", "UMEM frames free (not in a ring nor in flight).")
	umemFrameSize  = newDesc("umem_frame_size_bytes", "Size of one UMEM frame.")
	umemLostFrames = newDesc("umem_lost_frames_total", "UMEM frames closed sockets never gave back.")

	floodCopies     = newDesc("flood_copies_total", "Frames copied to flood them to several ports.")
	internalCopies  = newDesc("internal_port_copies_total", "Frames copied to or from internal ports (TAP devices).")
	optionsReceived = newDesc("geneve_options_received_total", "Geneve options received, by class and type.", "class", "type")
	optionsOverflow = newDesc("geneve_options_overflow_total", "Received Geneve options of kinds beyond the 16 a poller tracks.")

	batchSize = newDesc("poller_batch_size", "Frames per non-empty batch the port's pollers received.", portLabels...)
)

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads the switch's snapshots and sends their metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- gauge(upDesc, 1)
	ch <- gauge(buildInfoDesc, 1, c.version, c.revision)
	st := c.src.Stats()
	status := c.src.Status()
	c.collectPorts(ch, st.Ports)
	c.collectTunnels(ch, st.Tunnels, status.Bridges)
	collectFDB(ch, status.Bridges)
	collectSockets(ch, c.src.SocketStats())
	collectBatches(ch, c.src.BatchHistograms())
	if u := status.UMEM; u.Frames > 0 {
		ch <- gauge(umemFrames, float64(u.Frames))
		ch <- gauge(umemFree, float64(u.FreeFrames))
		ch <- gauge(umemFrameSize, float64(u.FrameSize))
		ch <- counter(umemLostFrames, st.UMEMLostFrames)
	}
	ch <- counter(floodCopies, st.FloodCopies)
	ch <- counter(internalCopies, st.TAPCopies)
	for _, o := range st.Options {
		ch <- counter(optionsReceived, o.Count, o.Class, o.Type)
	}
	ch <- counter(optionsOverflow, st.OptionsOverflow)
	collectEVPN(ch, c.src)
}

func (c *Collector) collectPorts(ch chan<- prometheus.Metric, ports []vswitch.PortStats) {
	for _, p := range ports {
		l := []string{p.Bridge, p.Name, p.Kind}
		ch <- counter(portRxPackets, p.RxPackets, l...)
		ch <- counter(portRxBytes, p.RxBytes, l...)
		ch <- counter(portTxPackets, p.TxPackets, l...)
		ch <- counter(portTxBytes, p.TxBytes, l...)
		c.collectDrops(ch, portDrops, p.Drops, l)
		if k := p.Kernel; k != nil {
			collectKernel(ch, k, l)
		}
	}
}

// collectDrops sends every reason's counter, those at zero included.
func (c *Collector) collectDrops(ch chan<- prometheus.Metric, d *prometheus.Desc, drops map[string]uint64, l []string) {
	for _, r := range c.reasons {
		ch <- counter(d, drops[r], with(l, r)...)
	}
}

func collectKernel(ch chan<- prometheus.Metric, k *vswitch.KernelPortStats, l []string) {
	if d := k.Device; d != nil {
		ch <- counter(devRxPackets, d.RxPackets, l...)
		ch <- counter(devTxPackets, d.TxPackets, l...)
		ch <- counter(devRxDropped, d.RxDropped, l...)
		ch <- counter(devTxDropped, d.TxDropped, l...)
		ch <- counter(devRxErrors, d.RxErrors, l...)
		ch <- counter(devTxErrors, d.TxErrors, l...)
		ch <- counter(devRxMissed, d.RxMissed, l...)
	}
	if s := k.Steer; s != nil {
		ch <- counter(steerRedirected, s.Redirected, l...)
		ch <- counter(steerPassed, s.Passed, l...)
		ch <- counter(steerNoSocket, s.NoSocket, l...)
	}
	ch <- gauge(kernelErrors, float64(len(k.Errors)), l...)
}

func collectSockets(ch chan<- prometheus.Metric, socks []vswitch.SocketStats) {
	for _, s := range socks {
		if s.Error != "" {
			continue // counted in xswitch_port_kernel_stats_errors
		}
		l := []string{s.Bridge, s.Port, s.Kind, strconv.Itoa(s.Queue)}
		x := s.XSK
		ch <- counter(xskRxDropped, x.RxDropped, l...)
		ch <- counter(xskRxInvalidDescs, x.RxInvalidDescs, l...)
		ch <- counter(xskTxInvalidDescs, x.TxInvalidDescs, l...)
		if x.RingStats { // Linux 5.9 and later
			ch <- counter(xskRxRingFull, x.RxRingFull, l...)
			ch <- counter(xskRxFillRingEmpty, x.RxFillRingEmpty, l...)
			ch <- counter(xskTxRingEmpty, x.TxRingEmpty, l...)
		}
		ch <- counter(xskRxPackets, x.RxPackets, l...)
		ch <- counter(xskTxPackets, x.TxPackets, l...)
		ch <- counter(xskKickErrors, x.KickErrors, l...)
	}
}

func (c *Collector) collectTunnels(ch chan<- prometheus.Metric, tuns []vswitch.TunnelStats, bridges []vswitch.BridgeStatus) {
	for _, t := range tuns {
		l := []string{t.Bridge, t.Remote, strconv.FormatUint(uint64(t.VNI), 10)}
		ch <- counter(tunRxPackets, t.RxPackets, l...)
		ch <- counter(tunRxBytes, t.RxBytes, l...)
		ch <- counter(tunTxPackets, t.TxPackets, l...)
		ch <- counter(tunTxBytes, t.TxBytes, l...)
		c.collectDrops(ch, tunDrops, t.Drops, l)
		if nh, ok := nextHop(bridges, t.Bridge, t.Remote); ok {
			resolved := 0.0
			if nh.State == "resolved" {
				resolved = 1
			}
			ch <- gauge(tunResolved, resolved, l...)
		}
	}
}

func nextHop(bridges []vswitch.BridgeStatus, bridge, remote string) (vswitch.NextHopStatus, bool) {
	for _, b := range bridges {
		if b.Name != bridge {
			continue
		}
		for _, t := range b.Tunnels {
			if t.Remote == remote {
				return t.NextHop, true
			}
		}
	}
	return vswitch.NextHopStatus{}, false
}

func collectFDB(ch chan<- prometheus.Metric, bridges []vswitch.BridgeStatus) {
	for _, b := range bridges {
		l := []string{b.Name, strconv.FormatUint(uint64(b.VNI), 10)}
		ch <- gauge(fdbEntries, float64(b.FDB.Entries), l...)
		ch <- counter(fdbLearned, b.FDB.Learned, l...)
		ch <- counter(fdbMoves, b.FDB.Moves, l...)
		ch <- counter(fdbEvictions, b.FDB.Evictions, l...)
		ch <- counter(fdbExpired, b.FDB.Expired, l...)
		ch <- counter(fdbRefused, b.FDB.Full, with(l, "table_full")...)
	}
}

func collectBatches(ch chan<- prometheus.Metric, hs []vswitch.BatchHistogram) {
	for _, h := range hs {
		buckets := make(map[float64]uint64, len(h.Buckets))
		var cum uint64
		for i, n := range h.Buckets {
			cum += n
			buckets[float64(vswitch.BatchBounds[i])] = cum
		}
		ch <- prometheus.MustNewConstHistogram(batchSize, h.Count, float64(h.Sum), buckets, h.Bridge, h.Port, h.Kind)
	}
}

func counter(d *prometheus.Desc, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
