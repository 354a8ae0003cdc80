package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// ("show", "fdb" or "stats"), and reads one JSON object, {"error": "..."} or
// {"data": ...}; then the server closes the connection.

// controlled is what the control server asks (control path only).
type controlled interface {
	Status() vswitch.Status
	FDB() []vswitch.FDBEntry
	Stats() vswitch.Stats
}

type response struct {
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// controlServer serves the control socket.
type controlServer struct {
	ln   net.Listener
	path string // filesystem path to remove at close; "" for abstract sockets
	log  *zap.Logger
	mu   sync.Mutex
	sw   controlled
	wg   sync.WaitGroup
}

// listenControl takes the control socket. An abstract socket ("@name") in
// use means another instance runs in this network namespace.
func listenControl(addr string, log *zap.Logger) (*controlServer, error) {
	path := ""
	if !strings.HasPrefix(addr, "@") {
		path = addr
		// A stale socket file (its daemon died) is removed; a live one is refused.
		if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another xswitch is listening there; stop it or set control_socket", addr)
		} else if _, err := os.Stat(addr); err == nil {
			os.Remove(addr)
		}
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("control socket %s is in use: another xswitch already runs in this network namespace (stop it first, or give this one another control_socket): %w", addr, err)
		}
		return nil, fmt.Errorf("control socket %s: %w", addr, err)
	}
	if ul, ok := ln.(*net.UnixListener); ok && path != "" {
		ul.SetUnlinkOnClose(true)
	}
	return &controlServer{ln: ln, path: path, log: log}, nil
}

// serve answers requests until Close; before attach it answers "starting".
func (s *controlServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *controlServer) attach(sw controlled) {
	s.mu.Lock()
	s.sw = sw
	s.mu.Unlock()
}

func (s *controlServer) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	cmd := strings.TrimSpace(line)
	s.mu.Lock()
	sw := s.sw
	s.mu.Unlock()
	var resp response
	var data any
	switch {
	case sw == nil:
		resp.Error = "xswitch is starting"
	case cmd == "show":
		data = sw.Status()
	case cmd == "fdb":
		data = sw.FDB()
	case cmd == "stats":
		data = sw.Stats()
	default:
		resp.Error = fmt.Sprintf("unknown command %q; use show, fdb or stats", cmd)
	}
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			resp.Error = "encode: " + err.Error()
		} else {
			resp.Data = b
		}
	}
	_ = json.NewEncoder(c).Encode(resp)
}

// close stops listening (removing a filesystem socket) and waits for the
// requests in progress.
func (s *controlServer) close() {
	s.ln.Close()
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
