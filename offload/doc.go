// Package offload finishes and emulates the checksum and segmentation
// offloads that Linux hands to a virtual device, so that xswitch can move
// frames between a veth/TAP (where the kernel skips that work) and a Geneve
// tunnel (where every frame must be complete and fit the MTU):
//
//   - IsPartial / CompleteL4 / Complete: detect a CHECKSUM_PARTIAL TCP/UDP
//     frame (its checksum field holds only the folded pseudo-header sum) and
//     finish its checksum in place.
//   - VnetHdr: the 10-byte struct virtio_net_hdr that a TAP opened with
//     IFF_VNET_HDR puts in front of every frame, its decoding, encoding and
//     validation against the frame it describes.
//   - Segmenter: TSO/USO in software, one large frame from the TAP into
//     MTU-sized frames written straight into caller buffers (UMEM frames).
//   - Coalescer: GRO in software, TCP segments of a burst merged into one
//     large frame with a virtio-net header, toward the TAP.
//
// Nothing here allocates after construction; nothing panics on bad input:
// a malformed frame or header is reported as a DropReason for a counter.
// Frames start at the Ethernet header; up to two VLAN tags (0x8100, 0x88a8)
// are accepted. IPv4 with options is parsed; IPv6 extension headers and IP
// fragments are not (such frames are passed on untouched).
package offload
