package evpn

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"go.uber.org/zap"

	"xswitch/flowtable"
)

// Speaker is the EVPN control plane of one switch: an embedded GoBGP
// server that peers with the route reflectors, announces the local VTEP
// and MACs, and drives the Dataplane from the routes it receives.
type Speaker struct {
	cfg *Config
	log *zap.Logger
	srv *server.BgpServer

	mu      sync.Mutex // serialises the table: BGP events and local MAC events
	t       *table
	cancel  context.CancelFunc
	started time.Time
	stopped bool
}

// New returns a speaker for a validated configuration (Config.Validate
// returned no error). Nothing runs before Start.
func New(cfg *Config, dp Dataplane, log *zap.Logger) (*Speaker, error) {
	if !cfg.routerID.IsValid() || !cfg.localIP.IsValid() || len(cfg.VNIs) == 0 {
		return nil, fmt.Errorf("evpn: configuration not validated (call Validate first)")
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Speaker{cfg: cfg, log: log.Named("evpn")}
	s.srv = server.NewBgpServer(server.LoggerOption(newSlogZap(s.log.Named("gobgp")), nil))
	s.t = newTable(cfg, dp, gobgpAnnouncer{s.srv}, s.log)
	return s, nil
}

// Start starts the BGP server, announces the type-3 route of every VNI and
// connects to the neighbours (sessions come up in the background).
func (s *Speaker) Start(ctx context.Context) error {
	go s.srv.Serve()
	c := s.cfg
	g := &api.Global{
		Asn:        uint32(c.ASN),
		RouterId:   c.routerID.String(),
		ListenPort: -1, // we connect to the reflectors; nothing listens on 179
	}
	if c.GracefulRestart.Enabled {
		g.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(c.restart / time.Second)}
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		s.srv.Stop()
		return fmt.Errorf("evpn: start BGP: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	err := s.srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnBestPath: func(paths []*apiutil.Path, _ time.Time) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.stopped {
				s.t.bestPaths(paths)
			}
		},
		OnPeerUpdate: s.peerEvent,
	}, server.WatchBestPath(true), server.WatchPeer())
	if err == nil {
		s.mu.Lock()
		err = s.t.announceMulticast()
		s.mu.Unlock()
	}
	for i := range c.Neighbors {
		if err != nil {
			break
		}
		err = s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(&c.Neighbors[i])})
	}
	if err != nil {
		s.Stop()
		return fmt.Errorf("evpn: %w", err)
	}
	s.started = time.Now()
	s.log.Info("EVPN speaker started", zap.Stringer("router_id", c.routerID), zap.Int64("asn", c.ASN),
		zap.Stringer("vtep", c.localIP), zap.Int("neighbors", len(c.Neighbors)), zap.Int("vnis", len(c.VNIs)))
	return nil
}

func (s *Speaker) peer(n *NeighborConfig) *api.Peer {
	c := s.cfg
	asn := uint32(c.ASN)
	if n.ASN != 0 {
		asn = uint32(n.ASN)
	}
	hold := uint64(c.holdTime / time.Second)
	afi := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN}, Enabled: true}}
	p := &api.Peer{
		Conf:     &api.PeerConf{NeighborAddress: n.addr.String(), PeerAsn: asn, AuthPassword: n.Password},
		Timers:   &api.Timers{Config: &api.TimersConfig{HoldTime: hold, KeepaliveInterval: max(1, hold/3), ConnectRetry: 3, IdleHoldTimeAfterReset: 1}},
		AfiSafis: []*api.AfiSafi{afi},
	}
	if c.GracefulRestart.Enabled {
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(c.restart / time.Second)}
		afi.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	return p
}

func (s *Speaker) peerEvent(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev == nil || ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	f := []zap.Field{zap.Stringer("neighbor", st.NeighborAddress), zap.String("state", sessionState(st.SessionState))}
	if st.DisconnectMessage != "" {
		f = append(f, zap.String("reason", st.DisconnectMessage))
	}
	if st.SessionState == bgp.BGP_FSM_ESTABLISHED {
		s.log.Info("BGP session up", f...)
	} else {
		s.log.Info("BGP session not established", f...)
	}
}

// Stop closes the sessions (the neighbours withdraw our routes) and the
// server. The Dataplane is not called any more afterwards.
func (s *Speaker) Stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
	s.srv.Stop()
}

// LocalMACLearned tells the speaker that mac appeared on a local port or
// the internal port of the bridge of vni; ip is its address when known
// (from ARP/ND), else the zero Addr. Calling it again for a MAC already
// announced only adds a new IP. The switch calls it from a control-path
// goroutine (diffing its MAC table), never from the packet path.
func (s *Speaker) LocalMACLearned(vni uint32, mac flowtable.MAC, ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.t.localLearned(vni, mac, ip.Unmap())
	}
}

// LocalMACGone tells the speaker that mac aged out of the bridge of vni or
// is no longer on a local port.
func (s *Speaker) LocalMACGone(vni uint32, mac flowtable.MAC) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.t.localGone(vni, mac)
	}
}

// FloodUnknownUnicast says whether the switch floods unknown unicast of an
// EVPN bridge to its flood list.
func (s *Speaker) FloodUnknownUnicast() bool { return s.cfg.FloodUnknown() }

