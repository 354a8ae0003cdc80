package evpn

import (
	"fmt"
	"net/netip"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"xswitch/flowtable"
)

// Route types (RFC 7432 §7).
const (
	typeMACIP     = bgp.EVPN_ROUTE_TYPE_MAC_IP_ADVERTISEMENT  // 2
	typeMulticast = bgp.EVPN_INCLUSIVE_MULTICAST_ETHERNET_TAG // 3
)

// Reasons a received route is not used (counters and logs).
const (
	reasonMalformed   = "malformed"
	reasonUnsupported = "unsupported_route_type"
	reasonUnknownVNI  = "unknown_vni"
	reasonRTMismatch  = "route_target_mismatch"
	reasonNotGeneve   = "not_geneve"
	reasonPMSI        = "unsupported_pmsi"
	reasonOwn         = "own_route"
)

// route is a received EVPN route, reduced to what the data plane needs.
type route struct {
	key  string // the NLRI as GoBGP keys it (RD, Ethernet tag, MAC, IP / originator)
	kind uint8  // typeMACIP or typeMulticast
	vni  uint32
	mac  flowtable.MAC // type 2
	ip   netip.Addr    // type 2, when the route carries one
	vtep netip.Addr    // next hop (type 2), PMSI tunnel endpoint (type 3)
	seq  uint32        // MAC mobility sequence number (type 2; 0 when absent)
	rts  []uint64      // route targets (bgp.ExtCommRouteTargetKey)
}

// pathKey returns the key of an EVPN path, or an error for anything else.
func pathKey(p *apiutil.Path) (string, *bgp.EVPNNLRI, error) {
	if p == nil || p.Family != bgp.RF_EVPN {
		return "", nil, fmt.Errorf("not an l2vpn evpn path")
	}
	n, ok := p.Nlri.(*bgp.EVPNNLRI)
	if !ok || n == nil || n.RouteTypeData == nil {
		return "", nil, fmt.Errorf("no EVPN NLRI")
	}
	return n.String(), n, nil
}

// parsePath reduces a received best path to a route. The reason says why
// a path is not usable (one of the reason constants).
func parsePath(p *apiutil.Path) (route, string, error) {
	key, n, err := pathKey(p)
	if err != nil {
		return route{}, reasonMalformed, err
	}
	r := route{key: key, kind: n.RouteType}
	var nexthop netip.Addr
	var pmsi *bgp.PathAttributePmsiTunnel
	geneve, otherEncap := false, false
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			nexthop = a.Nexthop
		case *bgp.PathAttributePmsiTunnel:
			pmsi = a
		case *bgp.PathAttributeExtendedCommunities:
			for _, ec := range a.Value {
				switch ec := ec.(type) {
				case *bgp.EncapExtended:
					if ec.TunnelType == bgp.TUNNEL_TYPE_GENEVE {
						geneve = true
					} else {
						otherEncap = true
					}
				case *bgp.MacMobilityExtended:
					r.seq = ec.Sequence
				default:
					if _, st := ec.GetTypes(); st == bgp.EC_SUBTYPE_ROUTE_TARGET {
						if k, err := bgp.ExtCommRouteTargetKey(ec); err == nil {
							r.rts = append(r.rts, k)
						}
					}
				}
			}
		}
	}
	switch d := n.RouteTypeData.(type) {
	case *bgp.EVPNMacIPAdvertisementRoute:
		if d.MacAddressLength != 48 || len(d.MacAddress) != 6 || len(d.Labels) == 0 {
			return r, reasonMalformed, fmt.Errorf("MAC/IP route %s without a 48-bit MAC or a label", key)
		}
		r.mac = flowtable.MACFrom(d.MacAddress)
		if r.mac.IsMulticast() {
			return r, reasonMalformed, fmt.Errorf("MAC/IP route %s for a multicast MAC", key)
		}
		if d.IPAddressLength != 0 {
			r.ip = d.IPAddress
		}
		r.vni = d.Labels[0] & 0xffffff // RFC 8365 §5.1.3: the VNI fills the label field
		r.vtep = nexthop
	case *bgp.EVPNMulticastEthernetTagRoute:
		if pmsi == nil || pmsi.TunnelID == nil {
			return r, reasonMalformed, fmt.Errorf("inclusive multicast route %s without a PMSI tunnel attribute", key)
		}
		id, ok := pmsi.TunnelID.(*bgp.IngressReplTunnelID)
		if pmsi.TunnelType != bgp.PMSI_TUNNEL_TYPE_INGRESS_REPL || !ok {
			return r, reasonPMSI, fmt.Errorf("inclusive multicast route %s: PMSI tunnel type %d, not ingress replication", key, pmsi.TunnelType)
		}
		r.vni = pmsi.Label & 0xffffff
		r.vtep = id.Value
	default:
		return r, reasonUnsupported, fmt.Errorf("EVPN route type %d (%s) is not used", n.RouteType, key)
	}
	r.vtep = r.vtep.Unmap()
	if !r.vtep.IsValid() || r.vtep.IsUnspecified() || r.vtep.IsMulticast() || r.vtep.IsLoopback() {
		return r, reasonMalformed, fmt.Errorf("route %s: %v is not a tunnel endpoint", key, r.vtep)
	}
	if !geneve {
		why := "no encapsulation extended community"
		if otherEncap {
			why = "an encapsulation other than Geneve"
		}
		return r, reasonNotGeneve, fmt.Errorf("route %s from %v has %s", key, r.vtep, why)
	}
	return r, "", nil
}

