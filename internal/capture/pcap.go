package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// WritePcap writes frames as a classic libpcap file (Ethernet link type,
// microsecond timestamps one second apart), e.g. to decode frames built by a
// test with tshark.
func WritePcap(path string, frames [][]byte) error {
	if err := os.WriteFile(path, EncodePcap(frames), 0o644); err != nil {
		return fmt.Errorf("write pcap: %w", err)
	}
	return nil
}

// EncodePcap is the content of the file WritePcap writes.
func EncodePcap(frames [][]byte) []byte {
	b := make([]byte, 0, 24+len(frames)*(16+128))
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0)      // thiszone
	b = binary.LittleEndian.AppendUint32(b, 0)      // sigfigs
	b = binary.LittleEndian.AppendUint32(b, 262144) // snaplen
	b = binary.LittleEndian.AppendUint32(b, linkTypeEthernet)
	for i, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, uint32(1700000000+i))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

const (
	pcapHeaderLen = 24
	pcapRecordLen = 16
	// maxPcapRecord bounds a record's captured length: tcpdump's default
	// snap length is 262144; anything larger is a corrupt file, not a frame.
	maxPcapRecord    = 262144
	linkTypeEthernet = 1
)

// errNoHeader: the file does not yet hold a whole pcap header (tcpdump
// writes it together with the first packet).
var errNoHeader = errors.New("pcap: file shorter than its 24-byte header")

// ParsePcap returns the frames (captured bytes) of a classic libpcap file
// as tcpdump -w writes it: either byte order, microsecond or nanosecond
// timestamps, Ethernet link type, whole frames. A last record cut short is left out: the file may be one
// tcpdump is still writing. The frames share b's memory.
func ParsePcap(b []byte) ([][]byte, error) {
	if len(b) < pcapHeaderLen {
		return nil, errNoHeader
	}
	var order binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		order = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("pcap: magic %#08x is not a classic pcap file (pcapng is not read here)", binary.LittleEndian.Uint32(b))
	}
	if lt := order.Uint32(b[20:]); lt != linkTypeEthernet {
		return nil, fmt.Errorf("pcap: link type %d, want %d (Ethernet): capture on one device, not \"any\"", lt, linkTypeEthernet)
	}
	var frames [][]byte
	for off := pcapHeaderLen; len(b)-off >= pcapRecordLen; {
		incl, orig := order.Uint32(b[off+8:]), order.Uint32(b[off+12:])
		if incl > maxPcapRecord {
			return frames, fmt.Errorf("pcap: record at offset %d claims %d bytes (more than %d): corrupt file", off, incl, maxPcapRecord)
		}
		if incl != orig {
			return frames, fmt.Errorf("pcap: record at offset %d holds %d of the frame's %d bytes (snap length too small)", off, incl, orig)
		}
		start := off + pcapRecordLen
		if len(b)-start < int(incl) {
			break // being written
		}
		frames = append(frames, b[start:start+int(incl)])
		off = start + int(incl)
	}
	return frames, nil
}

// ReadPcap reads the frames of the pcap file at path (see ParsePcap).
func ReadPcap(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pcap: %w", err)
	}
	frames, err := ParsePcap(b)
	if err != nil {
		return frames, fmt.Errorf("%s: %w", path, err)
	}
	return frames, nil
}
