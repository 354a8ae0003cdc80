package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	vswitch "xswitch/switch"
)

// fakeSource is a switch with an underlay (two queues, one of them
// unreadable), a local port, an internal port and one tunnel.
type fakeSource struct{ scrapes int }

func (f *fakeSource) Stats() vswitch.Stats {
	f.scrapes++
	return vswitch.Stats{
		Ports: []vswitch.PortStats{
			{Name: "eth0", Kind: "underlay", RxPackets: 11, RxBytes: 1508, TxPackets: 12, TxBytes: 1600,
				Drops: map[string]uint64{"not_geneve_port": 3},
				Kernel: &vswitch.KernelPortStats{
					Device: &vswitch.DeviceStats{RxPackets: 20, TxPackets: 21, RxDropped: 1},
					Steer:  &vswitch.SteerStats{Redirected: 11, Passed: 9, NoSocket: 2},
					Errors: []string{"XDP_STATISTICS: bad file descriptor"}}},
			{Name: "vm1", Bridge: "br1", Kind: "local", RxPackets: 5, Drops: map[string]uint64{}},
			{Name: "br1", Bridge: "br1", Kind: "internal", RxPackets: 7, TxPackets: 8, Drops: map[string]uint64{"no_frame": 1},
				Kernel: &vswitch.KernelPortStats{Device: &vswitch.DeviceStats{TxDropped: 4}}},
		},
		Tunnels: []vswitch.TunnelStats{{Bridge: "br1", Remote: "198.18.0.2", VNI: 5000, RxPackets: 9, TxPackets: 10,
			Drops: map[string]uint64{"too_big": 2}}},
		Options:         []vswitch.OptionStat{{Class: "0x0102", Type: "0x80", Count: 5}},
		OptionsOverflow: 1,
		FloodCopies:     6,
		TAPCopies:       24,
		UMEMLostFrames:  0,
	}
}

func (f *fakeSource) Status() vswitch.Status {
	return vswitch.Status{
		UMEM: vswitch.UMEMStatus{Frames: 16384, FrameSize: 2048, FreeFrames: 7000},
		Bridges: []vswitch.BridgeStatus{{Name: "br1", VNI: 5000,
			FDB:     vswitch.FDBStats{Entries: 3, Learned: 4, Expired: 1, Full: 2},
			Tunnels: []vswitch.TunnelStatus{{Remote: "198.18.0.2", Key: 5000, NextHop: vswitch.NextHopStatus{State: "resolved"}}}}},
	}
}

func (f *fakeSource) SocketStats() []vswitch.SocketStats {
	return []vswitch.SocketStats{
		{Port: "eth0", Kind: "underlay", Queue: 0, XSK: vswitch.XSKStats{Sockets: 1, RxDropped: 3, RxRingFull: 2, RxFillRingEmpty: 1, TxRingEmpty: 8, RingStats: true, RxPackets: 11}},
		{Port: "eth0", Kind: "underlay", Queue: 1, Error: "XDP_STATISTICS: bad file descriptor"},
		{Port: "vm1", Bridge: "br1", Kind: "local", Queue: 0, XSK: vswitch.XSKStats{Sockets: 1, RxDropped: 1}}, // before Linux 5.9
	}
}

func (f *fakeSource) BatchHistograms() []vswitch.BatchHistogram {
	return []vswitch.BatchHistogram{
		// 3 batches of 1, 1 of 2, 2 of 3..4, 1 of 33..64: 3+2+7+40 frames.
		{Port: "eth0", Kind: "underlay", Buckets: [7]uint64{3, 1, 2, 0, 0, 0, 1}, Count: 7, Sum: 52},
	}
}

func newRegistry(t *testing.T) (*prometheus.Registry, *fakeSource) {
	t.Helper()
	src := &fakeSource{}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(src, "v1.2.3", "abc123")); err != nil {
		t.Fatal(err)
	}
	return reg, src
}

