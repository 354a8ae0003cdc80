package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"xswitch/internal/capture"
	vswitch "xswitch/switch"
)

// TestBuildTraceFrame: the frames built from fields decode in tshark as
// asked, with good IP and L4 checksums.
func TestBuildTraceFrame(t *testing.T) {
	cases := []struct {
		kv map[string]string
		// tshark fields: addresses, protocol, ports, checksum statuses
		// (1: good, 0: bad), VLAN id.
		want string
	}{
		{map[string]string{"dl_src": "02:00:00:00:00:01", "dl_dst": "02:00:00:00:00:02", "nw_src": "198.19.0.1", "nw_dst": "198.19.0.2"},
			"198.19.0.1\t198.19.0.2\t1\t\t\t\t\t1\t\t\t1"},
		{map[string]string{"dl_src": "02:00:00:00:00:01", "dl_dst": "02:00:00:00:00:02", "dl_vlan": "10", "nw_src": "198.19.0.1", "nw_dst": "198.19.0.2", "nw_proto": "17", "tp_src": "1234", "tp_dst": "53"},
			"198.19.0.1\t198.19.0.2\t17\t1234\t53\t\t\t1\t1\t\t\t10"},
		{map[string]string{"dl_src": "02:00:00:00:00:01", "dl_dst": "02:00:00:00:00:02", "nw_src": "198.19.0.1", "nw_dst": "198.19.0.2", "nw_proto": "6", "tp_src": "40000", "tp_dst": "80"},
			"198.19.0.1\t198.19.0.2\t6\t\t\t40000\t80\t1\t\t1"},
		{map[string]string{"dl_src": "02:00:00:00:00:01", "dl_dst": "33:33:00:00:00:01", "nw_src": "2001:db8::1", "nw_dst": "ff02::1"},
			"2001:db8::1\tff02::1\t58\t\t\t\t\t\t\t\t1"},
		{map[string]string{"dl_src": "02:00:00:00:00:01", "dl_dst": "02:00:00:00:00:02", "nw_src": "2001:db8::1", "nw_dst": "2001:db8::2", "nw_proto": "17", "tp_src": "5", "tp_dst": "6"},
			"2001:db8::1\t2001:db8::2\t17\t5\t6\t\t\t\t1"},
	}
	var frames [][]byte
	for _, c := range cases {
		f, err := buildTraceFrame(c.kv)
		if err != nil {
			t.Fatalf("%v: %v", c.kv, err)
		}
		if len(f) < 60 {
			t.Errorf("%v: %d bytes", c.kv, len(f))
		}
		frames = append(frames, f)
	}
	pcap := filepath.Join(t.TempDir(), "frames.pcap")
	if err := capture.WritePcap(pcap, frames); err != nil {
		t.Fatal(err)
	}
	out, err := capture.Tshark(pcap, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=/t", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto", "-e", "udp.srcport", "-e", "udp.dstport",
		"-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "tcp.checksum.status",
		"-e", "icmp.checksum.status", "-e", "vlan.id", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "ipv6.nxt", "-e", "icmpv6.checksum.status")
	if err != nil {
		t.Skipf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("tshark decoded %d frames:\n%s", len(lines), out)
	}
	for i, l := range lines {
		f := strings.Split(l, "\t")
		// IPv6 rows: move the IPv6 fields where the IPv4 ones are.
		if f[12] != "" {
			f[0], f[1], f[2], f[10] = f[12], f[13], f[14], f[15]
		}
		got := strings.Join(f[:12], "\t")
		got = strings.TrimRight(got, "\t")
		if got != strings.TrimRight(cases[i].want, "\t") {
			t.Errorf("frame %d %v:\n got %q\nwant %q", i, cases[i].kv, got, cases[i].want)
		}
	}
}

