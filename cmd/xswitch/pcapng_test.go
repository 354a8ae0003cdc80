package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"xswitch/internal/capture"
	vswitch "xswitch/switch"
)

func testStream(t testing.TB) ([]byte, [][]byte) {
	t.Helper()
	var frames [][]byte
	for _, kv := range []map[string]string{
		{"dl_src": "02:00:00:00:00:01", "dl_dst": "02:00:00:00:00:02", "nw_src": "198.19.0.1", "nw_dst": "198.19.0.2"},
		{"dl_src": "02:00:00:00:00:02", "dl_dst": "02:00:00:00:00:01", "nw_src": "198.19.0.2", "nw_dst": "198.19.0.1", "nw_proto": "17", "tp_src": "40000", "tp_dst": "40001"},
	} {
		f, err := buildTraceFrame(kv)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	b := pcapngHeader("vm1", 256)
	b = appendEPB(b, vswitch.CapturedFrame{Time: 1_700_000_000_123456789, Outbound: false, OrigLen: len(frames[0]), Data: frames[0]})
	b = appendEPB(b, vswitch.CapturedFrame{Time: 1_700_000_000_223456789, Outbound: true, OrigLen: len(frames[1]) + 100, Data: frames[1][:61]})
	b = append(b, isb(captureStats{Start: 1_700_000_000_000000000, End: 1_700_000_001_000000000, Delivered: 2, Lost: 5})...)
	return b, frames
}

// TestPcapngTshark: the stream ctl capture writes is read by tshark: the
// interface name, nanosecond times, direction flags, cut frames.
func TestPcapngTshark(t *testing.T) {
	b, _ := testStream(t)
	path := filepath.Join(t.TempDir(), "c.pcapng")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := capture.Tshark(path, "-T", "fields", "-E", "separator=,", "-e", "frame.interface_name", "-e", "frame.packet_flags_direction",
		"-e", "frame.time_epoch", "-e", "frame.len", "-e", "frame.cap_len", "-e", "ip.src", "-e", "_ws.col.Protocol")
	if err != nil {
		t.Skipf("tshark: %v", err)
	}
	want := "vm1,0x00000001,1700000000.123456789,74,74,198.19.0.1,ICMP\nvm1,0x00000002,1700000000.223456789,174,61,198.19.0.2,UDP\n"
	if out != want {
		t.Errorf("tshark:\n%s\nwant:\n%s", out, want)
	}
	scan := &pcapngScan{}
	// Any split of the stream into writes gives the same counts.
	for i := 0; i < len(b); i += 7 {
		if _, err := scan.Write(b[i:min(i+7, len(b))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := scan.check(); err != nil || scan.Frames != 2 || scan.In != 1 || scan.Out != 1 || scan.Lost != 5 || !scan.Finished {
		t.Errorf("scan %+v %v", scan, err)
	}
}

// FuzzPcapngScan: the client's reader of the stream never panics, and
// gives the same result however the bytes are split into writes.
func FuzzPcapngScan(f *testing.F) {
	b, _ := testStream(f)
	f.Add(b, 5)
	f.Add(b[:len(b)-3], 1)
	f.Add([]byte{6, 0, 0, 0, 12, 0, 0, 0, 12, 0, 0, 0}, 3)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		one := &pcapngScan{}
		_, err1 := one.Write(b)
		err1c := one.check()
		if split <= 0 {
			split = 1
		}
		many := &pcapngScan{}
		var err2 error
		for i := 0; i < len(b) && err2 == nil; i += split {
			_, err2 = many.Write(b[i:min(i+split, len(b))])
		}
		err2c := many.check()
		if (err1 == nil) != (err2 == nil) || (err1c == nil) != (err2c == nil) {
			t.Fatalf("one write: %v/%v, split by %d: %v/%v", err1, err1c, split, err2, err2c)
		}
		if err1 == nil && (one.Frames != many.Frames || one.In != many.In || one.Out != many.Out || one.Lost != many.Lost) {
			t.Fatalf("one write %+v, split %+v", one, many)
		}
	})
}

func TestCaptureArgs(t *testing.T) {
	req, out, err := parseCaptureArgs([]string{"vm1", "-c", "10", "-d", "2s", "--snaplen", "128", "-w", "-"})
	if err != nil || req.Target != "vm1" || req.Count != 10 || req.Duration != 2000 || req.Snaplen != 128 || out != "-" {
		t.Fatalf("%+v %q %v", req, out, err)
	}
	if req, _, err := parseCaptureArgs([]string{"tunnel:198.18.0.2", "-d", "3", "-w", "f"}); err != nil || req.Duration != 3000 {
		t.Fatalf("-d 3: %+v %v", req, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-w", "f"}, "give the port"},
		{[]string{"vm1"}, "give -w FILE"},
		{[]string{"vm1", "-c", "x", "-w", "f"}, "positive frame count"},
		{[]string{"vm1", "-d", "soon", "-w", "f"}, "write a duration"},
		{[]string{"vm1", "--snaplen", "10", "-w", "f"}, "--snaplen 10"},
		{[]string{"vm1", "vm2", "-w", "f"}, `unexpected argument "vm2"`},
		{[]string{"vm1", "-w"}, "-w needs a value"},
	} {
		if _, _, err := parseCaptureArgs(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
