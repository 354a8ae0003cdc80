// Package report holds the benchmark results: the median and spread of
// repeated runs, ratios against Open vSwitch and the l2fwd ceiling measured
// in the same run, the goals, and the outputs (terminal table, JSON file,
// SVG chart).
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Systems and paths.
const (
	SystemXswitch = "xswitch"
	SystemOVS     = "ovs"
	SystemCeiling = "l2fwd" // xsk RX→TX with no switching: the AF_XDP ceiling of this machine

	PathEncap = "encap" // local port → Geneve tunnel
	PathDecap = "decap" // Geneve tunnel → local port
	PathLocal = "local" // port → port on one bridge
	PathFwd   = "fwd"   // the ceiling: interface → interface, no switching
)

// Median returns the median of xs (0 for none). xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Spread returns (max-min)/median in percent (0 for fewer than two values or
// a zero median).
func Spread(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	m := Median(xs)
	if m == 0 {
		return 0
	}
	return (hi - lo) / m * 100
}

// Result is one system on one path at one frame size.
type Result struct {
	System string `json:"system"`
	Path   string `json:"path"`
	Size   int    `json:"size"` // inner (VM-side) frame length in bytes, without FCS

	RunsMpps     []float64 `json:"runs_mpps"`      // forwarded rate at the sink, each run
	Mpps         float64   `json:"mpps"`           // median of RunsMpps
	SpreadPct    float64   `json:"spread_pct"`     // (max-min)/median of RunsMpps, %
	SinkFrameLen int       `json:"sink_frame_len"` // frame length at the sink (Geneve adds 50 bytes on encap)
	Gbps         float64   `json:"gbps"`           // Mpps × SinkFrameLen × 8
	OfferedMpps  float64   `json:"offered_mpps"`   // median generator rate over the same runs
	LossPct      float64   `json:"loss_pct"`       // 1 - forwarded/offered, %

	CPUNsPerPkt  float64 `json:"cpu_ns_per_pkt,omitempty"` // switch process CPU time (user+sys) per forwarded packet
	CPUUtilPct   float64 `json:"cpu_util_pct,omitempty"`   // switch process CPU time / wall time, %
	CyclesPerPkt float64 `json:"cycles_per_pkt,omitempty"` // perf stat -C <cpu> -e cycles per forwarded packet, where perf works

	// CtxSw is the context switches per 1000 forwarded packets (medians
	// of the runs); Latency the round trips through the switch (64 bytes,
	// xswitch and Open vSwitch).
	CtxSw   *CtxSwitches `json:"ctx_switches_per_kpkt,omitempty"`
	Latency *Latency     `json:"latency,omitempty"`

	RatioOVS     float64 `json:"ratio_to_ovs,omitempty"`     // Mpps / OVS Mpps (same path and size)
	RatioCeiling float64 `json:"ratio_to_ceiling,omitempty"` // Mpps / l2fwd Mpps (same size)

	Mode  string `json:"mode,omitempty"`  // how the system ran its ports (e.g. AF_XDP copy, XDP native)
	Error string `json:"error,omitempty"` // why there is no figure
}

// CtxSwitches are voluntary (the thread slept) and involuntary (it was
// preempted) context switches per 1000 forwarded packets, read from
// /proc/<pid>/task/<tid>/status over each run.
type CtxSwitches struct {
	// Every thread of the system's processes in the switch namespace.
	SwitchVol   float64 `json:"switch_vol"`
	SwitchInvol float64 `json:"switch_invol"`
	// Its forwarding threads: Open vSwitch's PMD threads; for xswitch and
	// l2fwd the threads that used at least 10 % of a CPU in the run.
	FwdVol   float64 `json:"fwd_vol"`
	FwdInvol float64 `json:"fwd_invol"`
	// The NAPI threads of the switch's ingress veth (on the switch CPU:
	// they fill its RX ring) and of the sink's veth (on the generator CPU:
	// each of the switch's transmit kicks may wake them, an IPI away).
	NAPIInVol    float64 `json:"napi_in_vol"`
	NAPIInInvol  float64 `json:"napi_in_invol"`
	NAPIOutVol   float64 `json:"napi_out_vol"`
	NAPIOutInvol float64 `json:"napi_out_invol"`
}

// Latency is the round-trip time of pings through the switch (there and
// back: both of its ports' pollers), with no load and with the generator
// at half of the rate the system forwarded.
type Latency struct {
	Method     string  `json:"method"`
	Probes     int     `json:"probes"`
	IntervalMs float64 `json:"interval_ms"`
	Idle       RTT     `json:"idle"`
	Half       RTT     `json:"half_load"`
	// HalfRateMpps is the generator's target rate (half of Mpps), Offered
	// what it sent and Forwarded what the sink counted meanwhile.
	HalfRateMpps      float64 `json:"half_rate_mpps"`
	HalfOfferedMpps   float64 `json:"half_offered_mpps"`
	HalfForwardedMpps float64 `json:"half_forwarded_mpps"`
	Error             string  `json:"error,omitempty"`
}

