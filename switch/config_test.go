package vswitch

import (
	"fmt"
	"strings"
	"testing"
)

// issueYAML is the configuration of issue 4, as written.
const issueYAML = `underlay:
  interface: eth0            # the physical NIC
cpus: [1]                    # pollers are pinned here
bridges:
  - name: br1
    address: 10.0.0.1/24     # internal port br1 with this address; optional
    ports: [vm1]             # local AF_XDP ports; optional
    tunnels:
      - remote_ip: 192.168.203.149
        key: 5000            # VNI; 0 when omitted
`

func TestConfigIssueYAML(t *testing.T) {
	c, err := ParseConfig([]byte(issueYAML))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Bridges[0]
	if c.Underlay.Interface != "eth0" || len(c.CPUs) != 1 || c.CPUs[0] != 1 || b.Name != "br1" || b.VNI != 5000 ||
		b.Prefixes[0].String() != "10.0.0.1/24" || b.Ports[0] != "vm1" || b.Tunnels[0].Remote.String() != "192.168.203.149" {
		t.Errorf("parsed %+v / %+v", c, b)
	}
	if c.ControlSocket != DefaultControlSocket || c.LogLevel != "info" || c.UMEM.FrameSize != 2048 {
		t.Errorf("defaults: %q %q %d", c.ControlSocket, c.LogLevel, c.UMEM.FrameSize)
	}
}

