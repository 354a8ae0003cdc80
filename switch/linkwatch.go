package vswitch

import (
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Ports that come and go. The link watcher follows the kernel's link
// events (RTM_NEWLINK/RTM_DELLINK) for the switch's ports:
//
//   - a local port whose interface is deleted becomes absent: a new fabric
//     generation gives it no sockets (frames to it are port_absent drops,
//     its MAC entries stay), its pollers stop and its sockets close;
//   - when an interface of that name appears again, xswitch attaches to it
//     again (XDP program, sockets, pollers) in a new generation;
//   - a port that is administratively down or has no carrier is shown as
//     down (ctl show warns) and logged.
//
// The underlay or an internal port deleted under the switch stays fatal:
// the pollers report it and the daemon stops (docs/operations.md).
// Events can be lost (a full netlink socket buffer), so the watcher also
// looks at every port every resyncEvery, and at once when a local port's
// poller reports a socket error.

// resyncEvery is how often the watcher checks every port without an event.
const resyncEvery = 2 * time.Second

type linkWatch struct {
	s      *Switch
	checks chan string // ports to look at now (a poller saw a socket error)
}

func newLinkWatch(s *Switch) *linkWatch {
	return &linkWatch{s: s, checks: make(chan string, 64)}
}

// check asks the watcher to look at port name (any goroutine, never blocks).
func (w *linkWatch) check(name string) {
	select {
	case w.checks <- name:
	default:
	}
}

// watchLinks subscribes to link events in the switch's network namespace
// and follows them until the switch stops.
func (s *Switch) watchLinks() error {
	w := s.links
	updates := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	errCb := func(err error) {
		select {
		case <-done:
		default:
			s.log.Warn("link events subscription", zap.Error(err))
		}
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{ErrorCallback: errCb}); err != nil {
		return fmt.Errorf("subscribe to link events: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		tick := time.NewTicker(resyncEvery)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case u, ok := <-updates:
				if !ok {
					updates = nil // the subscription failed; resync goes on
					continue
				}
				w.event(u)
			case name := <-w.checks:
				w.resync(name)
			case <-tick.C:
				w.resyncAll()
			}
		}
	}()
	return nil
}

// linkState is "up" for an interface that is up with a carrier, "down"
// otherwise.
func linkState(l netlink.Link) string { return stateOfFlags(l.Attrs().RawFlags) }

func stateOfFlags(flags uint32) string {
	if flags&unix.IFF_UP != 0 && flags&unix.IFF_LOWER_UP != 0 {
		return linkUp
	}
	return linkDown
}

// event handles one link message of a port's name by looking at the
// interface as it is now: events queue up (a device is created down and
// then set up, deleted and made again), and acting on an old one's flags
// would log states long gone.
func (w *linkWatch) event(u netlink.LinkUpdate) {
	s := w.s
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if pr := s.ports[u.Attrs().Name]; pr != nil && !s.closed.Load() {
		w.resyncPort(pr)
	}
}

// resync compares one port with the interface of its name.
func (w *linkWatch) resync(name string) {
	s := w.s
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if pr := s.ports[name]; pr != nil && !s.closed.Load() {
		w.resyncPort(pr)
	}
}

func (w *linkWatch) resyncAll() {
	s := w.s
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	for _, pr := range s.ports {
		if s.closed.Load() {
			return
		}
		w.resyncPort(pr)
	}
}

func (w *linkWatch) resyncPort(pr *portRes) {
	l, err := netlink.LinkByName(pr.name)
	if err != nil {
		w.gone(pr, "no interface of that name")
		return
	}
	w.present(pr, l.Attrs().Index, linkState(l))
}

// present handles an interface of a port's name that exists with ifindex
// and state: attach an absent local port, re-attach one whose interface
// was replaced, log up/down changes.
func (w *linkWatch) present(pr *portRes, ifindex int, state string) {
	switch {
	case pr.kind == kindLocal && pr.xp != nil && pr.ifidx != ifindex:
		w.gone(pr, "interface replaced")
	case pr.kind == kindLocal && pr.xp != nil && w.s.dp.pollerStopped(pr.id):
		// A poller gave up on a socket whose interface is still there:
		// open the port afresh rather than leave a queue unserved.
		w.gone(pr, "a poller of the port stopped")
	}
	if pr.kind == kindLocal && pr.link == linkAbsent {
		w.attach(pr, state)
		return
	}
	w.setState(pr, state)
}

// setState records and logs a port's up/down state.
func (w *linkWatch) setState(pr *portRes, state string) {
	if pr.link == state || pr.link == linkAbsent {
		return
	}
	s := w.s
	s.mu.Lock()
	pr.link = state
	s.mu.Unlock()
	if state == linkDown {
		s.log.Warn("port down: its interface is down or has no carrier; frames to it are lost", zap.String("port", pr.name), zap.Stringer("kind", pr.kind))
	} else {
		s.log.Info("port up", zap.String("port", pr.name), zap.Stringer("kind", pr.kind))
	}
}

// gone makes a local port absent: a generation without its sockets, then
// its pollers stop and its sockets close. The underlay or an internal port
// gone is only logged here; their pollers fail and stop the switch.
func (w *linkWatch) gone(pr *portRes, why string) {
	s := w.s
	if pr.link == linkAbsent {
		return
	}
	if pr.kind != kindLocal {
		s.log.Error("interface of the switch gone", zap.String("port", pr.name), zap.Stringer("kind", pr.kind), zap.String("why", why))
		return
	}
	s.mu.Lock()
	pr.link = linkAbsent
	s.mu.Unlock()
	f := s.buildFabric(s.cfg)
	s.fab.Store(f)
	s.dp.waitGen(f.gen)
	s.dp.stopPort(pr.id)
	if err := s.dp.closePort(pr); err != nil {
		s.log.Debug("close the sockets of an absent port", zap.String("port", pr.name), zap.Error(err))
	}
	s.log.Warn("port absent: frames to it are dropped (port_absent) until an interface of that name appears again",
		zap.String("port", pr.name), zap.String("why", why), zap.Uint64("generation", f.gen))
}

// attach opens an absent local port's interface again and publishes a
// generation with its sockets; on failure it stays absent (the next event
// or resync tries again).
func (w *linkWatch) attach(pr *portRes, state string) {
	s := w.s
	if err := s.dp.openPort(pr, s.cfg); err != nil {
		s.log.Warn("cannot attach to the port's interface; it stays absent", zap.String("port", pr.name), zap.Error(err))
		return
	}
	s.mu.Lock()
	pr.link = state
	s.mu.Unlock()
	f := s.buildFabric(s.cfg)
	s.fab.Store(f)
	s.dp.addPollers(pr, f)
	s.log.Info("port re-attached: its interface is back", zap.String("port", pr.name), zap.Int("ifindex", pr.ifidx),
		zap.String("state", state), zap.Uint64("generation", f.gen))
}

// linkStatus fills in a port's link state and warns about ports that are
// down or absent (Switch.mu held).
func (s *Switch) linkStatus(ps *PortStatus, st *Status) {
	pr := s.ports[ps.Name]
	if pr == nil {
		return
	}
	ps.State = pr.link
	switch pr.link {
	case linkDown:
		st.Warnings = append(st.Warnings, fmt.Sprintf("port %s is down (interface down or no carrier): frames to it are lost", ps.Name))
	case linkAbsent:
		st.Warnings = append(st.Warnings, fmt.Sprintf("port %s is absent (no interface of that name): frames to it are dropped (port_absent)", ps.Name))
	}
}