// RTT sums up one series of pings, in microseconds.
type RTT struct {
	MedianUs float64 `json:"median_us"`
	P99Us    float64 `json:"p99_us"`
	MaxUs    float64 `json:"max_us"`
	Replies  int     `json:"replies"`
	Lost     int     `json:"lost"`
}

// Percentile returns the p-th percentile (0..100, nearest rank) of xs (0
// for none). xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Finish computes the median, spread, Gbps and loss from the runs.
func (r *Result) Finish(offered []float64) {
	r.Mpps = Median(r.RunsMpps)
	r.SpreadPct = Spread(r.RunsMpps)
	r.Gbps = r.Mpps * float64(r.SinkFrameLen) * 8 / 1000
	r.OfferedMpps = Median(offered)
	if r.OfferedMpps > 0 {
		r.LossPct = math.Max(0, (1-r.Mpps/r.OfferedMpps)*100)
	}
}

// Goal is one of the project's speed targets (docs/benchmarks.md, "Goals"),
// judged on a run's figures.
type Goal struct {
	What     string  `json:"what"`
	Path     string  `json:"path"`
	Size     int     `json:"size"`
	Against  string  `json:"against"` // ovs | l2fwd
	Target   float64 `json:"target"`  // ratio
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
	Missing  bool    `json:"missing,omitempty"` // a figure needed was not measured
}

// Report is one `make bench` run.
type Report struct {
	Time        time.Time `json:"time"`
	Quick       bool      `json:"quick"`
	Host        Host      `json:"host"`
	Runs        int       `json:"runs"`
	IntervalSec float64   `json:"interval_sec"`
	WarmupSec   float64   `json:"warmup_sec"`
	Flows       int       `json:"flows"`
	SwitchCPU   int       `json:"switch_cpu"`
	GenCPU      int       `json:"generator_cpu"`
	CPUMethod   string    `json:"cpu_method"` // "perf cycles" or "/proc/<pid>/stat"
	Notes       []string  `json:"notes,omitempty"`
	Results     []Result  `json:"results"`
	Goals       []Goal    `json:"goals"`
	Profiles    []Profile `json:"profiles,omitempty"`
	// TCP is the iperf3 part (TestBenchTCP), when it ran.
	TCP *TCPReport `json:"tcp,omitempty"`
}

// Host describes the machine.
type Host struct {
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
	NumCPU int    `json:"num_cpu"`
	Go     string `json:"go"`
}

func (rep *Report) find(system, path string, size int) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.System == system && r.Path == path && r.Size == size && r.Error == "" && r.Mpps > 0 {
			return r
		}
	}
	return nil
}

// Compute fills in the ratios and judges the goals.
func (rep *Report) Compute() {
	for i := range rep.Results {
		r := &rep.Results[i]
		r.RatioOVS, r.RatioCeiling = 0, 0
		if r.Error != "" || r.System == SystemCeiling {
			continue
		}
		if o := rep.find(SystemOVS, r.Path, r.Size); o != nil && r.System != SystemOVS {
			r.RatioOVS = r.Mpps / o.Mpps
		}
		if c := rep.find(SystemCeiling, PathFwd, r.Size); c != nil {
			r.RatioCeiling = r.Mpps / c.Mpps
		}
	}
	rep.Goals = nil
	for _, p := range []string{PathEncap, PathDecap} {
		for _, g := range []Goal{
			{What: "xswitch ≥ 1.5× OVS AF_XDP", Against: SystemOVS, Target: 1.5},
			{What: "xswitch ≥ 0.95× xsk l2fwd ceiling", Against: SystemCeiling, Target: 0.95},
		} {
			g.Path, g.Size = p, 64
			x := rep.find(SystemXswitch, p, 64)
			switch {
			case x == nil:
				g.Missing = true
			case g.Against == SystemOVS && x.RatioOVS > 0:
				g.Measured = x.RatioOVS
			case g.Against == SystemCeiling && x.RatioCeiling > 0:
				g.Measured = x.RatioCeiling
			default:
				g.Missing = true
			}
			g.Met = !g.Missing && g.Measured >= g.Target
			rep.Goals = append(rep.Goals, g)
		}
	}
}

// WriteJSON writes the report, indented, to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report: encode: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}

// ReadJSON reads a report written by WriteJSON.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("report: decode %s: %w", path, err)
	}
	return &rep, nil
}

func ratio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", v)
}

// sorted returns the results ordered by path, size and system.
func (rep *Report) sorted() []Result {
	order := map[string]int{PathEncap: 0, PathDecap: 1, PathLocal: 2, PathFwd: 3,
		SystemXswitch: 0, SystemOVS: 1, SystemCeiling: 2}
	rs := append([]Result(nil), rep.Results...)
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Path != b.Path {
			return order[a.Path] < order[b.Path]
		}
		if a.Size != b.Size {
			return a.Size < b.Size
		}
		return order[a.System] < order[b.System]
	})
	return rs
}

