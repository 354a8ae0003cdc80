//go:build !xskready

package vswitch

// desc is xsk.Desc (struct xdp_desc) until the xsk socket layer lands.
type desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// txQueue is one AF_XDP socket's transmit side (pending the xsk sockets).
type txQueue struct{}
