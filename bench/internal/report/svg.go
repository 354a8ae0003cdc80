package report

import (
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

var systemColors = map[string]string{
	SystemXswitch: "#2b7bba",
	SystemOVS:     "#e08a1e",
	SystemCeiling: "#7f7f7f",
}

var systemNames = map[string]string{
	SystemXswitch: "xswitch",
	SystemOVS:     "Open vSwitch 3.1 AF_XDP",
	SystemCeiling: "xsk l2fwd ceiling (no switching)",
}

// niceStep returns a tick step (1, 2 or 5 × 10^k) for about n ticks up to max.
func niceStep(max float64, n int) float64 {
	if max <= 0 {
		return 1
	}
	raw := max / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// SVG renders a grouped bar chart of Mpps: one group per path and frame size
// (xswitch and OVS side by side), with the l2fwd ceiling of that frame size
// as a third bar; below it, when the run has a TCP part, a chart of its
// Gbit/s (tcpPanel). The result is a standalone SVG document.
func (rep *Report) SVG() string {
	var body strings.Builder
	width, height := 760.0, 0.0
	if len(rep.Results) > 0 || rep.TCP == nil {
		p, w, h := rep.mppsPanel()
		body.WriteString(p)
		width, height = math.Max(width, w), h
	}
	if rep.TCP != nil && len(rep.TCP.Results) > 0 {
		p, w, h := rep.tcpPanel()
		fmt.Fprintf(&body, "<g transform=\"translate(0 %.0f)\">\n%s</g>\n", height, p)
		width, height = math.Max(width, w), height+h
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}

// mppsPanel draws the Mpps chart; it returns the SVG elements and their
// width and height.
func (rep *Report) mppsPanel() (string, float64, float64) {
	type group struct {
		path string
		size int
	}
	var groups []group
	seen := map[group]bool{}
	for _, r := range rep.sorted() {
		g := group{r.Path, r.Size}
		if r.System == SystemCeiling || seen[g] {
			continue
		}
		seen[g] = true
		groups = append(groups, g)
	}
	if len(groups) == 0 { // only a ceiling measured
		for _, r := range rep.sorted() {
			g := group{r.Path, r.Size}
			if !seen[g] {
				seen[g] = true
				groups = append(groups, g)
			}
		}
	}
	systems := []string{SystemXswitch, SystemOVS, SystemCeiling}
	value := func(sys string, g group) (float64, *Result) {
		path := g.path
		if sys == SystemCeiling {
			path = PathFwd
		}
		if r := rep.find(sys, path, g.size); r != nil {
			return r.Mpps, r
		}
		return 0, nil
	}
	max := 0.0
	for _, g := range groups {
		for _, s := range systems {
			if v, _ := value(s, g); v > max {
				max = v
			}
		}
	}
	step := niceStep(max, 6)
	top := math.Ceil(max/step) * step
	if top == 0 {
		top = 1
	}

	const (
		left, right, topPad, bottom = 70.0, 20.0, 60.0, 90.0
		barW, barGap, groupGap      = 26.0, 4.0, 28.0
		plotH                       = 320.0
	)
	groupW := float64(len(systems))*(barW+barGap) - barGap
	width := left + right + float64(len(groups))*(groupW+groupGap) + groupGap
	if width < 760 {
		width = 760
	}
	height := topPad + plotH + bottom
	y := func(v float64) float64 { return topPad + plotH - v/top*plotH }

	var b strings.Builder
	title := fmt.Sprintf("Forwarded Mpps, one switch core (CPU %d), median of %d runs — %s", rep.SwitchCPU, rep.Runs, rep.Time.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	// Legend.
	lx := left
	for _, s := range systems {
		fmt.Fprintf(&b, `<rect x="%.0f" y="34" width="12" height="12" fill="%s"/><text x="%.0f" y="44">%s</text>`+"\n", lx, systemColors[s], lx+16, html.EscapeString(systemNames[s]))
		lx += 24 + 7*float64(len(systemNames[s]))
	}
	// Axis and grid.
	for v := 0.0; v <= top+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", left, width-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, trimFloat(v))
	}
	fmt.Fprintf(&b, `<text transform="translate(18 %.0f) rotate(-90)" text-anchor="middle">Mpps</text>`+"\n", topPad+plotH/2)
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#000000"/>`+"\n", left, width-right, y(0), y(0))
	// Bars.
	x := left + groupGap
	for _, g := range groups {
		for i, s := range systems {
			v, r := value(s, g)
			bx := x + float64(i)*(barW+barGap)
			if r == nil {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#999999">–</text>`+"\n", bx+barW/2, y(0)-4)
				continue
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.0f" height="%.1f" fill="%s"><title>%s %s %d B: %.3f Mpps (spread %.1f%%)</title></rect>`+"\n",
				bx, y(v), barW, y(0)-y(v), systemColors[s], s, g.path, g.size, v, r.SpreadPct)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%.2f</text>`+"\n", bx+barW/2, y(v)-3, v)
		}
		cx := x + groupW/2
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", cx, y(0)+18, html.EscapeString(g.path))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d B</text>`+"\n", cx, y(0)+34, g.size)
		x += groupW + groupGap
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" fill="#555555">%s</text>`+"\n", left, height-14,
		html.EscapeString(fmt.Sprintf("veth, 1 queue, generator on CPU %d; %s; kernel %s", rep.GenCPU, strings.TrimSpace(rep.Host.CPU), rep.Host.Kernel)))
	return b.String(), width, height
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

// WriteSVG writes the chart to path.
func (rep *Report) WriteSVG(path string) error {
	if err := os.WriteFile(path, []byte(rep.SVG()), 0o644); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}
