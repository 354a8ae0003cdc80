// Command l2fwd is the AF_XDP ceiling of the benchmark: it receives frames
// on one interface and transmits them unchanged on another through a shared
// UMEM (package xsk), with no switching at all, from one thread pinned to
// one CPU. Whatever it reaches is the most any AF_XDP switch can forward on
// this machine and these interfaces with its I/O pattern: -idle and the
// -sleep-* and -kick-* flags choose the same idle policies as xswitch's
// poller_idle settings (package pollidle). Run it in the switch's namespace:
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

	"xswitch/internal/pollidle"
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
		busy        = flag.Bool("busy", false, "spin when the RX ring is empty instead of sleeping in poll() (as xswitch's busy_poll; the same as -idle busy)")
		batchPolicy = flag.Bool("sched-batch", true, "run the forwarding thread in SCHED_BATCH, as xswitch's pollers (poller_policy: batch)")
		idleMode    = flag.String("idle", "poll", "idle policy, as xswitch's poller_idle: poll (poll() when the RX ring is empty), sleep (load-based nanosleep, OVS pmd-maxsleep style) or busy (spin)")
		sleepMax    = flag.Duration("sleep-max", 50*time.Microsecond, "-idle sleep: longest sleep (poller_sleep_max)")
		sleepStep   = flag.Duration("sleep-step", time.Microsecond, "-idle sleep: growth of the sleep per light burst (poller_sleep_step)")
		sleepIdle   = flag.Duration("sleep-idle", 2*time.Millisecond, "-idle sleep: time with nothing received at the longest sleep before poll() (poller_sleep_idle)")
		halfBurst   = flag.Int("sleep-thresh", 0, "-idle sleep: a burst of at least this many frames is load and resets the sleep (0: half of -batch, as xswitch)")
		kickFrames  = flag.Int("kick-frames", 0, "coalesce TX kicks: kick when this many frames wait or the oldest waited -kick-delay (poller_kick_frames; 0: kick after every burst)")
		kickDelay   = flag.Duration("kick-delay", 20*time.Microsecond, "with -kick-frames: longest wait of a frame for its kick (poller_kick_delay)")
		txBudget    = flag.Int("tx-budget", 0, "copy-mode descriptors per sendto (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+; 0: the kernel's 32, as xswitch)")
	)
	flag.Parse()
	if *in == "" || *out == "" {
		flag.Usage()
		return fmt.Errorf("-in and -out are required")
	}
	ic, err := idleConfig(*idleMode, *busy, *batch, *halfBurst, *sleepMax, *sleepStep, *sleepIdle, *kickFrames, *kickDelay)
	if err != nil {
		return err
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
	if err := pollidle.PrepareThread(ic.Mode); err != nil {
		return err
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
		return u.OpenPort(xsk.PortConfig{Interface: dev, Role: xsk.RoleLocal, RingSize: *ring, ZeroCopy: z, XDPMode: m, NeedWakeup: *wakeup, TxBudget: *txBudget, Logger: log})
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
	fmt.Printf("ready: %s -> %s, idle %s\n", mode(pin), mode(pout), describe(ic))

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
	st := pollidle.New(ic)
	kick := !st.Coalescing()
	for !stop.Load() {
		got, placed := 0, 0
		for _, s := range rx {
			n := s.Receive(descs)
			got += n
			if n > 0 {
				var sent int
				if kick {
					sent = tx.Transmit(descs[:n])
				} else {
					sent = tx.Enqueue(descs[:n])
				}
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
				placed += sent
			}
			s.Refill(cache)
		}
		tx.Complete(cache)
		fwd.Store(nfwd)
		dropped.Store(ndrop)
		if got > 0 {
			batches++
		}
		if !kick && st.Placed(placed, pollidle.Now()) {
			tx.Transmit(nil)
			st.Kicked()
		}
		act, d := st.Next(got)
		if !kick && st.Pending() && st.KickDue(act, d, pollidle.Now()) {
			tx.Transmit(nil)
			st.Kicked()
		}
		switch act {
		case pollidle.SleepNs:
			pollidle.Nanosleep(d)
		case pollidle.PollRx:
			// Nothing arrived: give the CPU to whoever fills the RX ring
			// (on veth, the ingress NAPI thread on this CPU), as xswitch's
			// pollers do; kick TX if frames wait for the kernel. With
			// several RX queues there is no one socket to wait on: spin.
			tx.Transmit(nil)
			if len(rx) == 1 {
				if err := rx[0].Wait(idleWait); err != nil && !errors.Is(err, unix.EINTR) {
					return err
				}
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

// idleConfig builds the idle policy from the flags (the checks of
// xswitch's poller_idle settings, briefly).
func idleConfig(mode string, busy bool, batch, half int, sleepMax, sleepStep, sleepIdle time.Duration, kickFrames int, kickDelay time.Duration) (pollidle.Config, error) {
	c := pollidle.Config{HalfBurst: half, SleepMax: int64(sleepMax), SleepStep: int64(sleepStep), KickFrames: kickFrames, KickDelay: int64(kickDelay)}
	switch mode {
	case "poll":
		c.Mode = pollidle.Poll
	case "sleep":
		c.Mode = pollidle.Sleep
	case "busy":
		c.Mode = pollidle.Busy
	default:
		return c, fmt.Errorf("-idle %q: write poll, sleep or busy", mode)
	}
	if busy {
		c.Mode = pollidle.Busy
	}
	if c.HalfBurst <= 0 {
		c.HalfBurst = max(1, batch/2)
	}
	if sleepMax < time.Microsecond || sleepStep < time.Microsecond || sleepStep > sleepMax {
		return c, fmt.Errorf("-sleep-max %v, -sleep-step %v: both at least 1µs, the step at most the maximum", sleepMax, sleepStep)
	}
	if kickFrames < 0 || kickDelay < time.Microsecond {
		return c, fmt.Errorf("-kick-frames %d, -kick-delay %v: frames 0 or more, delay at least 1µs", kickFrames, kickDelay)
	}
	c.PollAfter = max(1, int(sleepIdle/sleepMax))
	return c, nil
}

// describe is the policy for the ready line.
func describe(c pollidle.Config) string {
	s := c.Mode.String()
	if c.Mode == pollidle.Sleep {
		s += fmt.Sprintf(" (max %v, step %v, threshold %d, poll after %v idle)", time.Duration(c.SleepMax), time.Duration(c.SleepStep), c.HalfBurst, time.Duration(c.SleepMax)*time.Duration(c.PollAfter))
	}
	if c.KickFrames > 0 {
		s += fmt.Sprintf(", TX kicks every %d frames or %v", c.KickFrames, time.Duration(c.KickDelay))
	}
	return s
}