// gobgpAnnouncer puts our routes into GoBGP's RIB.
type gobgpAnnouncer struct{ srv *server.BgpServer }

func (g gobgpAnnouncer) announce(p *apiutil.Path) error {
	_, err := g.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{p}})
	return err
}

func (g gobgpAnnouncer) withdraw(p *apiutil.Path) error {
	// Without the MAC mobility community: GoBGP checks an announced
	// sequence number against the RIB, which after a move holds a higher
	// one; for a withdraw only the NLRI counts.
	q := *p
	q.Attrs = nil
	for _, a := range p.Attrs {
		if ec, ok := a.(*bgp.PathAttributeExtendedCommunities); ok {
			var keep []bgp.ExtendedCommunityInterface
			for _, c := range ec.Value {
				if _, mm := c.(*bgp.MacMobilityExtended); !mm {
					keep = append(keep, c)
				}
			}
			a = bgp.NewPathAttributeExtendedCommunities(keep)
		}
		q.Attrs = append(q.Attrs, a)
	}
	q.Withdrawal = true
	return g.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{&q}})
}

// Status is what `ctl bgp` shows.
type Status struct {
	RouterID            string           `json:"router_id"`
	ASN                 int64            `json:"asn"`
	VTEP                string           `json:"vtep"`
	Uptime              string           `json:"uptime"`
	FloodUnknownUnicast bool             `json:"flood_unknown_unicast"`
	Neighbors           []NeighborStatus `json:"neighbors"`
	VNIs                []VNIStatus      `json:"vnis"`
	Counters            Counters         `json:"counters"`
}

// NeighborStatus is one BGP session.
type NeighborStatus struct {
	Address    string `json:"address"`
	ASN        uint32 `json:"asn"`
	State      string `json:"state"`
	Uptime     string `json:"uptime,omitempty"` // since established
	Received   uint64 `json:"received"`         // EVPN routes received
	Accepted   uint64 `json:"accepted"`
	Advertised uint64 `json:"advertised"`
	Flaps      uint32 `json:"flaps"`
	LastError  string `json:"last_error,omitempty"`
}

// VNIStatus is one EVPN instance.
type VNIStatus struct {
	VNI             uint32       `json:"vni"`
	RD              string       `json:"rd"`
	ExportRTs       []string     `json:"route_targets"`
	FloodVTEPs      []netip.Addr `json:"flood_vteps"`
	RemoteMACs      int          `json:"remote_macs"` // installed in the data plane
	LocalMACs       int          `json:"local_macs"`
	ReceivedType2   int          `json:"received_type2"`
	ReceivedType3   int          `json:"received_type3"`
	AdvertisedType2 int          `json:"advertised_type2"`
	AdvertisedType3 int          `json:"advertised_type3"`
}

// Status reports the sessions, the routes per VNI and the counters.
func (s *Speaker) Status(ctx context.Context) Status {
	c := s.cfg
	st := Status{RouterID: c.routerID.String(), ASN: c.ASN, VTEP: c.localIP.String(), FloodUnknownUnicast: c.FloodUnknown()}
	if !s.started.IsZero() {
		st.Uptime = time.Since(s.started).Round(time.Second).String()
	}
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st.Neighbors = append(st.Neighbors, neighborStatus(p))
	})
	sort.Slice(st.Neighbors, func(i, j int) bool { return st.Neighbors[i].Address < st.Neighbors[j].Address })
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, vs := range s.t.vnis {
		st.VNIs = append(st.VNIs, s.t.vniStatus(vs))
	}
	sort.Slice(st.VNIs, func(i, j int) bool { return st.VNIs[i].VNI < st.VNIs[j].VNI })
	st.Counters = s.t.c
	st.Counters.Ignored = map[string]uint64{}
	for k, v := range s.t.c.Ignored {
		st.Counters.Ignored[k] = v
	}
	return st
}

func neighborStatus(p *api.Peer) NeighborStatus {
	n := NeighborStatus{Address: p.GetConf().GetNeighborAddress(), ASN: p.GetConf().GetPeerAsn()}
	ps := p.GetState()
	n.State = sessionStateAPI(ps.GetSessionState())
	n.Flaps = ps.GetFlops()
	n.LastError = ps.GetDisconnectMessage()
	if up := p.GetTimers().GetState().GetUptime(); up != nil && ps.GetSessionState() == api.PeerState_SESSION_STATE_ESTABLISHED {
		n.Uptime = time.Since(up.AsTime()).Round(time.Second).String()
	}
	for _, a := range p.GetAfiSafis() {
		if s := a.GetState(); s != nil && s.GetFamily().GetAfi() == api.Family_AFI_L2VPN {
			n.Received, n.Accepted, n.Advertised = s.GetReceived(), s.GetAccepted(), s.GetAdvertised()
		}
	}
	return n
}

func sessionStateAPI(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE:
		return "idle"
	case api.PeerState_SESSION_STATE_CONNECT:
		return "connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "opensent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

func sessionState(s bgp.FSMState) string {
	switch s {
	case bgp.BGP_FSM_IDLE:
		return "idle"
	case bgp.BGP_FSM_CONNECT:
		return "connect"
	case bgp.BGP_FSM_ACTIVE:
		return "active"
	case bgp.BGP_FSM_OPENSENT:
		return "opensent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return "unknown"
}
