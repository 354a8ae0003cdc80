package vswitch

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"xswitch/geneve"
)

// resolver keeps every tunnel's underlay next hop (route and neighbour MAC)
// current from the kernel: it resolves all tunnels at start, again on every
// route or neighbour change (netlink subscriptions), and once a second while
// some are unresolved. A missing neighbour is resolved by the kernel on
// demand: the resolver adds a *managed* neighbour entry (NTF_EXT_MANAGED,
// Linux 5.16+), which the kernel resolves and keeps reachable by itself,
// marked as xswitch's (NDA_PROTOCOL neighProtocol). It deletes the marked
// entries of the underlay at start (left by an instance that was killed)
// and at close. While a tunnel is unresolved its encapsulator is nil and
// the packet path counts no_neighbour drops.
type resolver struct {
	log      *zap.Logger
	ifindex  int
	ifname   string
	mac      net.HardwareAddr
	locals   []netip.Addr
	tunnels  []*tunnel
	h        *netlink.Handle // bound to the switch's network namespace
	nn       *neighNL        // likewise, for the marked neighbour entries
	mu       sync.Mutex
	added    map[netip.Addr]bool // managed neighbour entries we created (for the log)
	done     chan struct{}
	wg       sync.WaitGroup
	resolved map[*tunnel]bool
}

func newResolver(log *zap.Logger, ifindex int, ifname string, mac net.HardwareAddr, locals []netip.Addr, tunnels []*tunnel) *resolver {
	return &resolver{
		log: log, ifindex: ifindex, ifname: ifname, mac: mac, locals: locals, tunnels: tunnels,
		added: map[netip.Addr]bool{}, done: make(chan struct{}), resolved: map[*tunnel]bool{},
	}
}

// setTunnels replaces the tunnels to resolve (a new fabric generation) and
// resolves the new ones at once.
func (r *resolver) setTunnels(ts []*tunnel) {
	r.mu.Lock()
	r.tunnels = ts
	live := map[*tunnel]bool{}
	for _, t := range ts {
		live[t] = true
	}
	for t := range r.resolved {
		if !live[t] {
			delete(r.resolved, t)
		}
	}
	r.mu.Unlock()
	r.resolveAll()
}

// start subscribes to route and neighbour changes and opens its netlink
// handle, both in the network namespace of the calling thread (the
// resolver then works from any goroutine), and resolves every tunnel once.
func (r *resolver) start() error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	r.h = h
	if r.nn, err = openNeighNL(); err != nil {
		return err
	}
	if n := r.removeOwned(); n > 0 {
		r.log.Info("removed managed neighbour entries an earlier xswitch left", zap.Int("entries", n), zap.String("dev", r.ifname))
	}
	routes := make(chan netlink.RouteUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 256)
	errCb := func(err error) {
		select {
		case <-r.done: // the subscription's socket is being closed
		default:
			r.log.Warn("netlink subscription", zap.Error(err))
		}
	}
	if err := netlink.RouteSubscribeWithOptions(routes, r.done, netlink.RouteSubscribeOptions{ErrorCallback: errCb}); err != nil {
		return fmt.Errorf("subscribe to route changes: %w", err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, r.done, netlink.NeighSubscribeOptions{ErrorCallback: errCb}); err != nil {
		return fmt.Errorf("subscribe to neighbour changes: %w", err)
	}
	r.resolveAll()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-r.done:
				return
			case _, ok := <-routes:
				if !ok {
					routes = nil
					continue
				}
				drain(routes)
				r.resolveAll()
			case _, ok := <-neighs:
				if !ok {
					neighs = nil
					continue
				}
				drain(neighs)
				r.resolveAll()
			case <-tick.C:
				r.resolveAll()
			}
		}
	}()
	return nil
}

