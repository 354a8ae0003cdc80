package evpn

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"xswitch/internal/testnet"
)

// The namespace tests run each Speaker in its own process inside its
// namespace: GoBGP dials from goroutines on any thread, so only a process
// that lives in the namespace keeps every socket there. The process is
// this test binary, started with speakerEnv set; it drives a Speaker with
// a fakeDP and answers line commands on stdin with one JSON line each.
const speakerEnv = "XSWITCH_EVPN_SPEAKER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(speakerEnv); cfg != "" {
		os.Exit(speakerMain(cfg, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// dpState is the fake data plane's state as the helper reports it.
type dpState struct {
	Tunnels []string          `json:"tunnels"` // "vni vtep"
	Flood   []string          `json:"flood"`   // "vni vtep"
	MACs    map[string]string `json:"macs"`    // "vni mac" -> "vni vtep"
	Errs    []string          `json:"errs"`
	Calls   int               `json:"calls"`
}

type helperReply struct {
	Err    string   `json:"err,omitempty"`
	State  *dpState `json:"state,omitempty"`
	Status *Status  `json:"status,omitempty"`
}

func speakerMain(cfgYAML string, in io.Reader, out io.Writer) int {
	log, _ := zap.NewDevelopment()
	var c Config
	if err := yaml.Unmarshal([]byte(cfgYAML), &c); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		return 2
	}
	if errs := c.Validate("evpn", netip.Addr{}); len(errs) > 0 {
		fmt.Fprintln(os.Stderr, "helper config:", errs)
		return 2
	}
	dp := newFakeDP()
	sp, err := New(&c, dp, log)
	if err == nil {
		err = sp.Start(context.Background())
	}
	enc := json.NewEncoder(out)
	if err != nil {
		_ = enc.Encode(helperReply{Err: err.Error()})
		return 1
	}
	_ = enc.Encode(helperReply{})
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var r helperReply
		switch {
		case len(f) >= 3 && (f[0] == "learn" || f[0] == "gone"):
			vni, err1 := strconv.ParseUint(f[1], 10, 24)
			var ip netip.Addr
			if len(f) > 3 {
				ip = netip.MustParseAddr(f[3])
			}
			if err1 != nil {
				r.Err = err1.Error()
			} else if f[0] == "learn" {
				sp.LocalMACLearned(uint32(vni), mustMAC(f[2]), ip)
			} else {
				sp.LocalMACGone(uint32(vni), mustMAC(f[2]))
			}
		case len(f) == 1 && f[0] == "state":
			r.State = dp.state()
		case len(f) == 1 && f[0] == "status":
			st := sp.Status(context.Background())
			r.Status = &st
		case len(f) == 1 && f[0] == "stop":
			sp.Stop()
			_ = enc.Encode(r)
			return 0
		default:
			r.Err = "unknown command " + sc.Text()
		}
		_ = enc.Encode(r)
	}
	sp.Stop()
	return 0
}

func (f *fakeDP) state() *dpState {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &dpState{MACs: map[string]string{}, Errs: append([]string{}, f.errs...), Calls: len(f.calls)}
	for k := range f.tunnels {
		s.Tunnels = append(s.Tunnels, k)
	}
	for k := range f.flood {
		s.Flood = append(s.Flood, k)
	}
	for k, v := range f.macs {
		s.MACs[k] = v
	}
	return s
}

// speakerProc is a helper process seen from the test.
type speakerProc struct {
	t    *testing.T
	ns   string
	vtep string
	cmd  *exec.Cmd
	mu   sync.Mutex
	in   io.WriteCloser
	out  *json.Decoder
	done bool
}

func startSpeaker(t *testing.T, ns, vtep string, c Config) *speakerProc {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &speakerProc{t: t, ns: ns, vtep: vtep}
	p.cmd = testnet.Cmd(ns, exe, "-test.run=^$")
	p.cmd.Env = append(os.Environ(), speakerEnv+"="+string(b))
	p.cmd.Stderr = &prefixWriter{t: t, prefix: ns}
	p.in, _ = p.cmd.StdinPipe()
	stdout, _ := p.cmd.StdoutPipe()
	p.out = json.NewDecoder(stdout)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start speaker in %s: %v", ns, err)
	}
	t.Cleanup(p.kill)
	var r helperReply
	if err := p.out.Decode(&r); err != nil || r.Err != "" {
		t.Fatalf("speaker in %s did not start: %v %s", ns, err, r.Err)
	}
	return p
}

func (p *speakerProc) ask(cmd string) helperReply {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var r helperReply
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		p.t.Fatalf("%s: %s: %v", p.ns, cmd, err)
	}
	if err := p.out.Decode(&r); err != nil {
		p.t.Fatalf("%s: %s: no answer: %v", p.ns, cmd, err)
	}
	if r.Err != "" {
		p.t.Fatalf("%s: %s: %s", p.ns, cmd, r.Err)
	}
	return r
}

func (p *speakerProc) state() *dpState   { return p.ask("state").State }
func (p *speakerProc) status() *Status   { return p.ask("status").Status }
func (p *speakerProc) learn(args string) { p.ask("learn " + args) }
func (p *speakerProc) gone(args string)  { p.ask("gone " + args) }

// stop stops the speaker cleanly (NOTIFICATION to the reflectors).
func (p *speakerProc) stop() {
	p.ask("stop")
	_ = p.cmd.Wait()
	p.done = true
}

func (p *speakerProc) kill() {
	if !p.done {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.done = true
	}
}

// prefixWriter sends a helper's log lines to the test log.
type prefixWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		if testing.Verbose() {
			w.t.Logf("%s: %s", w.prefix, w.buf[:i])
		}
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}
