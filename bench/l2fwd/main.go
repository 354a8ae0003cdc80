// Command l2fwd is the AF_XDP ceiling of the benchmark: it receives frames
// on one interface and transmits them unchanged on another through a shared
// UMEM (package xsk), with no switching at all, from one thread pinned to
// one CPU. Whatever it reaches is the most any AF_XDP switch can forward on
// this machine and these interfaces. Run it in the switch's namespace:
//
//	ip netns exec sw l2fwd -in in0 -out out0 -cpu 1
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"xswitch/xsk"
)

// idleWait bounds a sleep in poll() when the RX ring is empty (as xswitch's).
const idleWait = 20 * time.Millisecond

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "l2fwd:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		in          = flag.String("in", "", "interface to receive on (required)")
		out         = flag.String("out", "", "interface to transmit on (required)")
		cpu         = flag.Int("cpu", 1, "CPU to pin the forwarding thread to (-1: no pinning)")
		batch       = flag.Int("batch", 64, "frames per receive burst")
		frames      = flag.Int("frames", 8192, "UMEM frames")
		ring        = flag.Int("ring", 2048, "ring size")
		zc          = flag.String("zerocopy", "auto", "auto, on, off")
		xdpMode     = flag.String("xdp-mode", "auto", "auto, native, generic")
		quiet       = flag.Bool("q", false, "no per-second lines")
		wakeup      = flag.Bool("need-wakeup", true, "XDP_USE_NEED_WAKEUP: syscalls only when the kernel asks")
		busy        = flag.Bool("busy", false, "spin when the RX ring is empty instead of sleeping in poll() (as xswitch's busy_poll)")
		batchPolicy = flag.Bool("sched-batch", true, "run the forwarding thread in SCHED_BATCH, as xswitch's pollers (poller_policy: batch)")
		nap         = flag.Duration("idle-sleep", 0, "when the RX ring is empty, sleep this long (nanosleep) instead of poll(), so that frames gather into full batches")
	)
	flag.Parse()
	if *in == "" || *out == "" {
		flag.Usage()
		return fmt.Errorf("-in and -out are required")
	}
	runtime.LockOSThread()
	if *cpu >= 0 {
		var set unix.CPUSet
		set.Set(*cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", *cpu, err)
		}
	}
	if *batchPolicy {
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			return fmt.Errorf("SCHED_BATCH: %w", err)
		}
	}
	log, _ := zap.NewProduction()
	defer log.Sync()
	u, err := xsk.NewUmem(xsk.UmemConfig{NumFrames: *frames, FrameSize: 2048})
	if err != nil {
		return err
	}
	defer u.Close()
	z := xsk.ZeroCopyAuto
	switch *zc {
	case "on":
		z = xsk.ZeroCopyOn
	case "off":
		z = xsk.ZeroCopyOff
	}
	m := xsk.XDPAuto
	switch *xdpMode {
	case "native":
		m = xsk.XDPNative
	case "generic":
		m = xsk.XDPGeneric
	}
	open := func(dev string) (*xsk.Port, error) {
		return u.OpenPort(xsk.PortConfig{Interface: dev, Role: xsk.RoleLocal, RingSize: *ring, ZeroCopy: z, XDPMode: m, NeedWakeup: *wakeup, Logger: log})
	}
	pin, err := open(*in)
	if err != nil {
		return err
	}
	defer pin.Close()
	pout, err := open(*out)
	if err != nil {
		return err
	}
	defer pout.Close()
	cache := u.NewCache()
	rx := pin.Sockets()
	tx := pout.Sockets()[0]
	for _, s := range rx {
		s.Refill(cache)
	}
	mode := func(p *xsk.Port) string {
		md := p.Mode()
		c := "copy"
		if md.ZeroCopy {
			c = "zero-copy"
		}
		return fmt.Sprintf("%s %s/%s", p.Name(), c, md.XDP)
	}
	fmt.Printf("ready: %s -> %s\n", mode(pin), mode(pout))

	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; stop.Store(true) }()
	var fwd, dropped atomic.Uint64
	if !*quiet {
		go func() {
			last := uint64(0)
			for range time.Tick(time.Second) {
				cur := fwd.Load()
				fmt.Fprintf(os.Stderr, "forwarded %d  %.3f Mpps  (tx ring full drops %d)\n", cur, float64(cur-last)/1e6, dropped.Load())
				last = cur
			}
		}()
	}
	descs := make([]xsk.Desc, *batch)
	addrs := make([]uint64, *batch)
	var nfwd, ndrop, batches uint64
	for !stop.Load() {
		got := 0
		for _, s := range rx {
			n := s.Receive(descs)
			got += n
			if n > 0 {
				sent := tx.Transmit(descs[:n])
				if sent < n {
					k := 0
					for _, d := range descs[sent:n] {
						addrs[k] = d.Addr
						k++
					}
					cache.PutBatch(addrs[:k])
					ndrop += uint64(n - sent)
				}
				nfwd += uint64(sent)
			}
			s.Refill(cache)
		}
		tx.Complete(cache)
		fwd.Store(nfwd)
		dropped.Store(ndrop)
		if got > 0 {
			batches++
		}
		if got == 0 && *nap > 0 && !*busy {
			tx.Transmit(nil)
			time.Sleep(*nap)
			continue
		}
		if got == 0 && !*busy && len(rx) == 1 {
			// Nothing arrived: give the CPU to whoever fills the RX ring
			// (on veth, the ingress NAPI thread on this CPU), as xswitch's
			// pollers do; kick TX if frames wait for the kernel.
			tx.Transmit(nil)
			if err := rx[0].Wait(idleWait); err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
		}
	}
	fmt.Fprintf(os.Stderr, "forwarded %d, dropped (tx ring full) %d, %d receive batches (%.1f frames each)\n",
		nfwd, ndrop, batches, float64(nfwd+ndrop)/float64(max(batches, 1)))
	for _, s := range append(rx, tx) {
		if st, err := s.Stats(); err == nil {
			fmt.Fprintf(os.Stderr, "socket ifindex %d queue %d: %+v\n", s.Ifindex(), s.Queue(), st)
		}
	}
	return nil
}