// drain empties a subscription channel without blocking: one re-resolve
// covers every change queued so far.
func drain[T any](c chan T) {
	for {
		select {
		case _, ok := <-c:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

func (r *resolver) resolveAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.tunnels {
		st, enc := r.resolve(t)
		ok := enc != nil
		old := t.enc.Load()
		prev := t.nh.Load()
		if enc != nil && old != nil && sameNextHop(prev, &st) {
			enc = old // unchanged: keep the encapsulator
		}
		if ok && r.resolved[t] && prev != nil && !sameNextHop(prev, &st) {
			r.log.Info("tunnel next hop changed", zap.String("bridge", t.br.name), zap.Stringer("remote", t.remote),
				zap.String("gateway", st.Gateway), zap.String("mac", st.MAC), zap.String("previous_gateway", prev.Gateway), zap.String("previous_mac", prev.MAC))
		}
		if enc != old {
			t.enc.Store(enc)
		}
		t.nh.Store(&st)
		if ok != r.resolved[t] {
			r.resolved[t] = ok
			if ok {
				r.log.Info("tunnel next hop resolved", zap.String("bridge", t.br.name), zap.Stringer("remote", t.remote),
					zap.String("gateway", st.Gateway), zap.String("mac", st.MAC))
			} else {
				r.log.Warn("tunnel next hop unresolved", zap.String("bridge", t.br.name), zap.Stringer("remote", t.remote),
					zap.String("state", st.State), zap.String("error", st.Error))
			}
		}
	}
}

func sameNextHop(a, b *NextHopStatus) bool {
	return a != nil && b != nil && a.MAC == b.MAC && a.State == b.State && a.Gateway == b.Gateway && a.Dev == b.Dev && a.src == b.src
}

// usableNUD are neighbour states with a usable link-layer address.
const usableNUD = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// resolve finds t's route and neighbour and builds its encapsulator (nil
// when unresolved).
func (r *resolver) resolve(t *tunnel) (NextHopStatus, *geneve.Encapsulator) {
	st := NextHopStatus{State: "no_route", Dev: r.ifname}
	rts, err := r.h.RouteGet(t.remote.AsSlice())
	if err != nil || len(rts) == 0 {
		st.Error = fmt.Sprintf("no route to %v", t.remote)
		if err != nil {
			st.Error += ": " + err.Error()
		}
		return st, nil
	}
	rt := rts[0]
	if rt.LinkIndex != r.ifindex {
		dev := fmt.Sprintf("ifindex %d", rt.LinkIndex)
		if l, err := r.h.LinkByIndex(rt.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		st.Dev = dev
		st.Error = fmt.Sprintf("the route to %v leaves through %s, not the underlay %s", t.remote, dev, r.ifname)
		return st, nil
	}
	src := t.local
	if a, ok := netip.AddrFromSlice(rt.Src); ok {
		a = a.Unmap()
		for _, l := range r.locals {
			if l == a {
				src = a
			}
		}
	}
	st.src = src
	hop := t.remote
	if a, ok := netip.AddrFromSlice(rt.Gw); ok && !a.IsUnspecified() {
		hop = a.Unmap()
		st.Gateway = hop.String()
	}
	st.State = "unresolved"
	mac, found, err := r.neighbour(hop)
	if err != nil {
		st.Error = err.Error()
		return st, nil
	}
	if mac == nil {
		if !found {
			if err := r.addManaged(hop); err != nil {
				st.Error = err.Error()
			}
		}
		return st, nil
	}
	st.State = "resolved"
	st.MAC = mac.String()
	ec := geneve.DefaultEncapConfig()
	copy(ec.SrcMAC[:], r.mac)
	copy(ec.DstMAC[:], mac)
	ec.Src, ec.Dst = src, t.remote
	ec.VNI = t.br.vni
	ec.Options = t.cfg.GenOptions
	enc, err := geneve.NewEncapsulator(ec)
	if err != nil {
		st.State = "error"
		st.Error = err.Error()
		return st, nil
	}
	return st, enc
}

// neighbour looks up hop on the underlay: its MAC if usable; found reports
// whether an entry exists at all (resolution under way or failed).
func (r *resolver) neighbour(hop netip.Addr) (net.HardwareAddr, bool, error) {
	fam := netlink.FAMILY_V4
	if hop.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := r.h.NeighList(r.ifindex, fam)
	if err != nil {
		return nil, false, fmt.Errorf("list neighbours of %s: %w", r.ifname, err)
	}
	for _, n := range ns {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || a.Unmap() != hop {
			continue
		}
		if n.State&usableNUD != 0 && len(n.HardwareAddr) == 6 && !bytes.Equal(n.HardwareAddr, make([]byte, 6)) {
			return n.HardwareAddr, true, nil
		}
		// FAILED entries are retried by replacing them with a managed one.
		return nil, n.State&netlink.NUD_FAILED == 0, nil
	}
	return nil, false, nil
}

// addManaged asks the kernel to resolve hop and keep it resolved.
func (r *resolver) addManaged(hop netip.Addr) error {
	if err := r.nn.addManaged(r.ifindex, hop); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("add managed neighbour %v on %s (needs Linux 5.16+): %w", hop, r.ifname, err)
		}
		return fmt.Errorf("add managed neighbour %v on %s: %w", hop, r.ifname, err)
	}
	if !r.added[hop] {
		r.log.Info("asked the kernel to resolve the tunnel next hop (managed neighbour)", zap.Stringer("hop", hop), zap.String("dev", r.ifname))
	}
	r.added[hop] = true
	return nil
}

// close stops the subscriptions and deletes the managed neighbour entries
// marked as xswitch's on the underlay (entries someone else created are
// left alone).
func (r *resolver) close() {
	select {
	case <-r.done:
		return
	default:
	}
	close(r.done)
	r.wg.Wait()
	if r.h == nil {
		return
	}
	defer r.h.Close()
	if r.nn == nil {
		return
	}
	defer r.nn.close()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeOwned()
	r.added = map[netip.Addr]bool{}
}

// removeOwned deletes the marked managed entries on the underlay and
// returns how many; failures are logged (a stop must go on).
func (r *resolver) removeOwned() int {
	hops, err := r.nn.owned(r.ifindex)
	if err != nil {
		r.log.Warn("cannot list xswitch's managed neighbour entries", zap.String("dev", r.ifname), zap.Error(err))
		return 0
	}
	n := 0
	for _, hop := range hops {
		if err := r.nn.del(r.ifindex, hop); err != nil && !errors.Is(err, unix.ENOENT) {
			r.log.Warn("cannot delete managed neighbour entry", zap.Stringer("hop", hop), zap.String("dev", r.ifname), zap.Error(err))
			continue
		}
		n++
	}
	return n
}
