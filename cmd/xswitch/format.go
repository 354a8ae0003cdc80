package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"xswitch/evpn"
	vswitch "xswitch/switch"
)

// formatText prints a control reply for people.
func formatText(w io.Writer, cmd string, data json.RawMessage) error {
	switch cmd {
	case "show":
		var s vswitch.Status
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		formatShow(w, &s)
	case "fdb":
		var es []vswitch.FDBEntry
		if err := json.Unmarshal(data, &es); err != nil {
			return err
		}
		formatFDB(w, es)
	case "bgp":
		var s evpn.Status
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		formatBGP(w, &s)
	case "stats":
		var s vswitch.Stats
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		formatStats(w, &s)
	case "reload":
		var r vswitch.ReloadResult
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		formatReload(w, &r)
	case "fdb-flush":
		var r FlushReply
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		which := "every bridge"
		if r.Bridge != "" {
			which = "bridge " + r.Bridge
		}
		fmt.Fprintf(w, "flushed %d learned MAC entries (%s); static entries stay\n", r.Removed, which)
	default:
		return fmt.Errorf("%w %q", errUnknown, cmd)
	}
	return nil
}

func portLine(p *vswitch.PortStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s", p.Name, p.Kind)
	if p.State != "" {
		fmt.Fprintf(&b, ", %s", p.State)
	}
	if p.State == "absent" {
		b.WriteString(")")
		return b.String()
	}
	fmt.Fprintf(&b, ", ifindex %d", p.Ifindex)
	if p.MAC != "" {
		fmt.Fprintf(&b, ", %s", p.MAC)
	}
	if p.MTU != 0 {
		fmt.Fprintf(&b, ", mtu %d", p.MTU)
	}
	b.WriteString(")")
	if p.XDP != "" {
		fmt.Fprintf(&b, ": xdp %s via %s, %s, %d queues", p.XDP, p.Link, p.Copy, p.Queues)
		if p.TxBudget > 0 {
			fmt.Fprintf(&b, ", tx budget %d", p.TxBudget)
		}
	} else {
		fmt.Fprintf(&b, ": %s", p.Copy)
	}
	if len(p.Pollers) > 0 {
		var ps []string
		for _, q := range p.Pollers {
			if q.CPU >= 0 {
				ps = append(ps, fmt.Sprintf("q%d@cpu%d", q.Queue, q.CPU))
			} else {
				ps = append(ps, fmt.Sprintf("q%d", q.Queue))
			}
		}
		fmt.Fprintf(&b, " [pollers %s]", strings.Join(ps, " "))
	}
	if len(p.LocalIPs) > 0 {
		fmt.Fprintf(&b, " local %s", strings.Join(p.LocalIPs, ","))
	}
	if len(p.Addresses) > 0 {
		fmt.Fprintf(&b, " addr %s", strings.Join(p.Addresses, ","))
	}
	return b.String()
}

func formatShow(w io.Writer, s *vswitch.Status) {
	fmt.Fprintf(w, "xswitch %s (pid %d), cpus %v, busy_poll %v, poller_policy %s, poller_idle %s\n", s.Version, s.PID, s.CPUs, s.BusyPoll, s.PollerPolicy, idleLine(s.Idle))
	if s.Revision != "" || s.StartedAt != "" {
		rev := s.Revision
		if s.Modified {
			rev += " (modified)"
		}
		fmt.Fprintf(w, "revision %s, up %s since %s\n", rev, time.Duration(s.UptimeSeconds*float64(time.Second)), s.StartedAt)
	}
	fmt.Fprintf(w, "umem: %d frames of %d bytes (headroom %d), %d free\n", s.UMEM.Frames, s.UMEM.FrameSize, s.UMEM.Headroom, s.UMEM.FreeFrames)
	if s.Underlay != nil {
		fmt.Fprintf(w, "underlay: %s\n", portLine(s.Underlay))
		offloadLines(w, "  ", s.Underlay.Offloads)
	}
	for _, b := range s.Bridges {
		fmt.Fprintf(w, "bridge %s (vni %d, %d MACs)\n", b.Name, b.VNI, b.FDB.Entries)
		for i := range b.Ports {
			fmt.Fprintf(w, "  port %s\n", portLine(&b.Ports[i]))
			offloadLines(w, "    ", b.Ports[i].Offloads)
		}
		for _, t := range b.Tunnels {
			fmt.Fprintf(w, "  tunnel %s -> %s key %d", t.Local, t.Remote, t.Key)
			if t.Source != "" {
				fmt.Fprintf(w, " (%s)", t.Source)
			}
			if len(t.Options) > 0 {
				fmt.Fprintf(w, " options %s", strings.Join(t.Options, ","))
			}
			nh := t.NextHop
			fmt.Fprintf(w, ": next hop %s", nh.State)
			if nh.Gateway != "" {
				fmt.Fprintf(w, " via %s", nh.Gateway)
			}
			if nh.Dev != "" {
				fmt.Fprintf(w, " dev %s", nh.Dev)
			}
			if nh.MAC != "" {
				fmt.Fprintf(w, " lladdr %s", nh.MAC)
			}
			if nh.Error != "" {
				fmt.Fprintf(w, " (%s)", nh.Error)
			}
			fmt.Fprintln(w)
		}
	}
	for _, m := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
}

