package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	vswitch "xswitch/switch"
)

// captureRequest is the body of a `capture` request.
type captureRequest struct {
	Target   string `json:"target"`  // port name or tunnel:REMOTE
	Snaplen  int    `json:"snaplen"` // 0: whole frames
	Count    int    `json:"count"`   // stop after this many frames; 0: no limit
	Duration int64  `json:"duration_ms"`
}

// captureInfo is the reply that precedes the pcapng stream.
type captureInfo struct {
	Target  string `json:"target"`
	Kind    string `json:"kind"`
	Snaplen int    `json:"snaplen"`
}

// capturer is a switch that captures frames (vswitch.Switch).
type capturer interface {
	StartCapture(target string, snaplen int) (*vswitch.Capture, error)
}

// captureTick is how often the server drains the capture's rings: at
// 1 Mpps that is 10000 frames, well within the rings (1 MB per poller).
const captureTick = 10 * time.Millisecond

// serveCapture answers `capture` + a JSON captureRequest: one JSON reply
// line, then a pcapng stream until the count, the duration, the client
// closing its side, or the switch stopping ends it. The capture holds no
// lock of the server while it streams.
func serveCapture(s *controlServer, c net.Conn, body *bufio.Reader) {
	var req captureRequest
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		reply(c, nil, fmt.Errorf("capture: bad request: %w", err))
		return
	}
	if req.Count < 0 || req.Duration < 0 || req.Snaplen < 0 || req.Snaplen > vswitch.MaxSnaplen {
		reply(c, nil, fmt.Errorf("capture: count, duration and snaplen must not be negative, snaplen at most %d", vswitch.MaxSnaplen))
		return
	}
	s.mu.RLock()
	sw := s.sw
	var cp *vswitch.Capture
	var err error
	switch cs, ok := sw.(capturer); {
	case sw == nil:
		err = errStarting
	case !ok:
		err = errors.New("capture: this switch cannot capture")
	default:
		cp, err = cs.StartCapture(req.Target, req.Snaplen)
	}
	s.mu.RUnlock()
	if err != nil {
		reply(c, nil, err)
		return
	}
	defer cp.Stop()
	_ = c.SetDeadline(time.Time{}) // streams as long as asked
	if req.Duration > 0 {
		_ = c.SetWriteDeadline(time.Now().Add(time.Duration(req.Duration)*time.Millisecond + 5*time.Second))
	}
	reply(c, captureInfo{Target: cp.Target, Kind: cp.Kind, Snaplen: cp.Snaplen}, nil)
	s.stream(c, body, sw, cp, req)
}

// stream writes the capture as pcapng until it ends.
func (s *controlServer) stream(c net.Conn, body *bufio.Reader, sw controlled, cp *vswitch.Capture, req captureRequest) {
	st := captureStats{Start: time.Now().UnixNano()}
	w := bufio.NewWriterSize(c, 256<<10)
	if _, err := w.Write(pcapngHeader(cp.Target, cp.Snaplen)); err != nil {
		return
	}
	peerDone := make(chan struct{})
	go func() {
		// The client closes its side (ctrl-C) or goes away.
		_, _ = io.Copy(io.Discard, body)
		close(peerDone)
	}()
	var end <-chan time.Time
	if req.Duration > 0 {
		t := time.NewTimer(time.Duration(req.Duration) * time.Millisecond)
		defer t.Stop()
		end = t.C
	}
	tick := time.NewTicker(captureTick)
	defer tick.Stop()
	var buf []byte
	drain := func() error {
		left := 0
		if req.Count > 0 {
			left = req.Count - int(st.Delivered)
		}
		buf = buf[:0]
		st.Delivered += uint64(cp.Drain(left, func(f vswitch.CapturedFrame) { buf = appendEPB(buf, f) }))
		if _, err := w.Write(buf); err != nil {
			return err
		}
		return w.Flush()
	}
	for {
		if err := drain(); err != nil {
			return // the client is gone
		}
		if req.Count > 0 && st.Delivered >= uint64(req.Count) {
			break
		}
		stopped := false
		select {
		case <-tick.C:
		case <-end:
			stopped = true
		case <-peerDone:
			stopped = true
		}
		if stopped || !s.attached(sw) {
			cp.Stop()
			if err := drain(); err != nil {
				return
			}
			break
		}
	}
	cp.Stop()
	st.End, st.Lost = time.Now().UnixNano(), cp.Lost()
	_, _ = w.Write(isb(st))
	_ = w.Flush()
}

// attached reports whether sw is still the switch the server serves.
func (s *controlServer) attached(sw controlled) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sw == sw
}

