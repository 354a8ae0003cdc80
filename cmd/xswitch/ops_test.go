package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestHelp: every command and ctl subcommand answers -h and --help with its
// usage on stdout and status 0, and nothing on stderr.
func TestHelp(t *testing.T) {
	cases := map[string][]string{
		"":          {},
		"run":       {"run"},
		"check":     {"check"},
		"ctl":       {"ctl"},
		"version":   {"version"},
		"show":      {"ctl", "show"},
		"fdb":       {"ctl", "fdb"},
		"bgp":       {"ctl", "bgp"},
		"stats":     {"ctl", "stats"},
		"log-level": {"ctl", "log-level"},
		"reload":    {"ctl", "reload"},
		"fdb-flush": {"ctl", "fdb-flush"},
		"trace":     {"ctl", "trace"},
		"capture":   {"ctl", "capture"},
	}
	for sub := range ctlCommands {
		if _, ok := cases[sub]; !ok {
			t.Errorf("ctl %s is missing from this table", sub)
		}
	}
	for name, args := range cases {
		want := "usage: xswitch " + strings.Join(args, " ")
		switch name {
		case "":
			want = "usage:\n  xswitch run"
		case "show", "fdb", "bgp", "stats", "log-level", "reload", "fdb-flush", "trace":
			want = "usage: xswitch ctl [--socket S] [--json] " + name
		case "capture":
			want = "usage: xswitch ctl [--socket S] capture"
		case "ctl":
			want = "usage: xswitch ctl [--socket S] [--json] COMMAND"
		}
		for _, flag := range []string{"-h", "--help"} {
			var out, errb bytes.Buffer
			argv := append(append([]string{}, args...), flag)
			if rc := mainArgs(argv, &out, &errb); rc != 0 || errb.Len() != 0 || !strings.HasPrefix(out.String(), want) {
				t.Errorf("xswitch %s: status %d, stderr %q, stdout %q; want 0, nothing, usage starting %q",
					strings.Join(argv, " "), rc, errb.String(), out.String(), want)
			}
		}
	}
	// The flags of ctl may come first; help also with "xswitch help CMD".
	for _, argv := range [][]string{{"ctl", "--socket", "@x", "--help", "log-level"}, {"help", "ctl", "log-level"}} {
		var out, errb bytes.Buffer
		if rc := mainArgs(argv, &out, &errb); rc != 0 || !strings.HasPrefix(out.String(), "usage: xswitch ctl [--socket S] [--json] log-level") {
			t.Errorf("xswitch %s: status %d, stdout %q, stderr %q", strings.Join(argv, " "), rc, out.String(), errb.String())
		}
	}
}

// TestUsageErrors: wrong arguments are refused with status 2 before any
// request, saying what is accepted.
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ctl", "--socket", "@xswitch-nobody", "log-level", "bogus"}, `"bogus" is not a log level; give one of debug, info, warn, error`},
		{[]string{"ctl", "--socket", "@xswitch-nobody", "log-level", "fatal"}, `"fatal" is not a log level`},
		{[]string{"ctl", "--socket", "@xswitch-nobody", "log-level", "debug", "info"}, "too many arguments: debug info"},
		{[]string{"ctl", "--socket", "@xswitch-nobody", "show", "extra"}, "too many arguments: extra"},
		{[]string{"version", "extra"}, "takes no arguments"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
	} {
		var out, errb bytes.Buffer
		if rc := mainArgs(c.args, &out, &errb); rc != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("xswitch %s: status %d, stderr %q; want 2 and %q", strings.Join(c.args, " "), rc, errb.String(), c.want)
		}
	}
}

