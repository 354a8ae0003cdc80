package capture

import (
	"encoding/binary"
	"fmt"
	"os"
)

// WritePcap writes frames as a classic libpcap file (Ethernet link type,
// microsecond timestamps one second apart), e.g. to decode frames built by a
// test with tshark.
func WritePcap(path string, frames [][]byte) error {
	b := make([]byte, 0, 24+len(frames)*(16+128))
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0)      // thiszone
	b = binary.LittleEndian.AppendUint32(b, 0)      // sigfigs
	b = binary.LittleEndian.AppendUint32(b, 262144) // snaplen
	b = binary.LittleEndian.AppendUint32(b, 1)      // LINKTYPE_ETHERNET
	for i, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, uint32(1700000000+i))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write pcap: %w", err)
	}
	return nil
}