// ctlCapture is `xswitch ctl capture PORT [-c COUNT] [-d DURATION]
// [--snaplen N] -w FILE|-`.
func ctlCapture(sock string, _ bool, args []string, stdout, stderr io.Writer) int {
	req, out, err := parseCaptureArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "xswitch ctl capture: %v\nusage: xswitch ctl capture PORT|tunnel:REMOTE [-c COUNT] [-d DURATION] [--snaplen N] -w FILE|-\n", err)
		return 2
	}
	w := stdout
	if out != "-" {
		f, err := os.Create(out)
		if err != nil {
			fmt.Fprintf(stderr, "xswitch ctl capture: %v\n", err)
			return 1
		}
		defer f.Close()
		w = f
	}
	scan, info, err := runCapture(sock, req, w, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "xswitch ctl capture: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "%d frames captured on %s (%d received, %d sent)", scan.Frames, info.Target, scan.In, scan.Out)
	if scan.Lost > 0 {
		fmt.Fprintf(stderr, "; %d copies lost: the capture did not keep up (the switch forwarded those frames)", scan.Lost)
	}
	fmt.Fprintln(stderr)
	return 0
}

func parseCaptureArgs(args []string) (captureRequest, string, error) {
	var req captureRequest
	out := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		var v string
		var err error
		switch a {
		case "-c", "--count", "-w", "--write", "-d", "--duration", "--snaplen":
			if v, err = val(); err != nil {
				return req, "", err
			}
		default:
			if req.Target != "" || strings.HasPrefix(a, "-") {
				return req, "", fmt.Errorf("unexpected argument %q", a)
			}
			req.Target = a
			continue
		}
		switch a {
		case "-c", "--count":
			if req.Count, err = strconv.Atoi(v); err != nil || req.Count <= 0 {
				return req, "", fmt.Errorf("-c %s: write a positive frame count", v)
			}
		case "-w", "--write":
			out = v
		case "-d", "--duration":
			d, err := time.ParseDuration(v)
			if n, nerr := strconv.Atoi(v); nerr == nil {
				d, err = time.Duration(n)*time.Second, nil
			}
			if err != nil || d <= 0 {
				return req, "", fmt.Errorf("-d %s: write a duration such as 10s or 500ms", v)
			}
			req.Duration = d.Milliseconds()
		case "--snaplen":
			if req.Snaplen, err = strconv.Atoi(v); err != nil || req.Snaplen < 64 || req.Snaplen > vswitch.MaxSnaplen {
				return req, "", fmt.Errorf("--snaplen %s: write 64..%d bytes", v, vswitch.MaxSnaplen)
			}
		}
	}
	switch {
	case req.Target == "":
		return req, "", errors.New("give the port to capture (a port name, or tunnel:REMOTE_IP)")
	case out == "":
		return req, "", errors.New("give -w FILE (pcapng), or -w - for standard output (e.g. | tshark -r -)")
	}
	return req, out, nil
}

// runCapture sends the request and copies the pcapng stream to w until the
// server ends it; ctrl-C (SIGINT/SIGTERM) asks the server to end it.
func runCapture(sock string, req captureRequest, w io.Writer, stderr io.Writer) (*pcapngScan, captureInfo, error) {
	var info captureInfo
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, info, fmt.Errorf("connect to xswitch at %s (is it running in this network namespace? `ip netns exec NS xswitch ctl ...`): %w", sock, err)
	}
	defer conn.Close()
	b, _ := json.Marshal(req)
	if _, err := fmt.Fprintf(conn, "capture\n%s\n", b); err != nil {
		return nil, info, fmt.Errorf("send capture: %w", err)
	}
	r := bufio.NewReaderSize(conn, 256<<10)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, info, fmt.Errorf("read reply to capture: %w", err)
	}
	var resp response
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, info, fmt.Errorf("read reply to capture: %w", err)
	}
	if resp.Error != "" {
		return nil, info, errors.New(resp.Error)
	}
	if err := json.Unmarshal(resp.Data, &info); err != nil {
		return nil, info, fmt.Errorf("read reply to capture: %w", err)
	}
	fmt.Fprintf(stderr, "capturing on %s (%s), snaplen %d; ctrl-C stops\n", info.Target, info.Kind, info.Snaplen)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
			// Half-close: the server writes what it has and the
			// statistics, then closes.
			if uc, ok := conn.(*net.UnixConn); ok {
				_ = uc.CloseWrite()
			}
		case <-done:
		}
	}()
	scan := &pcapngScan{}
	if _, err := io.Copy(io.MultiWriter(w, scan), r); err != nil {
		return nil, info, fmt.Errorf("write the capture: %w", err)
	}
	if err := scan.check(); err != nil {
		return nil, info, err
	}
	if !scan.Finished {
		return scan, info, fmt.Errorf("the capture ended without its statistics (%d frames written): did xswitch stop?", scan.Frames)
	}
	return scan, info, nil
}
