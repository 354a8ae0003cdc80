// Package packaging holds the systemd unit and the example configuration
// that `make install` installs; its tests run that target.
package packaging

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	vswitch "xswitch/switch"
)

// repoRoot is the repository (the Makefile's directory).
const repoRoot = ".."

// makeInstall runs `make install` with vars into a scratch build
// directory (the repository's bin/ is left alone) and returns its output.
func makeInstall(t *testing.T, vars ...string) string {
	t.Helper()
	args := append([]string{"-C", repoRoot, "--no-print-directory", "install", "BIN=" + filepath.Join(t.TempDir(), "xswitch")}, vars...)
	cmd := exec.Command("make", args...)
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+string(os.PathListSeparator)+filepath.Join(runtime.GOROOT(), "bin"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unitKeys parses a unit file: section.key -> values, in order.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[' && l[len(l)-1] == ']':
			section = l[1 : len(l)-1]
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s: %q is not KEY=VALUE", path, l)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestUnit: the unit says what the daemon needs: readiness notification,
// reload by SIGHUP, restart on failure, its configuration directory,
// unlimited locked memory and the capabilities for XDP, AF_XDP, TAP and
// the UMEM.
func TestUnit(t *testing.T) {
	k := unitKeys(t, "xswitch.service")
	for key, want := range map[string]string{
		"Service.Type":                   "notify",
		"Service.ExecStart":              "/usr/local/bin/xswitch run --config /etc/xswitch/xswitch.yaml",
		"Service.ExecStartPre":           "/usr/local/bin/xswitch check --config /etc/xswitch/xswitch.yaml",
		"Service.ExecReload":             "/bin/kill -HUP $MAINPID",
		"Service.Restart":                "on-failure",
		"Service.ConfigurationDirectory": "xswitch",
		"Service.LimitMEMLOCK":           "infinity",
		"Service.DeviceAllow":            "/dev/net/tun rw",
		"Install.WantedBy":               "multi-user.target",
	} {
		if got := k[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	caps := strings.Fields(strings.Join(k["Service.CapabilityBoundingSet"], " "))
	for _, c := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_IPC_LOCK"} {
		if !strings.Contains(" "+strings.Join(caps, " ")+" ", " "+c+" ") {
			t.Errorf("CapabilityBoundingSet %v lacks %s", caps, c)
		}
	}
	fams := strings.Join(k["Service.RestrictAddressFamilies"], " ")
	for _, f := range []string{"AF_XDP", "AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"} {
		if !strings.Contains(" "+fams+" ", " "+f+" ") {
			t.Errorf("RestrictAddressFamilies %q lacks %s", fams, f)
		}
	}
	if v := k["Service.PrivateDevices"]; len(v) > 0 {
		t.Errorf("PrivateDevices=%v would hide /dev/net/tun", v)
	}
}

// TestExampleConfig: the installed example is a valid configuration (its
// interfaces and addresses are this host's business: check --config).
func TestExampleConfig(t *testing.T) {
	if _, err := vswitch.LoadConfig("xswitch.yaml"); err != nil {
		t.Errorf("packaging/xswitch.yaml: %v", err)
	}
}

// TestMakeInstall: `make install DESTDIR=...` puts the binary, the unit and
// the example configuration under DESTDIR, keeps an existing
// configuration, and honours PREFIX in the paths and in the unit; the
// binary carries the git revision and the VERSION given. systemd-analyze
// verify finds nothing to say about the installed unit.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	makeInstall(t, "DESTDIR="+dest, "VERSION=v0.0.0-installtest")
	bin := filepath.Join(dest, "usr/local/bin/xswitch")
	unit := filepath.Join(dest, "usr/local/lib/systemd/system/xswitch.service")
	conf := filepath.Join(dest, "etc/xswitch/xswitch.yaml")
	for path, mode := range map[string]os.FileMode{bin: 0o755, unit: 0o644, conf: 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, want mode %v", path, err, mode)
		}
	}
	if b, _ := os.ReadFile(unit); !bytes.Equal(b, mustRead(t, "xswitch.service")) {
		t.Errorf("installed unit differs from packaging/xswitch.service with the default PREFIX:\n%s", b)
	}
	if b, _ := os.ReadFile(conf); !bytes.Equal(b, mustRead(t, "xswitch.yaml")) {
		t.Errorf("installed configuration differs from packaging/xswitch.yaml")
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "xswitch v0.0.0-installtest (revision ") {
		t.Errorf("installed xswitch version: %v %q", err, out)
	}
	if rev, err := exec.Command("git", "-C", repoRoot, "rev-parse", "HEAD").Output(); err == nil {
		if r := strings.TrimSpace(string(rev)); !strings.Contains(string(out), "(revision "+r) {
			t.Errorf("xswitch version %q lacks the revision %s", out, r)
		}
	}

	// A second install keeps the edited configuration.
	if err := os.WriteFile(conf, []byte("# edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if o := makeInstall(t, "DESTDIR="+dest); !strings.Contains(o, "kept "+conf) {
		t.Errorf("second install did not say it kept the configuration:\n%s", o)
	}
	if b, _ := os.ReadFile(conf); string(b) != "# edited\n" {
		t.Errorf("second install overwrote the configuration: %q", b)
	}

	// PREFIX and SYSCONFDIR in the unit; with no DESTDIR the paths are
	// real, so that systemd-analyze verify can check the executables.
	root := t.TempDir()
	makeInstall(t, "PREFIX="+root+"/usr", "SYSCONFDIR="+root+"/etc")
	unit = filepath.Join(root, "usr/lib/systemd/system/xswitch.service")
	k := unitKeys(t, unit)
	if want := root + "/usr/bin/xswitch run --config " + root + "/etc/xswitch/xswitch.yaml"; len(k["Service.ExecStart"]) != 1 || k["Service.ExecStart"][0] != want {
		t.Errorf("ExecStart %q, want %q", k["Service.ExecStart"], want)
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("no systemd-analyze on this host: the unit's keys were checked by TestUnit only")
		return
	}
	cmd := exec.Command(sa, "verify", unit)
	v, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(v)) != 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, v)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
