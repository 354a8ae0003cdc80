package offload

import (
	"encoding/binary"
	"errors"
)

// VnetHdrLen is the size of struct virtio_net_hdr (include/uapi/linux/
// virtio_net.h), which a TAP opened with IFF_VNET_HDR puts in front of every
// frame (the default TUNSETVNETHDRSZ).
const VnetHdrLen = 10

// virtio-net header flags.
const (
	FlagNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: checksum at CsumStart+CsumOffset to be finished
	FlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID: checksum already verified
	FlagRSCInfo   = 4 // VIRTIO_NET_HDR_F_RSC_INFO: device-to-driver only; refused here
)

// virtio-net gso_type values.
const (
	GSONone  = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   = 3    // VIRTIO_NET_HDR_GSO_UDP (UFO, IP fragmentation): refused
	GSOTCPv6 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOUDPL4 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4 (USO, TUN_F_USO4/6)
	GSOECN   = 0x80 // VIRTIO_NET_HDR_GSO_ECN: TCP with CWR; combined with TCPV4/TCPV6
)

// VnetHdr is struct virtio_net_hdr. Its 16-bit fields are little-endian on
// the wire: TUN uses the host's byte order for legacy virtio headers unless
// TUNSETVNETBE is set, and xswitch runs on little-endian hosts (x86-64,
// arm64). On a big-endian host the TAP must be told TUNSETVNETLE.
// For a TAP, CsumStart and HdrLen count from the Ethernet header.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // headers length; a hint only: the kernel may put the whole linear part here
	GSOSize    uint16 // payload bytes per segment
	CsumStart  uint16
	CsumOffset uint16
}

// ErrShortVnetHdr: fewer than VnetHdrLen bytes.
var ErrShortVnetHdr = errors.New("offload: virtio-net header shorter than 10 bytes")

// DecodeVnetHdr reads the header from the first VnetHdrLen bytes of b.
func DecodeVnetHdr(b []byte) (VnetHdr, error) {
	if len(b) < VnetHdrLen {
		return VnetHdr{}, ErrShortVnetHdr
	}
	return VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}, nil
}

// Encode writes h into the first VnetHdrLen bytes of b.
func (h VnetHdr) Encode(b []byte) error {
	if len(b) < VnetHdrLen {
		return ErrShortVnetHdr
	}
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	return nil
}

// IsGSO reports whether h asks for segmentation.
func (h VnetHdr) IsGSO() bool { return h.GSOType != GSONone }

// Csum is the checksum h asks to finish over frame (valid when NEEDS_CSUM
// is set and Validate accepted h).
func (h VnetHdr) Csum(frame []byte) L4Csum {
	return L4Csum{Start: int(h.CsumStart), Offset: int(h.CsumOffset), End: len(frame)}
}

// Validate checks h against the frame that follows it. For a GSO header it
// parses the frame (hdr_len is not trusted) and returns its headers; the
// gso_type must match the IP version and L4 protocol, gso_size must be
// non-zero, and a NEEDS_CSUM checksum must be the L4 one. For any header,
// csum_start+csum_offset and hdr_len must lie inside the frame.
func (h VnetHdr) Validate(frame []byte) (Frame, DropReason) {
	if h.Flags&^(FlagNeedsCsum|FlagDataValid) != 0 {
		return Frame{}, DropVnetFlags
	}
	if int(h.HdrLen) > len(frame) {
		return Frame{}, DropVnetHdrLen
	}
	if h.Flags&FlagNeedsCsum != 0 && int(h.CsumStart)+int(h.CsumOffset)+2 > len(frame) {
		return Frame{}, DropVnetCsum
	}
	if !h.IsGSO() {
		return Frame{}, DropNone
	}
	return h.validateGSO(frame)
}

func (h VnetHdr) validateGSO(frame []byte) (Frame, DropReason) {
	wantProto, wantV6 := uint8(protoTCP), false
	switch h.GSOType &^ GSOECN {
	case GSOTCPv4:
	case GSOTCPv6:
		wantV6 = true
	case GSOUDPL4:
		if h.GSOType&GSOECN != 0 {
			return Frame{}, DropVnetGSOType
		}
		wantProto = protoUDP
	default:
		return Frame{}, DropVnetGSOType
	}
	if h.GSOSize == 0 {
		return Frame{}, DropVnetGSOSize
	}
	f, r := ParseFrame(frame)
	if r != DropNone {
		return f, r
	}
	if f.Proto != wantProto || (wantProto == protoTCP && f.IPv6 != wantV6) {
		return f, DropVnetGSOProto
	}
	if f.Proto == protoTCP && frame[f.L4+13]&(tcpFlagSYN|tcpFlagRST) != 0 {
		return f, DropVnetGSOFlags
	}
	if h.Flags&FlagNeedsCsum != 0 && (int(h.CsumStart) != f.L4 || int(h.CsumOffset) != f.CsumOffset()) {
		return f, DropVnetCsum
	}
	return f, DropNone
}
