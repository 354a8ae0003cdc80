package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	vswitch "xswitch/switch"
)

// pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html):
// what `xswitch ctl capture` streams. One section, one interface (the port),
// an Enhanced Packet Block per frame with its direction in epb_flags
// (tshark: frame.packet_flags_direction, 1 inbound, 2 outbound), and an
// Interface Statistics Block at the end with the copies the capture lost
// (isb_ifdrop) and the frames delivered (isb_usrdeliv). Little endian.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 0x00000001
	blockEPB = 0x00000006
	blockISB = 0x00000005
	bom      = 0x1A2B3C4D

	optEnd         = 0
	optShbUserAppl = 4
	optIfName      = 2
	optIfTsresol   = 9
	optEpbFlags    = 2
	optIsbStart    = 2
	optIsbEnd      = 3
	optIsbIfRecv   = 4
	optIsbIfDrop   = 5
	optIsbUsrDeliv = 8

	linkEthernet = 1
	// maxBlock bounds a block the reader accepts: a frame of MaxSnaplen
	// bytes and its headers.
	maxBlock = vswitch.MaxSnaplen + 1024
)

var le = binary.LittleEndian

// appendOpt appends one option, padded to 4 bytes.
func appendOpt(b []byte, code uint16, v []byte) []byte {
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	for i := len(v); i%4 != 0; i++ {
		b = append(b, 0)
	}
	return b
}

// block frames body as a block of type typ: type, total length, body,
// total length again.
func block(typ uint32, body []byte) []byte {
	n := uint32(12 + len(body))
	b := le.AppendUint32(nil, typ)
	b = le.AppendUint32(b, n)
	b = append(b, body...)
	return le.AppendUint32(b, n)
}

// pcapngHeader is the Section Header Block and the Interface Description
// Block of the captured port (nanosecond timestamps).
func pcapngHeader(ifName string, snaplen int) []byte {
	shb := le.AppendUint32(nil, bom)
	shb = le.AppendUint16(shb, 1)
	shb = le.AppendUint16(shb, 0)
	shb = le.AppendUint64(shb, ^uint64(0)) // section length: unknown
	shb = appendOpt(shb, optShbUserAppl, []byte("xswitch"))
	shb = appendOpt(shb, optEnd, nil)
	idb := le.AppendUint16(nil, linkEthernet)
	idb = le.AppendUint16(idb, 0)
	idb = le.AppendUint32(idb, uint32(snaplen))
	idb = appendOpt(idb, optIfName, []byte(ifName))
	idb = appendOpt(idb, optIfTsresol, []byte{9})
	idb = appendOpt(idb, optEnd, nil)
	return append(block(blockSHB, shb), block(blockIDB, idb)...)
}

// appendEPB appends an Enhanced Packet Block of f to b.
func appendEPB(b []byte, f vswitch.CapturedFrame) []byte {
	body := le.AppendUint32(nil, 0) // interface 0
	body = le.AppendUint32(body, uint32(uint64(f.Time)>>32))
	body = le.AppendUint32(body, uint32(f.Time))
	body = le.AppendUint32(body, uint32(len(f.Data)))
	body = le.AppendUint32(body, uint32(f.OrigLen))
	body = append(body, f.Data...)
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	dir := uint32(1) // inbound
	if f.Outbound {
		dir = 2
	}
	body = appendOpt(body, optEpbFlags, le.AppendUint32(nil, dir))
	body = appendOpt(body, optEnd, nil)
	return append(b, block(blockEPB, body)...)
}

// captureStats are the counts an Interface Statistics Block carries.
type captureStats struct {
	Start, End int64 // ns
	Delivered  uint64
	Lost       uint64
}

func isb(st captureStats) []byte {
	ts := func(t int64) []byte {
		v := le.AppendUint32(nil, uint32(uint64(t)>>32))
		return le.AppendUint32(v, uint32(t))
	}
	body := le.AppendUint32(nil, 0)
	body = append(body, ts(st.End)...)
	body = appendOpt(body, optIsbStart, ts(st.Start))
	body = appendOpt(body, optIsbEnd, ts(st.End))
	body = appendOpt(body, optIsbIfRecv, le.AppendUint64(nil, st.Delivered+st.Lost))
	body = appendOpt(body, optIsbIfDrop, le.AppendUint64(nil, st.Lost))
	body = appendOpt(body, optIsbUsrDeliv, le.AppendUint64(nil, st.Delivered))
	body = appendOpt(body, optEnd, nil)
	return block(blockISB, body)
}

// pcapngScan reads a pcapng stream as it passes (an io.Writer) and counts
// what the client reports: frames in and out, and the lost copies of the
// final statistics block. It checks the framing of every block.
type pcapngScan struct {
	buf      []byte
	Frames   int
	In, Out  int
	Lost     uint64
	Finished bool // the statistics block arrived
	err      error
}

var errPcapng = errors.New("pcapng stream")

func (s *pcapngScan) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	s.buf = append(s.buf, p...)
	for len(s.buf) >= 12 {
		typ, n := le.Uint32(s.buf), le.Uint32(s.buf[4:])
		if n < 12 || n%4 != 0 || n > maxBlock {
			s.err = fmt.Errorf("%w: block of type %#x with length %d", errPcapng, typ, n)
			return 0, s.err
		}
		if uint32(len(s.buf)) < n {
			break
		}
		if le.Uint32(s.buf[n-4:]) != n {
			s.err = fmt.Errorf("%w: block of type %#x: trailing length %d, leading %d", errPcapng, typ, le.Uint32(s.buf[n-4:]), n)
			return 0, s.err
		}
		s.block(typ, s.buf[8:n-4])
		s.buf = s.buf[n:]
	}
	return len(p), nil
}

func (s *pcapngScan) block(typ uint32, body []byte) {
	switch typ {
	case blockEPB:
		if len(body) < 20 {
			return
		}
		caplen := int(le.Uint32(body[12:]))
		optOff := 20 + (caplen+3)&^3
		if caplen > len(body) || optOff > len(body) {
			return
		}
		s.Frames++
		switch scanOpts(body[optOff:])[optEpbFlags] & 3 {
		case 1:
			s.In++
		case 2:
			s.Out++
		}
	case blockISB:
		if len(body) >= 12 {
			s.Lost = scanOpts(body[12:])[optIsbIfDrop]
			s.Finished = true
		}
	}
}

// scanOpts returns the options of a block holding integers (4 or 8 bytes)
// by code.
func scanOpts(b []byte) map[uint16]uint64 {
	out := map[uint16]uint64{}
	for len(b) >= 4 {
		code, n := le.Uint16(b), int(le.Uint16(b[2:]))
		if code == optEnd || 4+n > len(b) {
			break
		}
		switch n {
		case 4:
			out[code] = uint64(le.Uint32(b[4:]))
		case 8:
			out[code] = le.Uint64(b[4:])
		}
		b = b[min(len(b), 4+(n+3)&^3):]
	}
	return out
}

// check reports a stream that ended inside a block.
func (s *pcapngScan) check() error {
	if s.err != nil {
		return s.err
	}
	if len(s.buf) > 0 {
		return fmt.Errorf("%w: ends %d bytes into a block: %w", errPcapng, len(s.buf), io.ErrUnexpectedEOF)
	}
	return nil
}
