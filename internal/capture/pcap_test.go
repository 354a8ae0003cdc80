package capture_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"xswitch/internal/capture"
)

// TestParsePcap: frames written by WritePcap come back byte for byte; a
// record still being written is left out; big-endian and nanosecond files
// are read; anything else is an error, not a panic.
func TestParsePcap(t *testing.T) {
	frames := [][]byte{innerUDP(1, 9), {}, bytes.Repeat([]byte{0xab}, 1514)}
	path := filepath.Join(t.TempDir(), "f.pcap")
	if err := capture.WritePcap(path, frames); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := capture.ParsePcap(b)
	if err != nil || !equalFrames(got, frames) {
		t.Fatalf("ParsePcap = %d frames, %v; want the %d written", len(got), err, len(frames))
	}
	for cut := 1; cut <= 16+1514; cut += 97 {
		got, err := capture.ParsePcap(b[:len(b)-cut])
		if err != nil || !equalFrames(got, frames[:2]) {
			t.Errorf("cut by %d: %d frames, %v; want the first 2", cut, len(got), err)
		}
	}
	// The same file big-endian, with the nanosecond magic.
	be := []byte{0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 1}
	for _, f := range frames {
		be = binary.BigEndian.AppendUint64(be, 0)
		be = binary.BigEndian.AppendUint32(be, uint32(len(f)))
		be = binary.BigEndian.AppendUint32(be, uint32(len(f)))
		be = append(be, f...)
	}
	if got, err := capture.ParsePcap(be); err != nil || !equalFrames(got, frames) {
		t.Errorf("big-endian nanosecond file: %d frames, %v", len(got), err)
	}
	for name, bad := range map[string][]byte{
		"short header": b[:23],
		"pcapng":       append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, b[4:]...),
		"huge record":  append(append([]byte{}, b[:24]...), 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0),
		"link type any (113)": func() []byte {
			c := append([]byte{}, b...)
			binary.LittleEndian.PutUint32(c[20:], 113)
			return c
		}(),
		"frame cut by the snap length": func() []byte {
			c := append([]byte{}, b...)
			binary.LittleEndian.PutUint32(c[24+12:], binary.LittleEndian.Uint32(c[24+8:])+1)
			return c
		}(),
	} {
		if got, err := capture.ParsePcap(bad); err == nil {
			t.Errorf("%s: no error (%d frames)", name, len(got))
		}
	}
}

func equalFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// FuzzParsePcap: any input gives frames or an error, never a panic; the
// frames lie inside the input, and written again they read back the same.
func FuzzParsePcap(f *testing.F) {
	seed := capture.EncodePcap([][]byte{innerUDP(1, 9), {1, 2, 3}})
	f.Add(seed)
	f.Add(seed[:30])
	f.Add([]byte{0xa1, 0xb2, 0xc3, 0xd4})
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := capture.ParsePcap(b)
		if err != nil {
			return
		}
		total := 0
		for _, fr := range frames {
			total += 16 + len(fr)
		}
		if 24+total > len(b) {
			t.Fatalf("%d frames of %d bytes with headers from %d input bytes", len(frames), total, len(b))
		}
		again, err := capture.ParsePcap(capture.EncodePcap(frames))
		if err != nil || !equalFrames(again, frames) {
			t.Fatalf("written again and read back: %d frames, %v; want %d", len(again), err, len(frames))
		}
	})
}
