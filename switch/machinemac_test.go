package vswitch

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestDeriveMAC: the derivation is pinned (a change would give every
// internal port a new MAC at the upgrade: these values were computed
// separately, with Python's hmac module), differs per bridge and per
// namespace name, and always gives a unicast, locally administered MAC.
func TestDeriveMAC(t *testing.T) {
	id, _ := hex.DecodeString("3d1219c7c4c5404aaa1f6d2a48adfda4")
	for _, c := range []struct{ ns, bridge, want string }{
		{"", "br1", "f6:73:d8:52:3b:6c"},
		{"", "br2", "f2:3c:7f:dc:2e:a8"},
		{"h1", "br1", "12:4e:9a:b4:83:0f"},
	} {
		if got := deriveMAC(id, c.ns, c.bridge).String(); got != c.want {
			t.Errorf("deriveMAC(netns %q, %s) = %s, want %s", c.ns, c.bridge, got, c.want)
		}
	}
	seen := map[string]string{}
	for i := 0; i < 2000; i++ {
		id := []byte(fmt.Sprintf("%016d", i/10))
		name := fmt.Sprintf("br%d", i%10)
		mac := deriveMAC(id, "", name)
		if len(mac) != 6 || mac[0]&1 != 0 || mac[0]&2 == 0 {
			t.Fatalf("deriveMAC(%x, %s) = %s: not a unicast, locally administered MAC", id, name, mac)
		}
		if again := deriveMAC(id, "", name); again.String() != mac.String() {
			t.Fatalf("deriveMAC not stable: %s then %s", mac, again)
		}
		if prev, dup := seen[mac.String()]; dup {
			t.Fatalf("%s and machine %x %s give the same MAC %s", prev, id, name, mac)
		}
		seen[mac.String()] = fmt.Sprintf("machine %x %s", id, name)
	}
}

// TestReadMachineID: the first valid file wins; missing, empty and
// "uninitialized" files are skipped, and with none the error names them.
func TestReadMachineID(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
	empty := write("empty", "")
	uninit := write("uninit", "uninitialized\n")
	missing := filepath.Join(dir, "missing")

	id, file, err := readMachineID([]string{missing, empty, uninit, good})
	if err != nil || file != good || hex.EncodeToString(id) != "3d1219c7c4c5404aaa1f6d2a48adfda4" {
		t.Errorf("readMachineID = %x, %s, %v; want the id of %s", id, file, err, good)
	}
	_, _, err = readMachineID([]string{missing, uninit})
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "uninitialized") {
		t.Errorf("no valid machine id: err %v, want one naming %s and the uninitialized file", err, missing)
	}
}

// TestInternalPortMACFallback: a configured hwaddr is kept; without a
// machine id the MAC is random (unicast, locally administered) and a
// warning says what to do.
func TestInternalPortMACFallback(t *testing.T) {
	obs, logs := observer.New(zap.WarnLevel)
	s := &Switch{log: zap.New(obs)}
	hw := []byte{2, 0, 0, 0, 0, 7}
	if got := s.internalPortMAC(&BridgeConfig{Name: "br1", HWAddr: hw}); got.String() != "02:00:00:00:00:07" {
		t.Errorf("configured hwaddr: got %s", got)
	}
	old := machineIDFiles
	defer func() { machineIDFiles = old }()
	machineIDFiles = []string{filepath.Join(t.TempDir(), "none")}
	a := s.internalPortMAC(&BridgeConfig{Name: "br1"})
	b := s.internalPortMAC(&BridgeConfig{Name: "br1"})
	if a[0]&1 != 0 || a[0]&2 == 0 || a.String() == b.String() {
		t.Errorf("without a machine id: %s then %s, want two random unicast, locally administered MACs", a, b)
	}
	got := logs.TakeAll()
	if len(got) != 2 || !strings.Contains(got[0].Message, "hwaddr") || got[0].ContextMap()["bridge"] != "br1" {
		t.Errorf("warnings %v, want 2 naming the bridge and the hwaddr fix", got)
	}
	// With a machine id (the second file: the D-Bus copy), the MAC is the
	// derived one, every time.
	idFile := filepath.Join(t.TempDir(), "machine-id")
	if err := os.WriteFile(idFile, []byte("3d1219c7c4c5404aaa1f6d2a48adfda4\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	machineIDFiles = []string{filepath.Join(t.TempDir(), "none"), idFile}
	id, _ := hex.DecodeString("3d1219c7c4c5404aaa1f6d2a48adfda4")
	want := deriveMAC(id, netnsName(), "br1").String()
	for i := 0; i < 2; i++ {
		if got := s.internalPortMAC(&BridgeConfig{Name: "br1"}).String(); got != want {
			t.Errorf("with a machine id: %s, want %s", got, want)
		}
	}
	if logs.Len() != 0 {
		t.Errorf("warned with a machine id: %v", logs.All())
	}
}
