package vswitch

import (
	"slices"
	"strings"
	"testing"

	"xswitch/flowtable"
)

func mustParse(t *testing.T, y string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	return c
}

const diffBase = `underlay: {interface: eth0}
bridges:
  - name: br1
    ports: [vm1, vm2]
    tunnels: [{remote_ip: 198.18.0.2}, {remote_ip: 198.18.0.3}]
  - name: br2
    internal: false
    ports: [vm3]
    tunnels: [{remote_ip: 198.18.0.2, key: 7}]
`

// TestDiffConfig: what a reload adds, removes and keeps (bridges, ports
// and tunnels), by name; a tunnel whose key or options change is another
// tunnel.
func TestDiffConfig(t *testing.T) {
	old := mustParse(t, diffBase)
	for _, c := range []struct {
		name, cfg               string
		added, removed, changed []string
		kept                    int
	}{
		{name: "same", cfg: diffBase, kept: 8},
		{name: "add tunnel and port", cfg: strings.Replace(strings.Replace(diffBase, "{remote_ip: 198.18.0.3}]", "{remote_ip: 198.18.0.3}, {remote_ip: 198.18.0.4}]", 1), "[vm1, vm2]", "[vm1, vm2, vm4]", 1),
			added: []string{"port vm4 (bridge br1)", "tunnel 198.18.0.4 (bridge br1, key 0)"}, kept: 8},
		{name: "remove bridge", cfg: strings.Split(diffBase, "  - name: br2")[0],
			removed: []string{"bridge br2", "port vm3 (bridge br2)", "tunnel 198.18.0.2 (bridge br2, key 7)"}, kept: 5},
		{name: "key change", cfg: strings.Replace(diffBase, "key: 7", "key: 8", 1),
			added: []string{"tunnel 198.18.0.2 (bridge br2, key 8)"}, removed: []string{"tunnel 198.18.0.2 (bridge br2, key 7)"}, kept: 7},
		{name: "options change", cfg: strings.Replace(diffBase, "{remote_ip: 198.18.0.3}", "{remote_ip: 198.18.0.3, options: [{class: 1, type: 2, data: \"0x01020304\"}]}", 1),
			added: []string{"tunnel 198.18.0.3 (bridge br1, key 0, 1 options)"}, removed: []string{"tunnel 198.18.0.3 (bridge br1, key 0)"}, kept: 7},
		{name: "port moves", cfg: strings.Replace(strings.Replace(diffBase, "[vm1, vm2]", "[vm1]", 1), "[vm3]", "[vm3, vm2]", 1),
			changed: []string{"port vm2 moved to bridge br2"}, kept: 7},
		{name: "internal toggled", cfg: strings.Replace(diffBase, "    internal: false\n", "", 1),
			added: []string{"internal port br2"}, kept: 8},
		{name: "fdb and known options", cfg: diffBase + "fdb: {max_entries: 100}\nknown_options: [{class: 1, type: 0x80}]\n",
			changed: []string{"fdb (MAC tables rebuilt, entries kept)", "known_options"}, kept: 8},
		{name: "statics", cfg: strings.Replace(diffBase, "    ports: [vm1, vm2]\n", "    ports: [vm1, vm2]\n    static_macs: [{mac: \"02:00:00:00:00:01\", port: vm1}]\n", 1),
			changed: []string{"static_macs of bridge br1"}, kept: 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := diffConfig(old, mustParse(t, c.cfg))
			if err != nil {
				t.Fatal(err)
			}
			var r ReloadResult
			p.describe(&r)
			slices.Sort(r.Added)
			slices.Sort(r.Removed)
			slices.Sort(c.added)
			slices.Sort(c.removed)
			if !slices.Equal(r.Added, c.added) || !slices.Equal(r.Removed, c.removed) || !slices.Equal(r.Changed, c.changed) || r.Kept != c.kept {
				t.Errorf("got added %q removed %q changed %q kept %d\nwant added %q removed %q changed %q kept %d",
					r.Added, r.Removed, r.Changed, r.Kept, c.added, c.removed, c.changed, c.kept)
			}
		})
	}
}

// TestDiffRestartOnly: settings a reload cannot apply are refused, each
// named.
func TestDiffRestartOnly(t *testing.T) {
	old := mustParse(t, diffBase)
	nc := mustParse(t, strings.Replace(diffBase, "underlay: {interface: eth0}", "underlay: {interface: eth1}\ncpus: [0]\numem: {frames: 8192}", 1))
	_, err := diffConfig(old, nc)
	if err == nil {
		t.Fatal("no error")
	}
	for _, f := range []string{"underlay: changed", "cpus: changed", "umem: changed"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error lacks %q: %v", f, err)
		}
	}
}

// TestStaticMACConfig: static_macs are checked, each problem at its path.
func TestStaticMACConfig(t *testing.T) {
	good := mustParse(t, strings.Replace(diffBase, "    ports: [vm1, vm2]\n",
		"    ports: [vm1, vm2]\n    static_macs: [{mac: \"02:00:00:00:00:01\", port: vm1}, {mac: \"02-00-00-00-00-02\", tunnel: 198.18.0.3}, {mac: \"02:00:00:00:00:03\", port: br1}]\n", 1))
	sm := good.Bridges[0].StaticMACs
	if sm[0].Addr != flowtable.MAC(0x020000000001) || sm[1].Remote.String() != "198.18.0.3" || sm[2].Port != "br1" {
		t.Errorf("parsed %+v", sm)
	}
	for _, c := range []struct{ statics, want string }{
		{`[{mac: "01:00:00:00:00:01", port: vm1}]`, "bridges[0].static_macs[0].mac: \"01:00:00:00:00:01\" is not a unicast"},
		{`[{mac: "02:00:00:00:00:01", port: vm3}]`, "bridges[0].static_macs[0].port: \"vm3\" is not a port of bridge br1"},
		{`[{mac: "02:00:00:00:00:01", tunnel: 198.18.0.9}]`, "bridges[0].static_macs[0].tunnel: 198.18.0.9 is not the remote_ip of a tunnel of bridge br1"},
		{`[{mac: "02:00:00:00:00:01"}]`, "bridges[0].static_macs[0]: no destination"},
		{`[{mac: "02:00:00:00:00:01", port: vm1, tunnel: 198.18.0.2}]`, "bridges[0].static_macs[0]: both port and tunnel given"},
		{`[{mac: "02:00:00:00:00:01", port: vm1}, {mac: "02:00:00:00:00:01", port: vm2}]`, "bridges[0].static_macs[1].mac: 02:00:00:00:00:01 is also static_macs[0]"},
		{`[{mac: "02:00:00:00:00:01", prot: vm1}]`, "prot"},
	} {
		_, err := ParseConfig([]byte(strings.Replace(diffBase, "    ports: [vm1, vm2]\n", "    ports: [vm1, vm2]\n    static_macs: "+c.statics+"\n", 1)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("static_macs %s: error %v, want %q", c.statics, err, c.want)
		}
	}
}