// Table writes the results as an aligned text table, then the goals.
func (rep *Report) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if rep.Host.CPU != "" {
		fmt.Fprintf(w, "CPU: %s (%d CPUs), Linux %s, %s\n", rep.Host.CPU, rep.Host.NumCPU, rep.Host.Kernel, rep.Host.Go)
	}
	fmt.Fprintln(tw, "path\tsize\tsystem\tMpps\tspread\tGbps\toffered\tloss\tCPU ns/pkt\tcycles/pkt\t×OVS\t×l2fwd\tcs/kpkt sw v/i\tfwd v/i\tnapi-in v/i\tnapi-out v/i\t")
	for _, r := range rep.sorted() {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t%s\terror: %s\t\t\t\t\t\t\t\t\t\t\t\t\t\n", r.Path, r.Size, r.System, firstLine(r.Error))
			continue
		}
		cyc := "-"
		if r.CyclesPerPkt > 0 {
			cyc = fmt.Sprintf("%.0f", r.CyclesPerPkt)
		}
		cs := [4]string{"-", "-", "-", "-"}
		if c := r.CtxSw; c != nil {
			vi := func(v, i float64) string { return fmt.Sprintf("%.1f/%.1f", v, i) }
			cs = [4]string{vi(c.SwitchVol, c.SwitchInvol), vi(c.FwdVol, c.FwdInvol), vi(c.NAPIInVol, c.NAPIInInvol), vi(c.NAPIOutVol, c.NAPIOutInvol)}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.3f\t%.1f%%\t%.2f\t%.3f\t%.1f%%\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Path, r.Size, r.System, r.Mpps, r.SpreadPct, r.Gbps, r.OfferedMpps, r.LossPct,
			r.CPUNsPerPkt, cyc, ratio(r.RatioOVS), ratio(r.RatioCeiling), cs[0], cs[1], cs[2], cs[3])
	}
	tw.Flush()
	rep.latencyTable(w)
	if len(rep.Goals) > 0 {
		fmt.Fprintln(w, "\ngoals (64-byte frames):")
		for _, g := range rep.Goals {
			fmt.Fprintf(w, "  %-6s %-34s %s\n", g.Path, g.What, g.Verdict())
		}
	}
}

// latencyTable writes the round trips through the switch, where measured.
func (rep *Report) latencyTable(w io.Writer) {
	var rows []Result
	for _, r := range rep.sorted() {
		if r.Latency != nil {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nround trip through the switch (ICMP echo there and back, µs: median / p99 (replies of %d)):\n", rows[0].Latency.Probes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tsystem\tno load\thalf load\thalf-load rate (target/offered/forwarded Mpps)\t")
	for _, r := range rows {
		l := r.Latency
		if l.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\terror: %s\t\t\t\n", r.Path, r.System, firstLine(l.Error))
			continue
		}
		rtt := func(x RTT) string {
			return fmt.Sprintf("%.0f / %.0f (%d)", x.MedianUs, x.P99Us, x.Replies)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.3f / %.3f / %.3f\t\n", r.Path, r.System, rtt(l.Idle), rtt(l.Half),
			l.HalfRateMpps, l.HalfOfferedMpps, l.HalfForwardedMpps)
	}
	tw.Flush()
}

// Verdict is "met (1.62×)", "NOT met (0.81×)" or "not measured".
func (g Goal) Verdict() string {
	switch {
	case g.Missing:
		return "not measured"
	case g.Met:
		return fmt.Sprintf("met (%.2f×)", g.Measured)
	default:
		return fmt.Sprintf("NOT met (%.2f×)", g.Measured)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}

// ProfileEntry is one function of a CPU profile.
type ProfileEntry struct {
	Pct    float64 `json:"pct"`
	Thread string  `json:"thread"`
	Object string  `json:"object"`
	Kernel bool    `json:"kernel,omitempty"`
	Symbol string  `json:"symbol"`
	// CumPct (pprof profiles) is the share of the samples in the function
	// and what it calls.
	CumPct float64 `json:"cum_pct,omitempty"`
}

// Profile is where a system spent its CPU while forwarding at full load.
type Profile struct {
	System string         `json:"system"`
	Path   string         `json:"path"`
	Size   int            `json:"size"`
	Method string         `json:"method"`
	Top    []ProfileEntry `json:"top"`
	File   string         `json:"file,omitempty"` // the pprof profile, when kept
}

// WriteProfiles prints each profile's top entries.
func (rep *Report) WriteProfiles(w io.Writer, n int) {
	for _, p := range rep.Profiles {
		size := ""
		if p.Size > 0 {
			size = fmt.Sprintf(" %d B", p.Size)
		}
		fmt.Fprintf(w, "\nprofile %s %s%s (%s):\n", p.System, p.Path, size, p.Method)
		for i, e := range p.Top {
			if i == n {
				break
			}
			k := ""
			if e.Kernel {
				k = " [kernel]"
			}
			if e.CumPct > 0 {
				fmt.Fprintf(w, "  %6.2f%% (cum %6.2f%%)  %s\n", e.Pct, e.CumPct, e.Symbol)
				continue
			}
			fmt.Fprintf(w, "  %6.2f%%  %-16s %s%s\n", e.Pct, e.Thread, e.Symbol, k)
		}
	}
}
