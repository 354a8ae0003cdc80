//go:build !xskready

package vswitch

import "errors"

// dataPlane is empty until the xsk socket layer lands: the switch starts
// with its internal ports and next hops but forwards nothing.
type dataPlane struct{}

func (d *dataPlane) open(s *Switch) error {
	s.log.Warn("AF_XDP data plane not built in yet (xsk sockets pending): internal ports only, no forwarding")
	return nil
}
func (d *dataPlane) start(s *Switch) error  { return nil }
func (d *dataPlane) stopPollers() error     { return nil }
func (d *dataPlane) close() error           { return nil }
func (d *dataPlane) umemStatus() UMEMStatus { return UMEMStatus{} }
func (d *dataPlane) portStatus(p *port) PortStatus {
	return PortStatus{Name: p.name, Kind: p.kind.String(), Copy: "none"}
}
func (d *dataPlane) cores() []*core { return nil }

var _ = errors.New