func TestTraceArgs(t *testing.T) {
	b, kv, hx, err := parseTraceArgs([]string{"br1", "in_port=vm1,dl_src=02:00:00:00:00:01", "dl_dst=ff:ff:ff:ff:ff:ff"})
	if err != nil || b != "br1" || kv["in_port"] != "vm1" || kv["dl_src"] != "02:00:00:00:00:01" || hx != "" {
		t.Fatalf("%q %v %q %v", b, kv, hx, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"in_port=vm1"}, "give the bridge first"},
		{[]string{"br1"}, "give in_port=PORT"},
		{[]string{"br1", "in_port=vm1", "dl_foo=1"}, `unknown field "dl_foo"`},
		{[]string{"br1", "in_port=vm1", "--hex", "00", "dl_src=02:00:00:00:00:01"}, "--hex gives the whole frame; drop dl_src"},
		{[]string{"br1", "br2", "in_port=vm1"}, `unexpected argument "br2"`},
	} {
		if _, _, _, err := parseTraceArgs(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	for kv, want := range map[string]string{
		"dl_dst=02:00:00:00:00:02":                                       "give dl_src=MAC",
		"dl_src=02:00:00:00:00:01 dl_dst=zz":                             "dl_dst=zz: not an Ethernet MAC",
		"dl_src=02:00:00:00:00:01 dl_dst=02:00:00:00:00:02 nw_src=::1":   "nw_src=::1: write an IPv4 address",
		"dl_src=02:00:00:00:00:01 dl_dst=02:00:00:00:00:02 dl_vlan=5000": "dl_vlan=5000: write a VLAN id",
	} {
		m := map[string]string{}
		for _, f := range strings.Fields(kv) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		if kv == "dl_src=02:00:00:00:00:01 dl_dst=02:00:00:00:00:02 nw_src=::1" {
			m["dl_type"] = "0x0800"
		}
		if _, err := buildTraceFrame(m); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", kv, err, want)
		}
	}
}

// traceSwitch is a fake switch that answers traces.
type traceSwitch struct {
	fakeSwitch
	got *vswitch.TraceRequest
}

func (s traceSwitch) Trace(r vswitch.TraceRequest) (*vswitch.TraceResult, error) {
	*s.got = r
	return &vswitch.TraceResult{Bridge: r.Bridge, InPort: r.InPort, Frame: "f", Verdict: "unicast",
		Steps:   []vswitch.TraceStep{{Step: "lookup", Detail: "02:00:00:00:00:02 is on tunnel:198.18.0.2"}},
		Outputs: []vswitch.TraceOutput{{Port: "tunnel:198.18.0.2", Kind: "tunnel", Len: 110, Geneve: &vswitch.TraceGeneve{VNI: 5000, Src: "198.18.0.1", Dst: "198.18.0.2", DstPort: 6081}}}}, nil
}

// TestCtlTraceProtocol: ctl trace sends the frame it built (or the --hex
// one, of any length up to the body limit) and prints the reply.
func TestCtlTraceProtocol(t *testing.T) {
	sock := fmt.Sprintf("@xswitch-trace-test-%d", os.Getpid())
	srv, err := listenControl(sock, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	go srv.serve()
	var got vswitch.TraceRequest
	srv.attach(traceSwitch{got: &got})
	var out, errb bytes.Buffer
	if rc := mainArgs([]string{"ctl", "--socket", sock, "trace", "br1", "in_port=vm1", "dl_src=02:00:00:00:00:01", "dl_dst=02:00:00:00:00:02"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	if got.Bridge != "br1" || got.InPort != "vm1" || len(got.Frame) != 74 || !bytes.Equal(got.Frame[:12], []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}) {
		t.Errorf("request %+v", got)
	}
	for _, want := range []string{"1. lookup: 02:00:00:00:00:02 is on tunnel:198.18.0.2", "verdict: unicast, 1 output(s)", "-> tunnel:198.18.0.2 (tunnel), 110 bytes", "Geneve vni 5000"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	big := strings.Repeat("ab", 9000) // a jumbo frame: longer than a command line may be
	out.Reset()
	if rc := mainArgs([]string{"ctl", "--socket", sock, "trace", "br1", "in_port=eth0", "--hex", big, "--json"}, &out, &errb); rc != 0 {
		t.Fatalf("--hex: rc %d: %s", rc, errb.String())
	}
	if len(got.Frame) != 9000 || !strings.Contains(out.String(), `"verdict": "unicast"`) {
		t.Errorf("--hex: frame of %d bytes; output %s", len(got.Frame), out.String())
	}
	srv.attach(fakeSwitch{})
	errb.Reset()
	if rc := mainArgs([]string{"ctl", "--socket", sock, "trace", "br1", "in_port=vm1", "--hex", "0200000000020200000000010800"}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "cannot trace") {
		t.Errorf("a switch without trace: rc %d %s", rc, errb.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := request(ctx, sock, "trace\n{not json"); err == nil || !strings.Contains(err.Error(), "bad request") {
		t.Errorf("bad body: %v", err)
	}
}
