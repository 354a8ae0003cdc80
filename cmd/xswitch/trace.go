package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	vswitch "xswitch/switch"
)

// tracer is a switch that traces frames (vswitch.Switch).
type tracer interface {
	Trace(vswitch.TraceRequest) (*vswitch.TraceResult, error)
}

// serveTrace answers `trace` + a JSON vswitch.TraceRequest.
func serveTrace(s *controlServer, c net.Conn, body *bufio.Reader) {
	var req vswitch.TraceRequest
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		reply(c, nil, fmt.Errorf("trace: bad request: %w", err))
		return
	}
	s.mu.RLock()
	var res *vswitch.TraceResult
	var err error
	switch t, ok := s.sw.(tracer); {
	case s.sw == nil:
		err = errStarting
	case !ok:
		err = errors.New("trace: this switch cannot trace")
	default:
		res, err = t.Trace(req)
	}
	s.mu.RUnlock()
	reply(c, res, err)
}

// ctlTrace is `xswitch ctl trace BRIDGE in_port=PORT field=value... | --hex FRAME`.
func ctlTrace(sock string, asJSON bool, args []string, stdout, stderr io.Writer) int {
	bridge, kv, hexFrame, err := parseTraceArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "xswitch ctl trace: %v\nusage: xswitch ctl trace BRIDGE in_port=PORT dl_src=MAC dl_dst=MAC [%s=...] | --hex FRAME\n",
			err, strings.Join(traceFields[3:], "= "))
		return 2
	}
	req := vswitch.TraceRequest{Bridge: bridge, InPort: kv["in_port"]}
	if hexFrame != "" {
		req.Frame, err = hex.DecodeString(strings.NewReplacer(":", "", " ", "", "\n", "").Replace(hexFrame))
		if err != nil {
			fmt.Fprintf(stderr, "xswitch ctl trace: --hex: %v (write the frame as hex digits, e.g. from tshark -x)\n", err)
			return 2
		}
	} else if req.Frame, err = buildTraceFrame(kv); err != nil {
		fmt.Fprintf(stderr, "xswitch ctl trace: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data, err := requestBody(ctx, sock, "trace", req)
	if err != nil {
		fmt.Fprintf(stderr, "xswitch ctl trace: %v\n", err)
		return 1
	}
	if asJSON {
		return printJSON(data, stdout, stderr)
	}
	var res vswitch.TraceResult
	if err := json.Unmarshal(data, &res); err != nil {
		fmt.Fprintf(stderr, "xswitch ctl trace: %v\n", err)
		return 1
	}
	formatTrace(stdout, &res)
	return 0
}

// printJSON prints a reply's data indented.
func printJSON(data json.RawMessage, stdout, stderr io.Writer) int {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		fmt.Fprintf(stderr, "xswitch ctl: %v\n", err)
		return 1
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintf(stdout, "%s\n", b)
	return 0
}
