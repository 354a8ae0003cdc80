package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	vswitch "xswitch/switch"
)

type fakeSwitch struct{}

func (fakeSwitch) Status() vswitch.Status {
	return vswitch.Status{Version: "t", Bridges: []vswitch.BridgeStatus{{Name: "br1", VNI: 5000,
		Tunnels: []vswitch.TunnelStatus{{Remote: "198.18.0.2", Key: 5000, Local: "198.18.0.1", NextHop: vswitch.NextHopStatus{State: "resolved", MAC: "02:00:00:00:00:02"}}}}}}
}
func (fakeSwitch) FDB() []vswitch.FDBEntry {
	return []vswitch.FDBEntry{{Bridge: "br1", VNI: 5000, MAC: "02:00:00:00:00:09", Port: "tunnel:198.18.0.2", Remote: "198.18.0.2", Age: 3}}
}
func (fakeSwitch) Stats() vswitch.Stats {
	return vswitch.Stats{Ports: []vswitch.PortStats{{Name: "eth0", Kind: "underlay", RxPackets: 7, Drops: map[string]uint64{"unknown_remote": 2}}},
		Options: []vswitch.OptionStat{{Class: "0x0102", Type: "0x80", Count: 4}}}
}

// TestControl: the control protocol and ctl's output, on an abstract socket
// unique to this test; a second listener on the same socket is refused.
func TestControl(t *testing.T) {
	sock := fmt.Sprintf("@xswitch-test-%d", os.Getpid())
	srv, err := listenControl(sock, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	go srv.serve()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := request(ctx, sock, "show"); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("before attach: %v", err)
	}
	srv.attach(fakeSwitch{})
	if _, err := listenControl(sock, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "another xswitch already runs") {
		t.Errorf("second listener: %v", err)
	}
	for cmd, want := range map[string]string{
		"show":  "tunnel 198.18.0.1 -> 198.18.0.2 key 5000: next hop resolved lladdr 02:00:00:00:00:02",
		"fdb":   "02:00:00:00:00:09  tunnel:198.18.0.2  3s",
		"stats": "unknown_remote=2",
	} {
		var out, errb bytes.Buffer
		if rc := mainArgs([]string{"ctl", "--socket", sock, cmd}, &out, &errb); rc != 0 {
			t.Errorf("ctl %s: rc %d: %s", cmd, rc, errb.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("ctl %s output lacks %q:\n%s", cmd, want, out.String())
		}
		out.Reset()
		if rc := mainArgs([]string{"ctl", cmd, "--json", "--socket=" + sock}, &out, &errb); rc != 0 {
			t.Errorf("ctl %s --json: rc %d", cmd, rc)
		}
		var v any
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Errorf("ctl %s --json is not JSON: %v\n%s", cmd, err, out.String())
		}
	}
	var errb bytes.Buffer
	if rc := mainArgs([]string{"ctl", "--socket", sock, "frobnicate"}, &bytes.Buffer{}, &errb); rc == 0 || !strings.Contains(errb.String(), "give show, fdb or stats") {
		t.Errorf("unknown ctl command: rc %d %s", rc, errb.String())
	}
	if rc := mainArgs([]string{"ctl", "--socket", "@xswitch-nobody-here", "show"}, &bytes.Buffer{}, &errb); rc == 0 || !strings.Contains(errb.String(), "is it running") {
		t.Errorf("no daemon: rc %d %s", rc, errb.String())
	}
}

// closingSwitch is a controlled switch that records a use after Close: the
// control server must never ask a switch that is being closed.
type closingSwitch struct {
	closed  atomic.Bool
	misuse  atomic.Int64
	entered chan struct{} // receives when a Status call begins (if not nil)
	release chan struct{} // Status waits for it (if not nil)
}

func (c *closingSwitch) use() {
	if c.closed.Load() {
		c.misuse.Add(1)
	}
}

func (c *closingSwitch) Status() vswitch.Status {
	c.use()
	if c.entered != nil {
		c.entered <- struct{}{}
		<-c.release
	}
	c.use()
	return vswitch.Status{Version: "t"}
}
func (c *closingSwitch) FDB() []vswitch.FDBEntry { c.use(); return nil }
func (c *closingSwitch) Stats() vswitch.Stats    { c.use(); return vswitch.Stats{} }

func testSocket(t *testing.T, name string) (string, *controlServer) {
	t.Helper()
	sock := fmt.Sprintf("@xswitch-test-%d-%s", os.Getpid(), name)
	srv, err := listenControl(sock, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.close)
	go srv.serve()
	return sock, srv
}