func TestConfigOptions(t *testing.T) {
	c, err := ParseConfig([]byte(`underlay: {interface: eth0}
known_options: [{class: 0x0102, type: 0x80}]
bridges:
  - name: br1
    tunnels:
      - remote_ip: 2001:2::2
        options: [{class: 0x0102, type: 0x80, data: "0x0a0b0c0d"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Bridges[0].Tunnels[0].GenOptions
	if len(o) != 1 || o[0].Class != 0x0102 || o[0].Type != 0x80 || string(o[0].Data) != "\x0a\x0b\x0c\x0d" {
		t.Errorf("options %+v", o)
	}
	if !c.Known().Contains(0x0102, 0x80) || c.Bridges[0].VNI != 0 {
		t.Errorf("known options / VNI wrong")
	}
}

func TestConfigErrors(t *testing.T) {
	base := "underlay:\n  interface: eth0\nbridges:\n  - name: br1\n"
	cases := []struct{ yaml, want string }{
		{base + "    tunnels:\n      - remote_ip: 198.18.0.2\n      - remote_ip: x\n",
			`bridges[0].tunnels[1].remote_ip: "x" is not an IP address; write e.g. 192.0.2.1`},
		{base + "    tunnels:\n      - remote_ip: 198.18.0.2\n        key: -1\n", "bridges[0].tunnels[0].key: -1 is out of range"},
		{base + "    tunnels:\n      - remote_ip: 198.18.0.2\n        key: 1\n      - remote_ip: 198.18.0.3\n        key: 2\n",
			"bridges[0].tunnels[1].key: 2 differs from tunnels[0].key 1"},
		{base + "    tunnels:\n      - remote_ip: 198.18.0.2\n      - remote_ip: 198.18.0.2\n", "is also tunnels[0] of this bridge"},
		{base + "    tunnels:\n      - {}\n", "bridges[0].tunnels[0].remote_ip: missing"},
		{base + "    tunnels:\n      - remote_ip: 224.0.0.1\n", "is not a unicast address"},
		{base + "    address: 10.0.0.1\n", `bridges[0].address: "10.0.0.1" has no prefix length; write e.g. 10.0.0.1/24`},
		{base + "    ports: [eth0]\n", `bridges[0].ports[0]: "eth0" is already used by underlay.interface`},
		{base + "  - name: br1\n", `bridges[1].name: "br1" is also the name of bridges[0]`},
		{base + "    tunnels:\n      - remote_ip: 198.18.0.2\n  - name: br2\n    tunnels:\n      - remote_ip: 198.18.0.3\n",
			"bridges[1].tunnels[0].key: VNI 0 is also the key of bridges[0]"},
		{base + "    tunnels:\n      - remote_ip: 198.18.0.2\n        options: [{class: 0x1ffff, type: 1, data: \"0x01020304\"}]\n",
			"bridges[0].tunnels[0].options[0].class: 131071 is out of range"},
		{base + "    tunnels:\n      - remote_ip: 198.18.0.2\n        options: [{class: 1, type: 1, data: \"0x010203\"}]\n",
			"options[0].data: 3 bytes; option data is a multiple of 4 bytes"},
		{base + "    tunnels:\n      - remote_ip: 198.18.0.2\n        options: [{class: 1, type: 1, data: \"zz\"}]\n", `options[0].data: "zz" is not hex bytes`},
		{"bridges:\n  - name: br1\n    tunnels:\n      - remote_ip: 198.18.0.2\n", "underlay: missing, but bridges[0] has tunnels"},
		{"underlay:\n  interface: \"\"\nbridges:\n  - name: br1\n", "underlay.interface: missing"},
		{base + "    name2: x\n", "bridges[0].name2: unknown key; did you mean `name`?"},
		{"", "the file is empty"},
		{"bridges: []\n", "bridges: none configured"},
		{base + "cpus: [1, 1]\n", "cpus[1]: CPU 1 is listed twice"},
		{"underlay:\n  interface: eth0\n  local_ip: 198.18.0.1\nbridges:\n  - name: br1\n    tunnels:\n      - remote_ip: 2001:2::2\n",
			"2001:2::2 is IPv6, but underlay.local_ip has no address of that family"},
		{base + "    name: this-name-is-way-too-long\n", "bridges[0].name: given twice (lines 4 and 5); keep one"},
		{base + "umem: {frame_size: 1000}\n", "umem.frame_size: 1000 is not supported; write 2048 or 4096"},
		{base + "log_level: loud\n", `log_level: "loud" is not a level`},
		{base + "poller_policy: fifo\n", `poller_policy: "fifo" is not a policy; write normal or batch`},
		{"underlay:\n  interface: eth0\n  xdp_mode: fast\nbridges:\n  - name: br1\n", `underlay.xdp_mode: "fast" is not a mode; write auto, native or generic`},
		{base + "    mac: 01:00:00:00:00:01\n", `bridges[0].mac: "01:00:00:00:00:01" is not a unicast Ethernet address`},
		{base + "    adress: 10.0.0.1/24\n", "bridges[0].adress: unknown key; did you mean `address`?"},
		{"underlay:\n  interface: eth0\nbridgez: []\n", "bridgez: unknown key; did you mean `bridges`?"},
		{base + "frobnicate: 1\n", "frobnicate: unknown key; the keys here are bridges, busy_poll, control_socket, cpus, "},
		{base + "    ports: vm1\n", "bridges[0].ports: expected a list ([a, b], or one `- item` per line), got the value \"vm1\""},
		{base + "    mtu: big\n", `bridges[0].mtu: "big" is not a whole number`},
		{base + "busy_poll: sometimes\n", `busy_poll: "sometimes" is not true or false`},
		{base + "    tunnels: {remote_ip: 198.18.0.2}\n", "bridges[0].tunnels: expected a list"},
		{"underlay: [eth0]\nbridges:\n  - name: br1\n", "underlay: expected keys (key: value), got a list"},
		{"- a\n- b\n", "the file: expected keys (key: value), got a list"},
		{"underlay:\n  interface: eth0\n  ring_size: 65536\nbridges:\n  - name: br1\n",
			"underlay.ring_size: 65536 is not a power of two between 64 and 32768"},
		{base + "port_options: {ring_size: 32}\n", "port_options.ring_size: 32 is not a power of two between 64 and 32768"},
		{"base: &b {interface: eth0, xdp_mod: native}\n", "base: unknown key"},
		{"underlay:\n  <<: {interface: eth0, queus: 1}\nbridges:\n  - name: br1\n", "underlay.queus: unknown key; did you mean `queues`?"},
	}
	for _, c := range cases {
		_, err := ParseConfig([]byte(c.yaml))
		if err == nil {
			t.Errorf("accepted:\n%s", c.yaml)
			continue
		}
		if c.want == "" || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %q\nlacks %q\nfor:\n%s", err, c.want, c.yaml)
		}
	}
}

// TestConfigAllErrorsAtOnce: an unknown key does not hide the other
// problems; each is reported once, at its YAML path.
func TestConfigAllErrorsAtOnce(t *testing.T) {
	_, err := ParseConfig([]byte(`underlay:
  interface: eth0
  ring_size: 100
cpus: "1"
bridges:
  - name: br1
    adress: 10.0.0.1/24
    tunnels:
      - remote_ip: x
`))
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		"bridges[0].adress: unknown key; did you mean `address`?",
		`cpus: expected a list ([a, b], or one ` + "`- item`" + ` per line), got the value "1"`,
		"underlay.ring_size: 100 is not a power of two",
		`bridges[0].tunnels[0].remote_ip: "x" is not an IP address`,
	}
	lines := strings.Split(err.Error(), "\n")
	for _, w := range want {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%q reported %d times, want once:\n%v", w, n, err)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("%d problems reported, want %d:\n%v", len(lines), len(want), err)
	}
	for _, bad := range []string{"vswitch.", "[]int", "not found in type"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("error names a Go type (%q):\n%v", bad, err)
		}
	}
}

// TestConfigMerge: YAML merge keys work, and a key of the mapping itself
// overrides a merged one without being called a duplicate.
func TestConfigMerge(t *testing.T) {
	c, err := ParseConfig([]byte(`underlay:
  <<: {interface: eth1, queues: 1}
  interface: eth0
bridges:
  - name: br1
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Underlay.Interface != "eth0" || c.Underlay.Queues != 1 {
		t.Errorf("merged underlay %+v, want interface eth0 and queues 1", c.Underlay)
	}
	// An alias inside its own anchor: an error, not an endless walk.
	if _, err := ParseConfig([]byte("bridges: &a [*a]\n")); err == nil {
		t.Error("accepted a self-referencing alias")
	}
}

// TestConfigAliasBomb: aliases that multiply a mapping of unknown keys
// (10^4 copies of 500 keys) give a bounded report, not millions of lines.
func TestConfigAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a: &a {")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&b, "k%d: 1, ", i)
	}
	b.WriteString("}\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n")
	b.WriteString("underlay: {<<: [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]}\n")
	_, err := ParseConfig([]byte(b.String()))
	if err == nil {
		t.Fatal("accepted")
	}
	if n := strings.Count(err.Error(), "\n") + 1; n > maxYAMLProblems+2 {
		t.Errorf("%d problems reported, want at most %d", n, maxYAMLProblems+2)
	}
	if !strings.Contains(err.Error(), "more than 50 problems; fix these first") {
		t.Errorf("the report does not say it was cut short:\n%.300s", err)
	}
}

// FuzzParseConfig: any input gives a config or an error, never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(issueYAML))
	f.Add([]byte("underlay: {interface: eth0}\nbridges: [{name: br1, tunnels: [{remote_ip: 2001:2::2, options: [{class: 1, type: 2, data: \"0x01020304\"}]}]}]\n"))
	f.Add([]byte("underlay: &u {<<: *u, interface: eth0}\nbridges: &a [*a, {name: br1, adress: x}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil && len(c.Bridges) == 0 {
			t.Fatal("accepted a config without bridges")
		}
	})
}
