package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	vswitch "xswitch/switch"
)

// The control protocol: the client connects, writes one command line
// ("show", "fdb", "stats", "reload", "fdb-flush [BRIDGE]", "log-level" or
// "log-level LEVEL"), and reads one
// JSON object, {"error": "..."} or {"data": ...}; then the server closes
// the connection.

// controlled is what the control server asks (control path only).
type controlled interface {
	Status() vswitch.Status
	FDB() []vswitch.FDBEntry
	Stats() vswitch.Stats
}

// fdbFlusher is a controlled switch that can forget learned MACs.
type fdbFlusher interface {
	FlushFDB(bridge string) (int, error)
}

// FlushReply is the data of a fdb-flush reply.
type FlushReply struct {
	Bridge  string `json:"bridge,omitempty"` // "" = every bridge
	Removed int    `json:"removed"`
}

type response struct {
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// maxRequest is the longest request line the server reads: a command is a
// word, and a client must not make the daemon buffer without bound.
const maxRequest = 4096

// maxBody bounds the JSON body of the commands that take one (a trace
// carries a frame in it).
const maxBody = 1 << 20

// bodyCommands are the commands followed by a JSON body; each answers on
// the connection itself (trace.go, capture.go).
var bodyCommands = map[string]func(s *controlServer, c net.Conn, body *bufio.Reader){
	"trace":   serveTrace,
	"capture": serveCapture,
}

// argCtlCommands are the ctl commands that take arguments (the client side of
// bodyCommands).
var argCtlCommands = map[string]func(sock string, asJSON bool, args []string, stdout, stderr io.Writer) int{
	"trace":   ctlTrace,
	"capture": ctlCapture,
}

// requestBody sends cmd and its JSON body to the control socket addr and
// returns the reply's data.
func requestBody(ctx context.Context, addr, cmd string, body any) (json.RawMessage, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", cmd, err)
	}
	return request(ctx, addr, cmd+"\n"+string(b))
}

// reply writes one response to a control connection.
func reply(c net.Conn, data any, err error) {
	resp := response{}
	if err != nil {
		resp.Error = err.Error()
	} else if resp.Data, err = json.Marshal(data); err != nil {
		resp.Error = "encode: " + err.Error()
	}
	_ = json.NewEncoder(c).Encode(resp)
}

// errStarting is the answer while no switch is attached.
var errStarting = errors.New("xswitch is starting or stopping")

// socketMode is the permission of a filesystem control socket: connecting
// needs write permission, so only its owner (root) and root may talk to it.
const socketMode = 0o600

// controlServer serves the control socket.
type controlServer struct {
	ln   net.Listener
	path string // filesystem path to remove at close; "" for abstract sockets
	log  *zap.Logger
	// mu: a request holds the read lock while it uses sw, so that detach
	// (write lock) returns only when no request uses the switch any more
	// and the switch can be closed under no one.
	mu sync.RWMutex
	sw controlled
	// reload re-reads the configuration file and applies it (cmdRun).
	reload func() (*vswitch.ReloadResult, error)
	wg     sync.WaitGroup
	// conns are the open connections, so that close does not wait for an
	// idle client's deadline.
	connMu  sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
	// Set before serve: the daemon's log level (nil: log-level refused),
	// its build and start time (ctl show).
	level   *zap.AtomicLevel
	build   buildInfo
	started time.Time
}

// listenControl takes the control socket. An abstract socket ("@name") in
// use means another instance runs in this network namespace. A filesystem
// socket is created with mode 0600.
func listenControl(addr string, log *zap.Logger) (*controlServer, error) {
	path := ""
	if !strings.HasPrefix(addr, "@") {
		path = addr
		if err := removeStaleSocket(path); err != nil {
			return nil, err
		}
	}
	ln, err := listenUnix(addr, path != "")
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("control socket %s is in use: another xswitch already runs in this network namespace (stop it first, or give this one another control_socket): %w", addr, err)
		}
		return nil, fmt.Errorf("control socket %s: %w", addr, err)
	}
	if ul, ok := ln.(*net.UnixListener); ok && path != "" {
		ul.SetUnlinkOnClose(true)
	}
	return &controlServer{ln: ln, path: path, log: log, conns: map[net.Conn]struct{}{}}, nil
}

// listenUnix listens on addr; a filesystem socket is created with
// socketMode, never wider for an instant (the umask applies at bind).
func listenUnix(addr string, onDisk bool) (net.Listener, error) {
	if !onDisk {
		return net.Listen("unix", addr)
	}
	old := syscall.Umask(0o777 &^ socketMode)
	defer syscall.Umask(old)
	return net.Listen("unix", addr)
}