// TestControlDetachWaits: detaching the switch (before Close) waits for a
// request in flight, and no request reaches the switch after it.
func TestControlDetachWaits(t *testing.T) {
	sock, srv := testSocket(t, "detach")
	sw := &closingSwitch{entered: make(chan struct{}), release: make(chan struct{})}
	srv.attach(sw)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reqDone := make(chan error, 1)
	go func() {
		_, err := request(ctx, sock, "show")
		reqDone <- err
	}()
	select {
	case <-sw.entered:
	case <-ctx.Done():
		t.Fatal("the request never reached Status")
	}
	detached := make(chan struct{})
	go func() {
		srv.attach(nil)
		sw.closed.Store(true) // what main does next: Close
		close(detached)
	}()
	select {
	case <-detached:
		t.Error("detach returned while a request was using the switch")
	case <-time.After(200 * time.Millisecond):
	}
	close(sw.release)
	<-detached
	if err := <-reqDone; err != nil {
		t.Errorf("request in flight: %v", err)
	}
	if n := sw.misuse.Load(); n != 0 {
		t.Errorf("the switch was used %d times after Close", n)
	}
	if _, err := request(ctx, sock, "show"); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("request after detach: %v, want an error saying xswitch is stopping", err)
	}
}

// TestControlHammerDetach: many concurrent requests while the switch is
// detached and closed; none reaches it after Close (run with -race).
func TestControlHammerDetach(t *testing.T) {
	sock, srv := testSocket(t, "hammer")
	sw := &closingSwitch{}
	srv.attach(sw)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cmd := []string{"show", "stats", "fdb"}[i%3]
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := request(ctx, sock, cmd); err == nil {
					answered.Add(1)
				}
			}
		}(i)
	}
	for answered.Load() < 50 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	srv.attach(nil)
	sw.closed.Store(true)
	// Keep hammering a little after Close: every answer now is "stopping".
	after := answered.Load()
	for i := 0; i < 20; i++ {
		if _, err := request(ctx, sock, "show"); err == nil {
			t.Error("a request was answered with data after detach")
		}
	}
	close(stop)
	wg.Wait()
	if after < 50 {
		t.Fatalf("only %d requests answered before detach", after)
	}
	if n := sw.misuse.Load(); n != 0 {
		t.Errorf("the switch was used %d times after Close", n)
	}
}

// TestControlLongRequest: a request line longer than maxRequest gets an
// error, not an ever-growing buffer; a normal request still works after.
func TestControlLongRequest(t *testing.T) {
	sock, srv := testSocket(t, "long")
	srv.attach(fakeSwitch{})
	for _, n := range []int{maxRequest + 1, 1 << 20} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			// The server stops reading at the limit: this write may fail.
			_, _ = c.Write(bytes.Repeat([]byte("x"), n))
		}()
		var resp response
		err = json.NewDecoder(c).Decode(&resp)
		c.Close()
		if err != nil {
			t.Errorf("%d bytes without a newline: no answer: %v", n, err)
			continue
		}
		if want := fmt.Sprintf("request longer than %d bytes", maxRequest); !strings.Contains(resp.Error, want) {
			t.Errorf("%d bytes without a newline: answer %+v, want an error with %q", n, resp, want)
		}
	}
	// Exactly maxRequest bytes with the newline is still a request.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(strings.Repeat(" ", maxRequest-5) + "show\n")); err != nil {
		t.Fatal(err)
	}
	var resp response
	if err := json.NewDecoder(c).Decode(&resp); err != nil || resp.Error != "" || len(resp.Data) == 0 {
		t.Errorf("a %d-byte request: %+v %v", maxRequest, resp, err)
	}
}

// TestControlCloseIdleClient: a client that connects and says nothing does
// not hold up the daemon's shutdown until its 10 s deadline.
func TestControlCloseIdleClient(t *testing.T) {
	sock := fmt.Sprintf("@xswitch-test-%d-idle", os.Getpid())
	srv, err := listenControl(sock, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	go srv.serve()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Connections are accepted in order: once a later request is answered,
	// the idle one has its handler, waiting for a line.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := request(ctx, sock, "show"); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Fatalf("request: %v", err)
	}
	closed := make(chan struct{})
	go func() { srv.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close waited for an idle client")
	}
}

// TestControlSocketPath: a filesystem control socket is created 0600 and
// removed at close; a stale one is replaced; a live one, and anything that
// is not a socket, is refused and left alone.
func TestControlSocketPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ctl.sock")
	srv, err := listenControl(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	go srv.serve()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", fi.Mode())
	}
	if _, err := listenControl(path, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "another xswitch is listening there") {
		t.Errorf("second listener on a live socket: %v", err)
	}
	srv.close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left after close: %v", err)
	}

	// A stale socket (no listener) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	srv, err = listenControl(path, zap.NewNop())
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	srv.close()

	// A regular file, a directory, a symbolic link: refused, left alone.
	file := filepath.Join(dir, "precious")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for p, kind := range map[string]string{file: "regular file", sub: "directory", link: "symbolic link"} {
		_, err := listenControl(p, zap.NewNop())
		want := fmt.Sprintf("control socket %s: a %s is there, not a socket; refusing to remove it", p, kind)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("control_socket on a %s: %v, want %q", kind, err, want)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file was touched: %q %v", b, err)
	}
	if fi, err := os.Lstat(sub); err != nil || !fi.IsDir() {
		t.Errorf("the directory was touched: %v", err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != fs.ModeSymlink {
		t.Errorf("the symbolic link was touched: %v", err)
	}
}
