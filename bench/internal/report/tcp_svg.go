package report

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// tcpPanel draws the TCP chart: one group per case (host → host, VM → VM
// with default offloads and with TX off; 1 and 4 streams), xswitch and OVS
// side by side, Gbit/s. A case that moved no data shows "0" and why in its
// tooltip. It returns the SVG elements and their width and height.
func (rep *Report) tcpPanel() (string, float64, float64) {
	t := rep.TCP
	var cases []TCPResult // one per case, in table order
	seen := map[string]bool{}
	for _, r := range t.sorted() {
		if !seen[r.Case()] {
			seen[r.Case()] = true
			cases = append(cases, r)
		}
	}
	systems := []string{SystemXswitch, SystemOVS}
	max := 0.0
	for _, r := range t.Results {
		max = math.Max(max, r.Gbps)
	}
	step := niceStep(max, 6)
	top := math.Ceil(max/step) * step
	if top == 0 {
		top = 1
	}
	const (
		left, right, topPad, bottom = 70.0, 20.0, 60.0, 90.0
		barW, barGap, groupGap      = 30.0, 4.0, 34.0
		plotH                       = 280.0
	)
	groupW := float64(len(systems))*(barW+barGap) - barGap
	width := math.Max(760, left+right+float64(len(cases))*(groupW+groupGap)+groupGap)
	height := topPad + plotH + bottom
	y := func(v float64) float64 { return topPad + plotH - v/top*plotH }

	var b strings.Builder
	title := fmt.Sprintf("TCP Gbit/s (iperf3, receiver), both hosts' switches on CPU %d, median of %d runs of %.0f s", t.SwitchCPU, t.Runs, t.DurationSec)
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	lx := left
	for _, s := range systems {
		fmt.Fprintf(&b, `<rect x="%.0f" y="34" width="12" height="12" fill="%s"/><text x="%.0f" y="44">%s</text>`+"\n", lx, systemColors[s], lx+16, html.EscapeString(systemNames[s]))
		lx += 24 + 7*float64(len(systemNames[s]))
	}
	for v := 0.0; v <= top+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", left, width-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, trimFloat(v))
	}
	fmt.Fprintf(&b, `<text transform="translate(18 %.0f) rotate(-90)" text-anchor="middle">Gbit/s</text>`+"\n", topPad+plotH/2)
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#000000"/>`+"\n", left, width-right, y(0), y(0))
	x := left + groupGap
	for _, c := range cases {
		for i, s := range systems {
			bx := x + float64(i)*(barW+barGap)
			r := t.Find(s, c.Path, c.Offload, c.Streams)
			switch {
			case r == nil:
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#999999">–</text>`+"\n", bx+barW/2, y(0)-4)
			case r.Gbps == 0:
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="%s"><title>%s %s: %s</title>0</text>`+"\n",
					bx+barW/2, y(0)-4, systemColors[s], s, html.EscapeString(c.Case()), html.EscapeString(r.Error))
			default:
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.1f" fill="%s"><title>%s %s: %.2f Gbit/s (spread %.1f%%)</title></rect>`+"\n",
					bx, y(r.Gbps), barW, y(0)-y(r.Gbps), systemColors[s], s, html.EscapeString(c.Case()), r.Gbps, r.SpreadPct)
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%.2f</text>`+"\n", bx+barW/2, y(r.Gbps)-3, r.Gbps)
			}
		}
		cx := x + groupW/2
		label := strings.Replace(c.Path, "-", " → ", 1)
		sub := fmt.Sprintf("%d stream", c.Streams)
		if c.Streams != 1 {
			sub += "s"
		}
		if c.Offload != "" {
			sub = c.Offload + ", " + sub
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", cx, y(0)+18, html.EscapeString(label))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11">%s</text>`+"\n", cx, y(0)+34, html.EscapeString(sub))
		x += groupW + groupGap
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" fill="#555555">%s</text>`+"\n", left, height-14,
		html.EscapeString(fmt.Sprintf("two hosts joined by Geneve (key 5000) over a Linux bridge; iperf3 and the VMs on CPU %d; %s; kernel %s",
			t.AppCPU, strings.TrimSpace(rep.Host.CPU), rep.Host.Kernel)))
	return b.String(), width, height
}
