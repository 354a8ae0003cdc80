package report

import (
	"bytes"
	"encoding/xml"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedianSpread(t *testing.T) {
	cases := []struct {
		in             []float64
		median, spread float64
	}{
		{nil, 0, 0},
		{[]float64{2}, 2, 0},
		{[]float64{3, 1, 2}, 2, 100},
		{[]float64{4, 1, 3, 2}, 2.5, 120},
		{[]float64{0, 0}, 0, 0},
	}
	for _, c := range cases {
		in := append([]float64(nil), c.in...)
		if m := Median(c.in); m != c.median {
			t.Errorf("Median(%v) = %v, want %v", c.in, m, c.median)
		}
		if s := Spread(c.in); math.Abs(s-c.spread) > 1e-9 {
			t.Errorf("Spread(%v) = %v, want %v", c.in, s, c.spread)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("input modified")
			}
		}
	}
}

func sample() *Report {
	rep := &Report{Time: time.Date(2026, 11, 24, 20, 0, 0, 0, time.UTC), Runs: 3, SwitchCPU: 1, Host: Host{Kernel: "6.18", CPU: "test <cpu> & co"}}
	add := func(sys, path string, size int, runs []float64, offered []float64, sinkLen int) {
		r := Result{System: sys, Path: path, Size: size, RunsMpps: runs, SinkFrameLen: sinkLen}
		r.Finish(offered)
		rep.Results = append(rep.Results, r)
	}
	add(SystemXswitch, PathEncap, 64, []float64{1.6, 1.5, 1.7}, []float64{2, 2, 2}, 114)
	add(SystemOVS, PathEncap, 64, []float64{1.0, 0.9, 1.1}, []float64{2, 2, 2}, 114)
	add(SystemCeiling, PathFwd, 64, []float64{2.0, 2.0, 2.0}, []float64{2, 2, 2}, 64)
	add(SystemXswitch, PathDecap, 64, []float64{1.0, 1.0, 1.0}, []float64{2, 2, 2}, 64)
	add(SystemOVS, PathDecap, 64, []float64{0.8, 0.8, 0.8}, []float64{2, 2, 2}, 64)
	rep.Results = append(rep.Results, Result{System: SystemOVS, Path: PathLocal, Size: 512, Error: "ovs failed\nmore"})
	rep.Compute()
	return rep
}

func TestFinishAndCompute(t *testing.T) {
	rep := sample()
	x := rep.find(SystemXswitch, PathEncap, 64)
	if x.Mpps != 1.6 || math.Abs(x.Gbps-1.6*114*8/1000) > 1e-9 || math.Abs(x.LossPct-20) > 1e-9 {
		t.Fatalf("encap result %+v", x)
	}
	if math.Abs(x.RatioOVS-1.6) > 1e-9 || math.Abs(x.RatioCeiling-0.8) > 1e-9 {
		t.Fatalf("ratios %v %v", x.RatioOVS, x.RatioCeiling)
	}
	if c := rep.find(SystemCeiling, PathFwd, 64); c.RatioOVS != 0 || c.RatioCeiling != 0 {
		t.Fatalf("ceiling has ratios: %+v", c)
	}
	want := map[string]string{
		"encap ovs": "met (1.60×)", "encap l2fwd": "NOT met (0.80×)",
		"decap ovs": "NOT met (1.25×)", "decap l2fwd": "NOT met (0.50×)",
	}
	if len(rep.Goals) != 4 {
		t.Fatalf("%d goals", len(rep.Goals))
	}
	for _, g := range rep.Goals {
		if v := g.Verdict(); v != want[g.Path+" "+g.Against] {
			t.Errorf("goal %s %s: %s, want %s", g.Path, g.Against, v, want[g.Path+" "+g.Against])
		}
	}
	empty := &Report{}
	empty.Compute()
	for _, g := range empty.Goals {
		if !g.Missing || g.Met || g.Verdict() != "not measured" {
			t.Errorf("empty report goal %+v", g)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	rep := sample()
	p := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSON(p); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Results) != len(rep.Results) || got.Results[0].RatioOVS != rep.Results[0].RatioOVS || !got.Time.Equal(rep.Time) {
		t.Fatalf("round trip: %+v", got.Results[0])
	}
	if got.Results[5].Error == "" || len(got.Goals) != 4 {
		t.Fatalf("lost fields: %+v", got)
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	sample().Table(&b)
	out := b.String()
	for _, s := range []string{"encap", "1.600", "1.60×", "0.80×", "error: ovs failed", "NOT met (0.50×)", "20.0%"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "more") {
		t.Errorf("table shows more than the error's first line:\n%s", out)
	}
	// Order: encap before decap before local; xswitch before ovs.
	if strings.Index(out, "encap") > strings.Index(out, "decap") || strings.Index(out, "decap") > strings.Index(out, "local") {
		t.Errorf("order:\n%s", out)
	}
}

func TestSVG(t *testing.T) {
	s := sample().SVG()
	// Well-formed XML.
	d := xml.NewDecoder(strings.NewReader(s))
	rects := 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed XML: %v\n%s", err, s)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// background + 3 legend boxes + bars: encap 3, decap 3 (ceiling 64 drawn in each group); local has no figure.
	if rects != 1+3+6 {
		t.Errorf("%d rects, want 10", rects)
	}
	for _, want := range []string{"1.60", "0.80", "encap", "decap", "64 B", "&lt;cpu&gt; &amp; co", "Mpps"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if niceStep(1.7, 6) != 0.5 || niceStep(10, 5) != 2 || niceStep(0, 5) != 1 {
		t.Errorf("niceStep: %v %v", niceStep(1.7, 6), niceStep(10, 5))
	}
}
