package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// TCP paths and VM offload settings.
const (
	TCPHostHost = "host-host" // the hosts' own stacks, over the switches' internal ports
	TCPVMVM     = "vm-vm"     // a VM namespace behind a veth port on each host

	OffloadDefault = "default" // veth defaults: TX checksum offload on (CHECKSUM_PARTIAL frames)
	OffloadTxOff   = "tx-off"  // ethtool -K eth0 tx off in the VMs
)

// TCPResult is one system on one TCP case: iperf3 from host (or VM) 1 to
// host (or VM) 2 through both hosts' switches and the Geneve tunnel.
type TCPResult struct {
	System  string `json:"system"`
	Path    string `json:"path"`                 // host-host | vm-vm
	Offload string `json:"vm_offload,omitempty"` // vm-vm: default | tx-off
	Streams int    `json:"streams"`

	RunsGbps    []float64 `json:"runs_gbps"`   // iperf3 receiver goodput, each run (0: the run moved no data)
	Gbps        float64   `json:"gbps"`        // median of RunsGbps
	SpreadPct   float64   `json:"spread_pct"`  // (max-min)/median of RunsGbps, %
	Retransmits float64   `json:"retransmits"` // median over the runs, iperf3 sender

	// CPU time per Gbit received (milliseconds of CPU per Gbit), medians
	// over the runs: each host's switch process and the NAPI threads of
	// its ports (host 1 sends, host 2 receives).
	CPUMsPerGbitHost1 float64 `json:"cpu_ms_per_gbit_host1,omitempty"`
	CPUMsPerGbitHost2 float64 `json:"cpu_ms_per_gbit_host2,omitempty"`
	// Busy share of the switch CPU and of the application CPU over the
	// runs (/proc/stat), %: which core limits the case.
	SwitchCPUBusyPct float64 `json:"switch_cpu_busy_pct,omitempty"`
	AppCPUBusyPct    float64 `json:"app_cpu_busy_pct,omitempty"`

	// Drops counted by the interfaces on the path over all runs
	// (rx_dropped + tx_dropped), "h1/br1" → n: where the retransmitted
	// segments were lost, when an interface saw it.
	Drops map[string]uint64 `json:"drops,omitempty"`

	RatioOVS float64 `json:"ratio_to_ovs,omitempty"` // Gbps / OVS Gbps, same case

	Mode  string `json:"mode,omitempty"`
	Error string `json:"error,omitempty"` // e.g. "failed: no data" (a run moved nothing)
}

// Case names the case of r, e.g. "vm-vm tx-off 4".
func (r TCPResult) Case() string { return TCPCaseName(r.Path, r.Offload, r.Streams) }

// TCPCaseName is "host-host 1", "vm-vm default 4", ...
func TCPCaseName(path, offload string, streams int) string {
	if offload == "" {
		return fmt.Sprintf("%s %d", path, streams)
	}
	return fmt.Sprintf("%s %s %d", path, offload, streams)
}

// Finish computes the median and spread of the runs.
func (r *TCPResult) Finish() {
	r.Gbps = Median(r.RunsGbps)
	r.SpreadPct = Spread(r.RunsGbps)
}

// TCPGoal is one of the TCP goals (docs/benchmarks.md): a ratio of an
// xswitch case to an OVS case (Target ×), or, with Target 0, that the
// xswitch case moves data at all.
type TCPGoal struct {
	What     string  `json:"what"`
	Case     string  `json:"case"`     // the xswitch case
	Against  string  `json:"against"`  // the OVS case ("" for "works")
	Target   float64 `json:"target"`   // ratio; 0: Gbps > 0
	Measured float64 `json:"measured"` // ratio, or Gbps for "works"
	Met      bool    `json:"met"`
	Missing  bool    `json:"missing,omitempty"`
	Note     string  `json:"note,omitempty"` // e.g. OVS's figure, or which core was busy
}

// Verdict is "met (3.10×)", "NOT met (1.20×)", "met (5.2 Gbit/s)" or "not measured".
func (g TCPGoal) Verdict() string {
	v := fmt.Sprintf("%.2f×", g.Measured)
	if g.Target == 0 {
		v = fmt.Sprintf("%.2f Gbit/s", g.Measured)
	}
	switch {
	case g.Missing:
		return "not measured"
	case g.Met:
		return "met (" + v + ")"
	default:
		return "NOT met (" + v + ")"
	}
}

// TCPReport is the TCP part of a run (`make bench-tcp`, or `make bench`).
type TCPReport struct {
	Runs        int         `json:"runs"`
	DurationSec float64     `json:"duration_sec"` // iperf3 -t
	WarmupSec   float64     `json:"warmup_sec"`   // an unrecorded iperf3 run before each case
	SwitchCPU   int         `json:"switch_cpu"`
	AppCPU      int         `json:"app_cpu"`
	Placement   string      `json:"placement"`
	CPUMethod   string      `json:"cpu_method"`
	Iperf3      string      `json:"iperf3"` // iperf3 --version, first line
	Results     []TCPResult `json:"results"`
	Goals       []TCPGoal   `json:"goals"`
}

// Find returns the result of system on a case (nil if absent). A result
// with an error is returned too: its Gbps is 0.
func (t *TCPReport) Find(system, path, offload string, streams int) *TCPResult {
	for i := range t.Results {
		r := &t.Results[i]
		if r.System == system && r.Path == path && r.Offload == offload && r.Streams == streams {
			return r
		}
	}
	return nil
}

