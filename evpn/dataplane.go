package evpn

import (
	"net/netip"

	"xswitch/flowtable"
)

// Dataplane is what the speaker asks of the switch. The speaker calls it
// from its own goroutines (BGP events, and the caller of LocalMACLearned /
// LocalMACGone), one call at a time, never from the packet path; the
// methods must not call back into the Speaker.
//
// Order guarantees, per (vni, vtep): AddTunnel comes before any
// AddFloodVTEP or SetRemoteMAC that names the VTEP, and RemoveTunnel only
// after the last flood entry and remote MAC on it were removed. An error is
// logged and counted (dataplane_errors); the speaker's state goes on as if
// the call had succeeded, so a later remove still comes.
type Dataplane interface {
	// AddTunnel creates the Geneve tunnel to vtep in the bridge of vni.
	AddTunnel(vni uint32, vtep netip.Addr) error
	// RemoveTunnel deletes it (nothing refers to it any more).
	RemoveTunnel(vni uint32, vtep netip.Addr) error
	// AddFloodVTEP puts the tunnel into the bridge's head-end replication
	// list: broadcast, multicast (and unknown unicast, see
	// Config.FloodUnknown) go to it.
	AddFloodVTEP(vni uint32, vtep netip.Addr) error
	// RemoveFloodVTEP takes it out of the list.
	RemoveFloodVTEP(vni uint32, vtep netip.Addr) error
	// SetRemoteMAC binds mac to the tunnel to vtep, replacing a binding to
	// another tunnel or a local port (the MAC moved: seq is the RFC 7432
	// MAC mobility sequence number of the route that won). Learning from
	// tunnel traffic must not move such an entry; learning on a local port
	// may (the MAC moved here: the switch then calls LocalMACLearned).
	SetRemoteMAC(vni uint32, mac flowtable.MAC, vtep netip.Addr, seq uint32) error
	// RemoveRemoteMAC forgets the remote binding of mac; an entry the MAC
	// has on a local port meanwhile stays.
	RemoveRemoteMAC(vni uint32, mac flowtable.MAC) error
}
