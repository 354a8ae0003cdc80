package vswitch

import (
	"strings"
	"testing"
	"time"

	"xswitch/internal/pollidle"
)

const us = int64(time.Microsecond)

func TestIdleConfig(t *testing.T) {
	base := "bridges:\n  - name: br1\n"
	c, err := ParseConfig([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if st := c.IdleStatus(); st.Policy != IdlePoll || st.KickFrames != 0 || c.idle.Mode != pollidle.Poll {
		t.Errorf("default: %+v", st)
	}
	c, err = ParseConfig([]byte(base + "poller_idle: sleep\npoller_sleep_max: 100us\npoller_sleep_step: 5us\npoller_sleep_idle: 1ms\npoller_kick_frames: 64\npoller_kick_delay: 30us\n"))
	if err != nil {
		t.Fatal(err)
	}
	ic := c.idle
	if ic.Mode != pollidle.Sleep || ic.HalfBurst != halfBurst || ic.SleepMax != 100*us || ic.SleepStep != 5*us || ic.PollAfter != 10 || ic.KickFrames != 64 || ic.KickDelay != 30*us {
		t.Errorf("parsed %+v", ic)
	}
	st := c.IdleStatus()
	if st.Policy != IdleSleep || st.SleepMax != "100µs" || st.SleepStep != "5µs" || st.SleepIdle != "1ms" || st.KickFrames != 64 || st.KickDelay != "30µs" {
		t.Errorf("status %+v", st)
	}
	c, err = ParseConfig([]byte(base + "poller_idle: sleep\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ic := c.idle; ic.SleepMax != int64(defaultSleepMax) || ic.SleepStep != int64(defaultSleepStep) || ic.PollAfter != int(defaultSleepIdle/defaultSleepMax) {
		t.Errorf("defaults %+v", ic)
	}
	c, err = ParseConfig([]byte(base + "busy_poll: true\n"))
	if err != nil || c.IdleStatus().Policy != "busy" {
		t.Errorf("busy_poll: %v %+v", err, c.IdleStatus())
	}
	for _, tc := range []struct{ yaml, want string }{
		{"poller_idle: nap\n", `poller_idle: "nap" is not an idle policy; write poll or sleep`},
		{"poller_idle: sleep\npoller_sleep_max: 0s\n", `poller_sleep_max: "0s" is not a duration between 1µs and 10ms`},
		{"poller_idle: sleep\npoller_sleep_max: soon\n", `poller_sleep_max: "soon" is not a duration`},
		{"poller_idle: sleep\npoller_sleep_step: 100us\n", "poller_sleep_step: 100µs is longer than poller_sleep_max (50µs)"},
		{"poller_sleep_max: 100us\n", "poller_idle: poller_sleep_* settings apply to poller_idle: sleep only"},
		{"poller_idle: sleep\nbusy_poll: true\n", "poller_idle: busy_poll spins and sleep sleeps; set one of them"},
		{"poller_kick_frames: -1\n", "poller_kick_frames: -1 is out of range"},
		{"poller_kick_frames: 2000\n", "poller_kick_frames: 2000 is out of range"},
		{"poller_kick_frames: 600\nport_options: {ring_size: 1024}\n", "poller_kick_frames: 600 is more than half of port_options.ring_size (1024); write at most 512"},
		{"poller_kick_delay: 10us\n", "poller_kick_delay: applies only when TX kicks are coalesced"},
		{"poller_kick_frames: 32\npoller_kick_delay: 1h\n", `poller_kick_delay: "1h" is not a duration between 1µs and 10ms`},
	} {
		_, err := ParseConfig([]byte(base + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