// vniRoutes builds what one VNI announces.
type vniRoutes struct {
	vni    uint32
	rd     bgp.RouteDistinguisherInterface
	export []bgp.ExtendedCommunityInterface
	local  netip.Addr
}

func (v *vniRoutes) attrs(extra ...bgp.PathAttributeInterface) ([]bgp.PathAttributeInterface, []bgp.ExtendedCommunityInterface) {
	ecs := append([]bgp.ExtendedCommunityInterface{}, v.export...)
	ecs = append(ecs, bgp.NewEncapExtended(bgp.TUNNEL_TYPE_GENEVE))
	return append([]bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}, extra...), ecs
}

func (v *vniRoutes) path(n bgp.NLRI, attrs []bgp.PathAttributeInterface, ecs []bgp.ExtendedCommunityInterface) *apiutil.Path {
	mp, _ := bgp.NewPathAttributeMpReachNLRI(bgp.RF_EVPN, []bgp.PathNLRI{{NLRI: n}}, v.local)
	attrs = append(attrs, mp, bgp.NewPathAttributeExtendedCommunities(ecs))
	return &apiutil.Path{Family: bgp.RF_EVPN, Nlri: n, Attrs: attrs}
}

// multicast is the type-3 route: "flood this VNI's BUM traffic to me",
// PMSI ingress replication with the VNI as label (RFC 8365 §5.1.3).
func (v *vniRoutes) multicast() (*apiutil.Path, error) {
	n, err := bgp.NewEVPNMulticastEthernetTagRoute(v.rd, 0, v.local)
	if err != nil {
		return nil, fmt.Errorf("type-3 route of VNI %d: %w", v.vni, err)
	}
	id, err := bgp.NewIngressReplTunnelID(v.local)
	if err != nil {
		return nil, fmt.Errorf("type-3 route of VNI %d: %w", v.vni, err)
	}
	pmsi := bgp.NewPathAttributePmsiTunnel(bgp.PMSI_TUNNEL_TYPE_INGRESS_REPL, false, v.vni, id)
	attrs, ecs := v.attrs(pmsi)
	return v.path(n, attrs, ecs), nil
}

// macIP is a type-2 route for a local MAC (and IP when valid), label =
// VNI; seq > 0 adds the MAC mobility extended community (RFC 7432 §7.7).
func (v *vniRoutes) macIP(mac flowtable.MAC, ip netip.Addr, seq uint32) (*apiutil.Path, error) {
	esi := bgp.EthernetSegmentIdentifier{Type: bgp.ESI_ARBITRARY, Value: make([]byte, 9)}
	n, err := bgp.NewEVPNMacIPAdvertisementRoute(v.rd, esi, 0, mac.String(), ip, []uint32{v.vni})
	if err != nil {
		return nil, fmt.Errorf("type-2 route of %v in VNI %d: %w", mac, v.vni, err)
	}
	attrs, ecs := v.attrs()
	if seq > 0 {
		ecs = append(ecs, bgp.NewMacMobilityExtended(seq, false))
	}
	return v.path(n, attrs, ecs), nil
}