// TestBuildInfo: the -ldflags stamps override what Go recorded; without
// them the version is the module's (or "dev") and the Go version is there.
func TestBuildInfo(t *testing.T) {
	b := readBuildInfo()
	if b.GoVersion != runtime.Version() || b.Version == "" || b.Revision == "" {
		t.Errorf("without stamps: %+v", b)
	}
	old := [4]string{version, revision, revisionTime, revisionModified}
	defer func() { version, revision, revisionTime, revisionModified = old[0], old[1], old[2], old[3] }()
	version, revision, revisionTime, revisionModified = "v1.2.3", "0123abcd", "2026-12-07T04:06:25Z", "true"
	b = readBuildInfo()
	if b.Version != "v1.2.3" || b.Revision != "0123abcd" || b.Time != "2026-12-07T04:06:25Z" || !b.Modified {
		t.Errorf("with stamps: %+v", b)
	}
	var out bytes.Buffer
	if rc := mainArgs([]string{"version"}, &out, &out); rc != 0 ||
		out.String() != fmt.Sprintf("xswitch v1.2.3 (revision 0123abcd, modified, 2026-12-07T04:06:25Z, %s)\n", runtime.Version()) {
		t.Errorf("xswitch version: %d %q", rc, out.String())
	}
}

// TestLogLevelControl: log-level reads and sets the daemon's level through
// the control socket, also before the switch is attached; a bad level is
// refused by the server too (for clients other than ctl) and changes
// nothing. ctl show carries the revision and the uptime.
func TestLogLevelControl(t *testing.T) {
	sock := fmt.Sprintf("@xswitch-test-%d-loglevel", os.Getpid())
	srv, err := listenControl(sock, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	srv.level = &lvl
	srv.build = buildInfo{Version: "v1.2.3", Revision: "0123abcd"}
	srv.started = time.Now().Add(-90 * time.Second)
	go srv.serve()
	defer srv.close()
	ctl := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		rc := mainArgs(append([]string{"ctl", "--socket", sock}, args...), &out, &errb)
		return rc, out.String(), errb.String()
	}
	if rc, out, errb := ctl("log-level"); rc != 0 || out != "log level info\n" {
		t.Errorf("log-level: %d %q %q", rc, out, errb)
	}
	if rc, out, errb := ctl("log-level", "debug"); rc != 0 || out != "log level debug (was info)\n" || lvl.Level() != zapcore.DebugLevel {
		t.Errorf("log-level debug: %d %q %q, level now %s", rc, out, errb, lvl.Level())
	}
	if rc, out, errb := ctl("log-level", "--json"); rc != 0 || !strings.Contains(out, `"level": "debug"`) {
		t.Errorf("log-level --json: %d %q %q", rc, out, errb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := request(ctx, sock, "log-level bogus"); err == nil || !strings.Contains(err.Error(), `"bogus" is not a log level`) {
		t.Errorf("raw log-level bogus: %v", err)
	}
	if _, err := request(ctx, sock, "log-level warn error"); err == nil || !strings.Contains(err.Error(), "takes one level") {
		t.Errorf("raw log-level with two levels: %v", err)
	}
	if lvl.Level() != zapcore.DebugLevel {
		t.Errorf("a refused level changed the level to %s", lvl.Level())
	}

	srv.attach(fakeSwitch{})
	defer srv.attach(nil)
	rc, out, errb := ctl("show")
	if rc != 0 || !strings.Contains(out, "xswitch v1.2.3 (pid") || !strings.Contains(out, "revision 0123abcd, up 1m3") {
		t.Errorf("show: %d %q %q; want version, revision and an uptime of 1m3xs", rc, out, errb)
	}
	rc, out, _ = ctl("show", "--json")
	if rc != 0 || !strings.Contains(out, `"revision": "0123abcd"`) || !strings.Contains(out, `"uptime_seconds": `) || !strings.Contains(out, `"started_at": "`) {
		t.Errorf("show --json: %d %s", rc, out)
	}

	// A server without a level (none was given before serve) refuses.
	bare, _ := testSocket(t, "nolevel")
	if _, err := request(ctx, bare, "log-level"); err == nil || !strings.Contains(err.Error(), "cannot change its log level") {
		t.Errorf("without a level: %v", err)
	}
}
