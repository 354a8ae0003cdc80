package vswitch

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"go.uber.org/zap"
)

// machineIDFiles are where the host's machine id is read, in order
// (machine-id(5); the D-Bus copy for systems without systemd).
var machineIDFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// netnsDir is where `ip netns` keeps its named network namespaces.
const netnsDir = "/run/netns"

// internalPortMAC is the MAC of bridge b's internal port: the configured
// hwaddr, or one derived from the machine id, the network namespace's name
// and the bridge name, so that it survives restarts and the peers' ARP
// caches stay right. Without a machine id it is random, with a warning.
func (s *Switch) internalPortMAC(b *BridgeConfig) net.HardwareAddr {
	if b.HWAddr != nil {
		return net.HardwareAddr(b.HWAddr)
	}
	id, file, err := readMachineID(machineIDFiles)
	if err != nil {
		mac := randomMAC()
		s.log.Warn("no machine id: the internal port gets a random MAC, a new one at every start, so peers' ARP caches go stale at restarts; set the bridge's hwaddr, or create the machine id (systemd-machine-id-setup)",
			zap.String("bridge", b.Name), zap.Stringer("mac", mac), zap.Error(err))
		return mac
	}
	ns := netnsName()
	mac := deriveMAC(id, ns, b.Name)
	s.log.Debug("internal port MAC derived from the machine id", zap.String("bridge", b.Name), zap.String("machine_id_file", file),
		zap.String("netns", ns), zap.Stringer("mac", mac))
	return mac
}

// deriveMAC hashes the machine id (as the key, so that the MAC does not
// reveal it, as systemd derives its stable MACs), the network namespace
// name and the bridge name into a unicast, locally administered MAC.
func deriveMAC(machineID []byte, netns, bridge string) net.HardwareAddr {
	h := hmac.New(sha256.New, machineID)
	h.Write([]byte("xswitch internal port\x00"))
	h.Write([]byte(netns))
	h.Write([]byte{0})
	h.Write([]byte(bridge))
	mac := net.HardwareAddr(h.Sum(nil)[:6])
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	return mac
}

// readMachineID returns the 16 bytes of the first valid machine id file.
// An empty file, or "uninitialized" (machine-id(5): first boot not done),
// is no machine id.
func readMachineID(files []string) ([]byte, string, error) {
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s := strings.TrimSpace(string(b))
		id, err := hex.DecodeString(s)
		if err != nil || len(id) != 16 {
			errs = append(errs, fmt.Errorf("%s: %q is not a machine id (32 hex digits)", f, s))
			continue
		}
		return id, f, nil
	}
	return nil, "", errors.Join(errs...)
}

// netnsName is the name `ip netns` gave the process's network namespace,
// "" for the host's (or an unnamed) one. Two namespaces of one host share
// the machine id; their names keep their bridges' MACs apart.
func netnsName() string {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return ""
	}
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(netnsDir, e.Name()))
		if err == nil && sameFile(self, fi) {
			return e.Name()
		}
	}
	return ""
}

func sameFile(a, b fs.FileInfo) bool {
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// randomMAC is a random unicast, locally administered MAC.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac) // crypto/rand.Read never fails (Go 1.24+)
	mac[0] = mac[0]&^1 | 2
	return mac
}
