package main_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
)

// TestPollerIdle: with every idle policy, with and without TX kick
// coalescing, frames flow between local ports (each ping is a burst of one
// frame: the smallest, whose kick coalescing must not strand), `ctl show`
// reports the policy, a sleeping poller runs with 1 µs timer slack (the
// others keep the default), and idle pollers go to sleep and use almost
// no CPU (sleep falls back to poll() when idle).
func TestPollerIdle(t *testing.T) {
	testnet.RequireRoot(t)
	sw, vm1 := twoVMs(t, "pi", 0)
	for _, tc := range []struct {
		name, setting, show string
		slack               int
	}{
		{"poll", "", "poller_idle poll\n", 0},
		{"sleep", "poller_idle: sleep\n", "poller_idle sleep (max 50µs, step 1µs, poll after 2ms idle)\n", 1000},
		{"poll-kick", "poller_kick_frames: 32\n", "poller_idle poll, TX kicks every 32 frames or 20µs\n", 0},
		{"sleep-kick", "poller_idle: sleep\npoller_sleep_max: 100us\npoller_sleep_step: 10us\npoller_kick_frames: 64\npoller_kick_delay: 50us\n",
			"poller_idle sleep (max 100µs, step 10µs, poll after 2ms idle), TX kicks every 64 frames or 50µs\n", 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := e2e.StartXswitch(t, sw, xsConfig("", bridgeSpec{name: "br1", ports: []string{"vm1", "vm2"}})+tc.setting)
			ping(t, vm1, "198.19.0.12", 5)
			ping(t, vm1, "198.19.0.12", 20, "-i", "0.01")
			if p := portStats(stats(t, x), "vm2"); p.TxPackets < 25 || p.RxPackets < 25 {
				t.Errorf("vm2 counters %+v", p)
			}
			show, _ := x.Ctl("show")
			if !strings.Contains(show, tc.show) {
				t.Errorf("ctl show does not report %q:\n%s", strings.TrimSpace(tc.show), show)
			}
			pollers := threadsOfPolicy(t, x.Pid(), unix.SCHED_BATCH)
			if len(pollers) != 2 {
				t.Fatalf("%d poller threads, want 2 (two one-queue ports)", len(pollers))
			}
			for _, tid := range pollers {
				b, err := os.ReadFile("/proc/" + tid + "/timerslack_ns")
				if err != nil {
					t.Fatal(err)
				}
				got := strings.TrimSpace(string(b))
				if tc.slack > 0 && got != fmt.Sprint(tc.slack) || tc.slack == 0 && got == "1000" {
					t.Errorf("poller %s: timer slack %s ns, want %d (0: the default)", tid, got, tc.slack)
				}
			}
			checkSleeping(t, x.Pid(), pollers)
			checkPollTimeouts(t, x.Pid(), pollers)
			if err := x.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkPollTimeouts: idle pollers wake up about once per poll() timeout
// (20 ms), not once per nanosleep: 10 wake-ups of each take at least
// 100 ms (half of 10 timeouts, for slack), where a poller sleeping 50 µs
// at a time would make them in a millisecond.
func checkPollTimeouts(t *testing.T, pid int, pollers []string) {
	t.Helper()
	before := map[string]threadUsage{}
	for _, tid := range pollers {
		before[tid] = usage(t, pid, []string{tid})
	}
	t0 := time.Now()
	wait.For(t, 20*time.Second, "every idle poller to wake up 10 times", func() bool {
		for _, tid := range pollers {
			if usage(t, pid, []string{tid}).voluntary-before[tid].voluntary < 10 {
				return false
			}
		}
		return true
	})
	if el := time.Since(t0); el < 100*time.Millisecond {
		t.Errorf("idle pollers woke up 10 times in %v: they do not wait in poll()", el)
	}
}