// TestCollectorLint: every metric passes Prometheus' own naming and help
// checks, and the pedantic registry finds every metric described.
func TestCollectorLint(t *testing.T) {
	src := &fakeSource{}
	problems, err := testutil.CollectAndLint(NewCollector(src, "v1.2.3", "abc123"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if src.scrapes == 0 {
		t.Error("lint did not collect")
	}
	reg, _ := newRegistry(t)
	if _, err := reg.Gather(); err != nil {
		t.Errorf("pedantic gather: %v", err)
	}
}

// TestCollectorValues: the fake's counters come out under the expected
// names, labels and types.
func TestCollectorValues(t *testing.T) {
	reg, _ := newRegistry(t)
	want := `
# HELP xswitch_build_info Always 1; the labels say which xswitch runs.
# TYPE xswitch_build_info gauge
xswitch_build_info{revision="abc123",version="v1.2.3"} 1
# HELP xswitch_up 1: the switch answered this scrape.
# TYPE xswitch_up gauge
xswitch_up 1
# HELP xswitch_port_rx_packets_total Frames the switch received on the port.
# TYPE xswitch_port_rx_packets_total counter
xswitch_port_rx_packets_total{bridge="",kind="underlay",port="eth0"} 11
xswitch_port_rx_packets_total{bridge="br1",kind="internal",port="br1"} 7
xswitch_port_rx_packets_total{bridge="br1",kind="local",port="vm1"} 5
# HELP xswitch_fdb_entries MAC table entries of the bridge.
# TYPE xswitch_fdb_entries gauge
xswitch_fdb_entries{bridge="br1",vni="5000"} 3
# HELP xswitch_fdb_learn_refused_total New MACs not learned, by reason (table_full: fdb.max_entries reached).
# TYPE xswitch_fdb_learn_refused_total counter
xswitch_fdb_learn_refused_total{bridge="br1",reason="table_full",vni="5000"} 2
# HELP xswitch_umem_free_frames UMEM frames free (not in a ring nor in flight).
# TYPE xswitch_umem_free_frames gauge
xswitch_umem_free_frames 7000
# HELP xswitch_xsk_rx_ring_full_total XDP_STATISTICS rx_ring_full: frames dropped because the socket's RX ring was full.
# TYPE xswitch_xsk_rx_ring_full_total counter
xswitch_xsk_rx_ring_full_total{bridge="",kind="underlay",port="eth0",queue="0"} 2
# HELP xswitch_xsk_rx_dropped_total XDP_STATISTICS rx_dropped: frames the kernel dropped for the socket (no fill ring entry, or too big).
# TYPE xswitch_xsk_rx_dropped_total counter
xswitch_xsk_rx_dropped_total{bridge="",kind="underlay",port="eth0",queue="0"} 3
xswitch_xsk_rx_dropped_total{bridge="br1",kind="local",port="vm1",queue="0"} 1
# HELP xswitch_tunnel_next_hop_resolved 1: the tunnel's underlay next hop is resolved; 0: frames to it are dropped (no_neighbour).
# TYPE xswitch_tunnel_next_hop_resolved gauge
xswitch_tunnel_next_hop_resolved{bridge="br1",remote="198.18.0.2",vni="5000"} 1
# HELP xswitch_port_kernel_stats_errors Kernel counters of the port that could not be read at this scrape.
# TYPE xswitch_port_kernel_stats_errors gauge
xswitch_port_kernel_stats_errors{bridge="",kind="underlay",port="eth0"} 1
xswitch_port_kernel_stats_errors{bridge="br1",kind="internal",port="br1"} 0
# HELP xswitch_geneve_options_received_total Geneve options received, by class and type.
# TYPE xswitch_geneve_options_received_total counter
xswitch_geneve_options_received_total{class="0x0102",type="0x80"} 5
# HELP xswitch_poller_batch_size Frames per non-empty batch the port's pollers received.
# TYPE xswitch_poller_batch_size histogram
xswitch_poller_batch_size_bucket{bridge="",kind="underlay",port="eth0",le="1"} 3
xswitch_poller_batch_size_bucket{bridge="",kind="underlay",port="eth0",le="2"} 4
xswitch_poller_batch_size_bucket{bridge="",kind="underlay",port="eth0",le="4"} 6
xswitch_poller_batch_size_bucket{bridge="",kind="underlay",port="eth0",le="8"} 6
xswitch_poller_batch_size_bucket{bridge="",kind="underlay",port="eth0",le="16"} 6
xswitch_poller_batch_size_bucket{bridge="",kind="underlay",port="eth0",le="32"} 6
xswitch_poller_batch_size_bucket{bridge="",kind="underlay",port="eth0",le="64"} 7
xswitch_poller_batch_size_bucket{bridge="",kind="underlay",port="eth0",le="+Inf"} 7
xswitch_poller_batch_size_sum{bridge="",kind="underlay",port="eth0"} 52
xswitch_poller_batch_size_count{bridge="",kind="underlay",port="eth0"} 7
`
	names := []string{"xswitch_build_info", "xswitch_up", "xswitch_port_rx_packets_total", "xswitch_fdb_entries",
		"xswitch_fdb_learn_refused_total", "xswitch_umem_free_frames", "xswitch_xsk_rx_ring_full_total", "xswitch_xsk_rx_dropped_total",
		"xswitch_tunnel_next_hop_resolved", "xswitch_port_kernel_stats_errors", "xswitch_geneve_options_received_total", "xswitch_poller_batch_size"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// TestCollectorDrops: every drop reason has a counter on every port and
// tunnel, zero or not, with the fake's values where it has them.
func TestCollectorDrops(t *testing.T) {
	reg, _ := newRegistry(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	reasons := vswitch.DropReasons()
	if len(reasons) < 20 {
		t.Fatalf("only %d drop reasons: %v", len(reasons), reasons)
	}
	for _, c := range []struct {
		family string
		match  map[string]string
		series int
	}{
		{"xswitch_port_drops_total", map[string]string{"port": "eth0", "reason": "not_geneve_port"}, 3 * len(reasons)},
		{"xswitch_port_drops_total", map[string]string{"port": "br1", "reason": "no_frame"}, 3 * len(reasons)},
		{"xswitch_tunnel_drops_total", map[string]string{"remote": "198.18.0.2", "reason": "too_big"}, len(reasons)},
	} {
		mf := family(mfs, c.family)
		if mf == nil {
			t.Errorf("no %s", c.family)
			continue
		}
		if n := len(mf.GetMetric()); n != c.series {
			t.Errorf("%s: %d series, want %d (every reason of every port)", c.family, n, c.series)
		}
		var nonzero []string
		for _, m := range mf.GetMetric() {
			if m.GetCounter().GetValue() != 0 {
				nonzero = append(nonzero, labelString(m))
			}
		}
		found := false
		for _, m := range mf.GetMetric() {
			if hasLabels(m, c.match) {
				found = true
				if m.GetCounter().GetValue() == 0 {
					t.Errorf("%s%v is 0", c.family, c.match)
				}
			}
		}
		if !found {
			t.Errorf("%s%v missing; non-zero: %v", c.family, c.match, nonzero)
		}
	}
}

func family(mfs []*dto.MetricFamily, name string) *dto.MetricFamily {
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

func labelString(m *dto.Metric) string {
	var parts []string
	for _, lp := range m.GetLabel() {
		parts = append(parts, lp.GetName()+"="+lp.GetValue())
	}
	return strings.Join(parts, ",")
}
