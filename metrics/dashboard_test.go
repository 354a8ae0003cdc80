package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// dashboard is the part of a Grafana dashboard model the test reads.
type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int             `json:"id"`
		Type       string          `json:"type"`
		Title      string          `json:"title"`
		Datasource *dashDatasource `json:"datasource"`
		GridPos    *struct{ X, Y, W, H int }
		Targets    []struct {
			RefID      string          `json:"refId"`
			Expr       string          `json:"expr"`
			Datasource *dashDatasource `json:"datasource"`
		} `json:"targets"`
	} `json:"panels"`
}

type dashDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// TestGrafanaDashboard: docs/grafana-xswitch.json is a dashboard model
// whose data source is the ${DS_PROMETHEUS} variable, with the panels the
// operations guide promises, querying only metrics the collector makes.
// (The e2e test TestMetricsPrometheus runs its queries on a real
// Prometheus.)
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../docs/grafana-xswitch.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 {
		t.Errorf("title %q uid %q schemaVersion %d: want all set (schema 30+)", d.Title, d.UID, d.SchemaVersion)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		hasDS = hasDS || (v.Name == "DS_PROMETHEUS" && v.Type == "datasource" && v.Query == "prometheus")
	}
	if !hasDS {
		t.Errorf("no datasource variable DS_PROMETHEUS of type prometheus")
	}
	known := emittedNames(t)
	ids := map[int]bool{}
	exprs := map[string]string{} // expr -> panel type
	nameRE := regexp.MustCompile(`xswitch_[a-z_]+`)
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or reused", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${DS_PROMETHEUS}" || tg.RefID == "" {
				t.Errorf("panel %q query %q: datasource %+v refId %q", p.Title, tg.Expr, tg.Datasource, tg.RefID)
			}
			for _, n := range nameRE.FindAllString(tg.Expr, -1) {
				if !known[n] {
					t.Errorf("panel %q queries %s, which the collector does not make", p.Title, n)
				}
			}
			exprs[tg.Expr] = p.Type
		}
	}
	for _, want := range []struct{ metric, panelType string }{
		{"xswitch_port_rx_packets_total", "timeseries"}, {"xswitch_port_tx_packets_total", "timeseries"},
		{"xswitch_port_drops_total", "timeseries"}, {"xswitch_tunnel_drops_total", "timeseries"},
		{"xswitch_xsk_rx_dropped_total", "timeseries"}, {"xswitch_xsk_rx_ring_full_total", "timeseries"},
		{"xswitch_umem_free_frames", "timeseries"}, {"xswitch_fdb_entries", "timeseries"},
		{"xswitch_poller_batch_size_bucket", "heatmap"},
	} {
		found := false
		for e, typ := range exprs {
			found = found || (strings.Contains(e, want.metric) && typ == want.panelType)
		}
		if !found {
			t.Errorf("no %s panel of %s", want.panelType, want.metric)
		}
	}
}

// emittedNames are the sample names the collector makes from the fake
// source (histograms as _bucket, _sum and _count).
func emittedNames(t *testing.T) map[string]bool {
	t.Helper()
	reg, _ := newRegistry(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		out[n] = true
		if mf.GetType().String() == "HISTOGRAM" {
			out[n+"_bucket"], out[n+"_sum"], out[n+"_count"] = true, true, true
		}
	}
	return out
}