// formatReload prints what a reload changed.
func formatReload(w io.Writer, r *vswitch.ReloadResult) {
	fmt.Fprintf(w, "reloaded (generation %d): %d added, %d removed, %d changed, %d kept\n", r.Generation, len(r.Added), len(r.Removed), len(r.Changed), r.Kept)
	for _, l := range []struct {
		what  string
		items []string
	}{{"added", r.Added}, {"removed", r.Removed}, {"changed", r.Changed}, {"warning", r.Warnings}} {
		for _, it := range l.items {
			fmt.Fprintf(w, "  %s: %s\n", l.what, it)
		}
	}
}

func formatFDB(w io.Writer, es []vswitch.FDBEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BRIDGE\tVNI\tMAC\tPORT\tAGE\tSOURCE")
	for _, e := range es {
		age := fmt.Sprintf("%.0fs", e.Age)
		if e.Static {
			age = "static"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", e.Bridge, e.VNI, e.MAC, e.Port, age, e.Source)
	}
	tw.Flush()
}

func drops(m map[string]uint64) string {
	var ks []string
	for k, v := range m {
		if v != 0 {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func formatStats(w io.Writer, s *vswitch.Stats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tBRIDGE\tKIND\tRX PKTS\tRX BYTES\tTX PKTS\tTX BYTES\tDROPS")
	for _, p := range s.Ports {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", p.Name, p.Bridge, p.Kind, p.RxPackets, p.RxBytes, p.TxPackets, p.TxBytes, drops(p.Drops))
	}
	for _, t := range s.Tunnels {
		fmt.Fprintf(tw, "tunnel:%s\t%s\tvni %d\t%d\t%d\t%d\t%d\t%s\n", t.Remote, t.Bridge, t.VNI, t.RxPackets, t.RxBytes, t.TxPackets, t.TxBytes, drops(t.Drops))
	}
	tw.Flush()
	formatKernelStats(w, s)
	fmt.Fprintf(w, "flood copies %d, internal port copies %d, umem lost frames %d\n", s.FloodCopies, s.TAPCopies, s.UMEMLostFrames)
	if len(s.Options) > 0 || s.OptionsOverflow > 0 {
		fmt.Fprintf(w, "received Geneve options:")
		for _, o := range s.Options {
			fmt.Fprintf(w, " %s/%s=%d", o.Class, o.Type, o.Count)
		}
		if s.OptionsOverflow > 0 {
			fmt.Fprintf(w, " (other kinds, not tracked: %d)", s.OptionsOverflow)
		}
		fmt.Fprintln(w)
	}
}

// formatKernelStats prints the kernel's side of every port: frames lost
// before the switch saw them (device drops, AF_XDP RX drops, the steering
// program's redirects without a socket) or after it sent them.
func formatKernelStats(w io.Writer, s *vswitch.Stats) {
	have := false
	for _, p := range s.Ports {
		have = have || p.Kernel != nil
	}
	if !have {
		return
	}
	fmt.Fprintln(w, "kernel counters:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tDEV RX DROP\tDEV TX DROP\tXSK RX DROP\tRX RING FULL\tFILL RING EMPTY\tRX INVALID\tTX INVALID\tTX RING EMPTY\tREDIRECTED\tNO SOCKET")
	for _, p := range s.Ports {
		k := p.Kernel
		if k == nil {
			continue
		}
		cols := []string{p.Name, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"}
		if d := k.Device; d != nil {
			cols[1], cols[2] = fmt.Sprint(d.RxDropped), fmt.Sprint(d.TxDropped)
		}
		if x := k.XSK; x != nil {
			cols[3], cols[6], cols[7] = fmt.Sprint(x.RxDropped), fmt.Sprint(x.RxInvalidDescs), fmt.Sprint(x.TxInvalidDescs)
			if x.RingStats {
				cols[4], cols[5], cols[8] = fmt.Sprint(x.RxRingFull), fmt.Sprint(x.RxFillRingEmpty), fmt.Sprint(x.TxRingEmpty)
			} else {
				cols[4], cols[5], cols[8] = "n/a", "n/a", "n/a"
			}
		}
		if st := k.Steer; st != nil {
			cols[9], cols[10] = fmt.Sprint(st.Redirected), fmt.Sprint(st.NoSocket)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	tw.Flush()
	for _, p := range s.Ports {
		if p.Kernel != nil && len(p.Kernel.Errors) > 0 {
			fmt.Fprintf(w, "%s: kernel counters not read: %s\n", p.Name, strings.Join(p.Kernel.Errors, "; "))
		}
	}
}

// offloadLines prints which offloads a port uses, one per line.
func offloadLines(w io.Writer, indent string, o []string) {
	for _, l := range o {
		fmt.Fprintf(w, "%soffload: %s\n", indent, l)
	}
}

// idleLine describes the pollers' idle policy: "poll", "sleep (max 50µs,
// step 1µs, poll after 2ms idle)", with the TX kick coalescing if on.
func idleLine(st vswitch.IdleStatus) string {
	s := st.Policy
	if s == "" {
		s = vswitch.IdlePoll
	}
	if st.Policy == vswitch.IdleSleep {
		s += fmt.Sprintf(" (max %s, step %s, poll after %s idle)", st.SleepMax, st.SleepStep, st.SleepIdle)
	}
	if st.KickFrames > 0 {
		s += fmt.Sprintf(", TX kicks every %d frames or %s", st.KickFrames, st.KickDelay)
	}
	return s
}

// formatTrace prints a trace: the frame, each step, the verdict and the
// outputs (with the outer headers of tunnel outputs).
func formatTrace(w io.Writer, r *vswitch.TraceResult) {
	fmt.Fprintf(w, "bridge %s, in_port %s: %s\n", r.Bridge, r.InPort, r.Frame)
	for i, s := range r.Steps {
		fmt.Fprintf(w, "%2d. %-7s %s\n", i+1, s.Step+":", s.Detail)
	}
	switch r.Verdict {
	case "drop":
		fmt.Fprintf(w, "verdict: drop (%s)\n", r.Drop)
		return
	default:
		fmt.Fprintf(w, "verdict: %s, %d output(s)\n", r.Verdict, len(r.Outputs))
	}
	for _, o := range r.Outputs {
		if o.Drop != "" {
			fmt.Fprintf(w, "  -> %s (%s): dropped there: %s\n", o.Port, o.Kind, o.Drop)
			continue
		}
		fmt.Fprintf(w, "  -> %s (%s), %d bytes\n", o.Port, o.Kind, o.Len)
		if g := o.Geneve; g != nil {
			opts := "none"
			if len(g.Options) > 0 {
				opts = strings.Join(g.Options, " ")
			}
			fmt.Fprintf(w, "     eth %s > %s, IP %s > %s ttl %d, UDP %d > %d (checksum %s)\n", g.SrcMAC, g.DstMAC, g.Src, g.Dst, g.TTL, g.SrcPort, g.DstPort, g.UDPCsum)
			fmt.Fprintf(w, "     Geneve vni %d proto %s options %s (outer headers %d bytes)\n", g.VNI, g.Proto, opts, g.HeaderLen)
		}
	}
}
