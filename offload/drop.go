package offload

// DropReason says why a frame or header was refused. It is small so that a
// caller can keep one counter per reason in an array indexed by it.
type DropReason uint8

const (
	DropNone           DropReason = iota
	DropTooShort                  // frame ends inside the Ethernet, VLAN, IP or L4 header
	DropNotIP                     // ethertype is neither IPv4 nor IPv6
	DropBadIPHeader               // IP version or IPv4 header length wrong
	DropBadIPLength               // IP length field larger than the frame (or IPv6 jumbo/zero)
	DropIPFragment                // an IPv4 fragment
	DropNotTCPUDP                 // L4 protocol is neither TCP nor UDP (IPv6: no extension headers)
	DropBadL4Header               // TCP data offset or UDP header/length does not fit the IP payload
	DropVnetShort                 // fewer than VnetHdrLen bytes for the virtio-net header
	DropVnetFlags                 // unknown virtio-net flags
	DropVnetGSOType               // unknown or unsupported gso_type (UFO, ECN without TCP)
	DropVnetGSOSize               // gso_size is 0 for a GSO frame
	DropVnetGSOProto              // gso_type does not match the frame's IP version / L4 protocol
	DropVnetGSOFlags              // TCP SYN or RST in a GSO frame (cannot be cut into segments)
	DropVnetCsum                  // csum_start/csum_offset outside the frame or not at the L4 checksum
	DropVnetHdrLen                // hdr_len larger than the frame
	DropMTUTooSmall               // the headers alone do not fit the maximum segment length
	DropBufferTooSmall            // a caller buffer cannot hold the segment
	NumDrops                      // number of reasons, for counter arrays
)

var dropNames = [NumDrops]string{
	DropNone:           "none",
	DropTooShort:       "too_short",
	DropNotIP:          "not_ip",
	DropBadIPHeader:    "bad_ip_header",
	DropBadIPLength:    "bad_ip_length",
	DropIPFragment:     "ip_fragment",
	DropNotTCPUDP:      "not_tcp_udp",
	DropBadL4Header:    "bad_l4_header",
	DropVnetShort:      "vnet_short",
	DropVnetFlags:      "vnet_flags",
	DropVnetGSOType:    "vnet_gso_type",
	DropVnetGSOSize:    "vnet_gso_size",
	DropVnetGSOProto:   "vnet_gso_proto",
	DropVnetGSOFlags:   "vnet_gso_flags",
	DropVnetCsum:       "vnet_csum",
	DropVnetHdrLen:     "vnet_hdr_len",
	DropMTUTooSmall:    "mtu_too_small",
	DropBufferTooSmall: "buffer_too_small",
}

// String gives a stable snake_case name, used as a counter label.
func (r DropReason) String() string {
	if r < NumDrops {
		return dropNames[r]
	}
	return "unknown"
}
