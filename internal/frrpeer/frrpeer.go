// Package frrpeer runs FRR bgpd as a BGP EVPN route reflector inside a
// test's network namespace (docs: /work/shared/frr-rr.md in the team's
// notes, docs/fabric.md): bgpd alone, without zebra and without kernel
// routes, with its own configuration and vty socket directory, so that it
// never touches the system's FRR. Every reflector is killed at the test's
// cleanup; Sweep kills those a killed test binary left.
package frrpeer

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/testnet"
	"xswitch/internal/wait"
)

// Bgpd is where Debian's frr package installs bgpd.
const Bgpd = "/usr/lib/frr/bgpd"

// dirPrefix names the reflectors' temporary directories (Sweep finds
// their bgpd processes by it).
const dirPrefix = "xswitch-frr-"

// Require fails t when bgpd or vtysh are missing, saying how to get them.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Bgpd); err != nil {
		t.Fatalf("%s not found: install Debian's frr (make deps): %v", Bgpd, err)
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Fatalf("vtysh not found: install Debian's frr (make deps): %v", err)
	}
}

// Options configure a reflector.
type Options struct {
	ASN         int    // of the reflector and its clients (iBGP)
	Addr        string // its address in NS: router id and cluster id
	ListenRange string // clients are accepted from this prefix (bgp listen range)
	Password    string // TCP MD5 for the clients; optional
	Keepalive   int    // seconds; default 1
	Hold        int    // seconds; default 3
}

// Reflector is one running bgpd.
type Reflector struct {
	NS, Addr, Dir string
	pid           int
}

// Start runs a reflector in namespace ns and waits until it has written
// its pid file. It is killed at t's cleanup.
func Start(t testing.TB, ns string, o Options) *Reflector {
	t.Helper()
	if o.Keepalive == 0 {
		o.Keepalive = 1
	}
	if o.Hold == 0 {
		o.Hold = 3
	}
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pw := ""
	if o.Password != "" {
		pw = " neighbor HOSTS password " + o.Password + "\n"
	}
	conf := fmt.Sprintf(`router bgp %d
 bgp router-id %s
 bgp cluster-id %s
 no bgp default ipv4-unicast
 timers bgp %d %d
 neighbor HOSTS peer-group
 neighbor HOSTS remote-as %d
%s bgp listen range %s peer-group HOSTS
 bgp listen limit 1000
 address-family l2vpn evpn
  neighbor HOSTS activate
  neighbor HOSTS route-reflector-client
 exit-address-family
`, o.ASN, o.Addr, o.Addr, o.Keepalive, o.Hold, o.ASN, pw, o.ListenRange)
	if err := os.WriteFile(filepath.Join(dir, "bgpd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "-R", "frr:frr", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v: %s", dir, err, out)
	}
	if out, err := testnet.Try(ns, Bgpd, "-d", "-f", filepath.Join(dir, "bgpd.conf"), "-i", filepath.Join(dir, "bgpd.pid"),
		"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "-n", "-Z"); err != nil {
		t.Fatalf("bgpd in %s: %v: %s", ns, err, out)
	}
	r := &Reflector{NS: ns, Addr: o.Addr, Dir: dir}
	wait.For(t, 10*time.Second, "bgpd pid file in "+dir, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "bgpd.pid"))
		if err != nil {
			return false
		}
		r.pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && r.pid > 0
	})
	t.Cleanup(r.Kill)
	return r
}

// Kill stops bgpd at once (SIGKILL: the sessions die without a word).
func (r *Reflector) Kill() {
	if r.pid > 0 {
		_ = syscall.Kill(r.pid, syscall.SIGKILL)
		r.pid = 0
	}
}

// Running reports whether Kill has not been called.
func (r *Reflector) Running() bool { return r.pid > 0 }

// Vtysh runs one vtysh command against this bgpd.
func (r *Reflector) Vtysh(cmd string) (string, error) {
	return testnet.Try(r.NS, "vtysh", "--vty_socket", r.Dir, "-d", "bgpd", "-c", cmd)
}

// Route is one EVPN route in FRR's table, as `show bgp l2vpn evpn route
// detail json` gives it.
type Route struct {
	RD, Prefix, NextHop string
	VNI                 string
	ExtComm             string
}

// Routes reads FRR's EVPN table. The JSON nests RD -> prefix -> paths; each
// path lists next hops, the label (the VNI: RFC 8365 carries it in the
// label field) and the extended communities as one string.
func (r *Reflector) Routes() ([]Route, error) {
	raw, err := r.Vtysh("show bgp l2vpn evpn route detail json")
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &top); err != nil {
		return nil, fmt.Errorf("FRR JSON: %w: %.400s", err, raw)
	}
	var out []Route
	for rd, v := range top {
		var prefixes map[string]json.RawMessage
		if json.Unmarshal(v, &prefixes) != nil {
			continue // a scalar: numPrefix, numPaths, ...
		}
		for prefix, pv := range prefixes {
			var dest struct {
				Paths [][]struct {
					VNI      any                     `json:"vni"`
					Label    any                     `json:"remoteLabel"`
					ExtComm  struct{ String string } `json:"extendedCommunity"`
					Nexthops []struct{ IP string }   `json:"nexthops"`
				} `json:"paths"`
			}
			if json.Unmarshal(pv, &dest) != nil {
				continue // rd, other scalars
			}
			for _, ps := range dest.Paths {
				for _, p := range ps {
					fr := Route{RD: rd, Prefix: prefix, ExtComm: p.ExtComm.String}
					if len(p.Nexthops) > 0 {
						fr.NextHop = p.Nexthops[0].IP
					}
					if p.VNI != nil {
						fr.VNI = fmt.Sprint(p.VNI)
					} else if p.Label != nil {
						fr.VNI = fmt.Sprint(p.Label)
					}
					out = append(out, fr)
				}
			}
		}
	}
	return out, nil
}

// Sweep kills the bgpd processes of reflectors whose test binary was
// killed before its cleanup ran: a bgpd started from a directory named by
// dirPrefix whose network namespace no longer has a name (testnet.Sweep
// deleted it, or its test's cleanup did), and removes its directory. Call
// it after testnet.Sweep.
func Sweep() {
	named := map[uint64]bool{}
	nss, _ := os.ReadDir("/run/netns")
	for _, e := range nss {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/run/netns", e.Name()), &st) == nil {
			named[st.Ino] = true
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 3 || args[0] != Bgpd {
			continue
		}
		for i, a := range args {
			if a != "-f" || i+1 >= len(args) || !strings.HasPrefix(filepath.Base(filepath.Dir(args[i+1])), dirPrefix) {
				continue
			}
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) == nil && !named[st.Ino] {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				_ = os.RemoveAll(filepath.Dir(args[i+1]))
			}
		}
	}
}