// Compute fills in the ratios and judges the goals.
func (t *TCPReport) Compute() {
	for i := range t.Results {
		r := &t.Results[i]
		r.RatioOVS = 0
		if r.System == SystemOVS || r.Gbps == 0 {
			continue
		}
		if o := t.Find(SystemOVS, r.Path, r.Offload, r.Streams); o != nil && o.Gbps > 0 {
			r.RatioOVS = r.Gbps / o.Gbps
		}
	}
	t.Goals = nil
	for _, n := range []int{1, 4} {
		t.Goals = append(t.Goals,
			t.worksGoal(n),
			t.ratioGoal("host → host ≥ 3× OVS", TCPHostHost, "", "", 3, n),
			t.ratioGoal("VM → VM ≥ 1.5× OVS (OVS VMs tx off)", TCPVMVM, OffloadDefault, OffloadTxOff, 1.5, n))
	}
}

func (t *TCPReport) worksGoal(streams int) TCPGoal {
	g := TCPGoal{What: "VM → VM with default offloads works", Case: TCPCaseName(TCPVMVM, OffloadDefault, streams)}
	x := t.Find(SystemXswitch, TCPVMVM, OffloadDefault, streams)
	if x == nil {
		g.Missing = true
		return g
	}
	g.Measured = x.Gbps
	g.Met = x.Gbps > 0 && x.Error == ""
	if o := t.Find(SystemOVS, TCPVMVM, OffloadDefault, streams); o != nil {
		g.Note = fmt.Sprintf("OVS: %.2f Gbit/s", o.Gbps)
		if o.Error != "" {
			g.Note += " (" + firstLine(o.Error) + ")"
		}
	}
	return g
}

func (t *TCPReport) ratioGoal(what, path, xOff, oOff string, target float64, streams int) TCPGoal {
	g := TCPGoal{What: what, Case: TCPCaseName(path, xOff, streams), Against: TCPCaseName(path, oOff, streams), Target: target}
	x := t.Find(SystemXswitch, path, xOff, streams)
	o := t.Find(SystemOVS, path, oOff, streams)
	if x == nil || o == nil || o.Gbps == 0 {
		g.Missing = true
		if o != nil && o.Gbps == 0 {
			g.Note = "OVS moved no data"
		}
		return g
	}
	g.Measured = x.Gbps / o.Gbps
	g.Met = g.Measured >= target
	if !g.Met && x.AppCPUBusyPct > 0 {
		g.Note = fmt.Sprintf("xswitch %.2f Gbit/s, OVS %.2f; during the xswitch runs the switch CPU was %.0f%% busy, the application CPU %.0f%%",
			x.Gbps, o.Gbps, x.SwitchCPUBusyPct, x.AppCPUBusyPct)
	}
	return g
}

// sorted returns the results ordered by path, offload, streams and system.
func (t *TCPReport) sorted() []TCPResult {
	order := map[string]int{TCPHostHost: 0, TCPVMVM: 1, "": 0, OffloadDefault: 0, OffloadTxOff: 1, SystemXswitch: 0, SystemOVS: 1}
	rs := append([]TCPResult(nil), t.Results...)
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		switch {
		case a.Path != b.Path:
			return order[a.Path] < order[b.Path]
		case a.Offload != b.Offload:
			return order[a.Offload] < order[b.Offload]
		case a.Streams != b.Streams:
			return a.Streams < b.Streams
		}
		return order[a.System] < order[b.System]
	})
	return rs
}

// Table writes the TCP results as an aligned text table, then the goals.
func (t *TCPReport) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "TCP case\tsystem\tGbit/s\tspread\tretr\tCPU ms/Gbit h1\th2\tswitch CPU\tapp CPU\t×OVS\t")
	for _, r := range t.sorted() {
		line := fmt.Sprintf("%s\t%s\t%.2f\t%.1f%%\t%.0f\t%.1f\t%.1f\t%.0f%%\t%.0f%%\t%s\t",
			r.Case(), r.System, r.Gbps, r.SpreadPct, r.Retransmits, r.CPUMsPerGbitHost1, r.CPUMsPerGbitHost2,
			r.SwitchCPUBusyPct, r.AppCPUBusyPct, ratio(r.RatioOVS))
		if r.Error != "" {
			line += " " + firstLine(r.Error)
		} else if d := DropsString(r.Drops); d != "" {
			line += " drops: " + d
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	if len(t.Goals) > 0 {
		fmt.Fprintln(w, "\nTCP goals:")
		for _, g := range t.Goals {
			c := g.Case
			if g.Against != "" && g.Against != g.Case {
				c += " vs OVS " + g.Against
			}
			line := fmt.Sprintf("  %-40s %-28s %s", g.What, c, g.Verdict())
			if g.Note != "" {
				line += "; " + g.Note
			}
			fmt.Fprintln(w, strings.TrimRight(line, " "))
		}
	}
}

// DropsString lists drop counters as "h1/br1 12, vm2/eth0 3", by name.
func DropsString(d map[string]uint64) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = fmt.Sprintf("%s %d", k, d[k])
	}
	return strings.Join(keys, ", ")
}