// removeStaleSocket makes room for a filesystem control socket: nothing
// there is fine; a socket nobody listens on (its daemon died) is removed;
// a live socket, or anything that is not a socket, is refused and left alone.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: a %s is there, not a socket; refusing to remove it: set control_socket to another path, or move that file away", path, fileKind(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another xswitch is listening there; stop it or set control_socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: cannot tell whether it is in use (%w); remove it if no xswitch runs, or set control_socket", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket %s: remove the stale socket: %w", path, err)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "regular file"
	case fs.ModeDir:
		return "directory"
	case fs.ModeSymlink:
		return "symbolic link"
	case fs.ModeNamedPipe:
		return "named pipe"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "device"
	}
	return "file of type " + m.Type().String()
}

// serve answers requests until close; before attach it answers "starting".
func (s *controlServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.handle(c)
		}()
	}
}

// track registers a new connection and its handler, unless close has begun
// (then close's wait must not miss it).
func (s *controlServer) track(c net.Conn) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *controlServer) untrack(c net.Conn) {
	s.connMu.Lock()
	delete(s.conns, c)
	s.connMu.Unlock()
}

// attach gives the server the switch to ask; attach(nil) detaches it and
// returns once no request in flight uses it, so that it can be closed.
func (s *controlServer) attach(sw controlled) {
	s.mu.Lock()
	s.sw = sw
	s.mu.Unlock()
}

func (s *controlServer) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	lr := &io.LimitedReader{R: c, N: maxRequest + 1}
	br := bufio.NewReader(lr)
	line, err := br.ReadString('\n')
	if err != nil {
		if len(line) > maxRequest {
			_ = json.NewEncoder(c).Encode(response{Error: fmt.Sprintf("request longer than %d bytes; send one line: show, fdb, stats or log-level [LEVEL]", maxRequest)})
		}
		return
	}
	if h := bodyCommands[strings.TrimSpace(line)]; h != nil {
		// Commands with arguments: a JSON body follows the line.
		lr.N = maxBody
		h(s, c, br)
		return
	}
	resp := s.answer(strings.TrimSpace(line))
	_ = json.NewEncoder(c).Encode(resp)
}

// answer runs one command against the attached switch.
func (s *controlServer) answer(cmd string) response {
	if words := strings.Fields(cmd); len(words) > 0 && words[0] == "log-level" {
		return s.logLevel(words[1:])
	}
	var resp response
	var data any
	args := strings.Fields(cmd)
	if len(args) > 0 {
		cmd = args[0]
	}
	s.mu.RLock()
	switch sw := s.sw; {
	case sw == nil:
		resp.Error = "xswitch is starting or stopping"
	case cmd == "show":
		st := sw.Status()
		s.addBuild(&st)
		data = st
	case cmd == "fdb":
		data = sw.FDB()
	case cmd == "bgp":
		data, resp.Error = bgpStatus(sw)
	case cmd == "stats":
		data = sw.Stats()
	case cmd == "reload" && s.reload != nil:
		r, err := s.reload()
		if err != nil {
			resp.Error = err.Error()
		} else {
			data = r
		}
	case cmd == "fdb-flush" && len(args) <= 2:
		data, resp.Error = flushFDB(sw, args[1:])
	default:
		resp.Error = fmt.Sprintf("unknown command %q; use show, fdb, bgp, stats, reload, fdb-flush [BRIDGE] or log-level [LEVEL]", cmd)
	}
	s.mu.RUnlock()
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			resp.Error = "encode: " + err.Error()
		} else {
			resp.Data = b
		}
	}
	return resp
}

// addBuild adds what only the daemon knows to a Status: its source
// revision and how long it has run.
func (s *controlServer) addBuild(st *vswitch.Status) {
	if s.build.Revision != "" {
		st.Version, st.Revision, st.Modified = s.build.Version, s.build.Revision, s.build.Modified
	}
	if !s.started.IsZero() {
		st.StartedAt = s.started.UTC().Format(time.RFC3339)
		st.UptimeSeconds = time.Since(s.started).Truncate(time.Second).Seconds()
	}
}

// flushFDB runs fdb-flush [BRIDGE].
func flushFDB(sw controlled, args []string) (any, string) {
	f, ok := sw.(fdbFlusher)
	if !ok {
		return nil, "fdb-flush is not supported by this switch"
	}
	var r FlushReply
	if len(args) == 1 {
		r.Bridge = args[0]
	}
	n, err := f.FlushFDB(r.Bridge)
	if err != nil {
		return nil, err.Error()
	}
	r.Removed = n
	return r, ""
}

// close stops listening (removing a filesystem socket), cuts the open
// connections short and waits for their handlers.
func (s *controlServer) close() {
	s.ln.Close()
	s.connMu.Lock()
	s.closing = true
	for c := range s.conns {
		_ = c.SetDeadline(time.Now())
	}
	s.connMu.Unlock()
	s.wg.Wait()
}

// request sends cmd to the control socket addr and returns the data.
func request(ctx context.Context, addr, cmd string) (json.RawMessage, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to xswitch at %s (is it running in this network namespace? `ip netns exec NS xswitch ctl ...`): %w", addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "%s\n", cmd); err != nil {
		return nil, fmt.Errorf("send %s: %w", cmd, err)
	}
	var resp response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("read reply to %s: %w", cmd, err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return resp.Data, nil
}
