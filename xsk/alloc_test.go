package xsk

import (
	"fmt"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"xswitch/internal/testnet"
)

// attachReflector attaches an XDP program that sends every frame back out
// of dev (XDP_TX): whatever a socket transmits towards dev comes back to
// it. Detached when t ends.
func attachReflector(t testing.TB, ns, dev string) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xsk_reflect", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 3 /* XDP_TX */), asm.Return()},
	})
	if err != nil {
		t.Fatalf("load reflector: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	var l link.Link
	if err := testnet.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		t.Fatalf("attach reflector to %s: %v", dev, err)
	}
	t.Cleanup(func() { l.Close() })
}

// TestHotPathNoAlloc: Transmit, Complete, Receive, Refill and Wait, with
// frames really going round (x0 → peer reflector → x0), allocate nothing.
func TestHotPathNoAlloc(t *testing.T) {
	for _, wakeup := range []bool{true, false} {
		t.Run(fmt.Sprintf("need_wakeup=%v", wakeup), func(t *testing.T) {
			sn := newSockNet(t, 1, UmemConfig{NumFrames: 2048})
			attachReflector(t, sn.peer, "p0")
			p := sn.mustOpen(PortConfig{RingSize: 256, NeedWakeup: wakeup})
			s := p.Sockets()[0]
			c := sn.u.NewCache()
			s.Refill(c)
			frame := testFrame(sn.pmac, sn.xmac, 0, 1, 128)
			addrs := make([]uint64, 32)
			descs := make([]Desc, 32)
			rx := make([]Desc, 64)
			var sent, received int
			allocs := testing.AllocsPerRun(2000, func() {
				n := c.Get(addrs)
				for i, a := range addrs[:n] {
					copy(sn.u.Frame(a), frame)
					descs[i] = Desc{Addr: a, Len: uint32(len(frame))}
				}
				m := s.Transmit(descs[:n])
				sent += m
				c.PutBatch(addrs[m:n])
				s.Complete(c)
				k := s.Receive(rx)
				for i, d := range rx[:k] {
					addrs[i%len(addrs)] = d.Addr
					if i%len(addrs) == len(addrs)-1 || i == k-1 {
						c.PutBatch(addrs[:i%len(addrs)+1])
					}
				}
				received += k
				s.Refill(c)
				s.Wait(0) // the idle sleep of a poller (here: returns at once)
			})
			st, _ := s.Stats()
			t.Logf("%v allocations per round; %d frames sent, %d received; %+v", allocs, sent, received, st)
			if allocs != 0 {
				t.Errorf("hot path allocates: %v per round", allocs)
			}
			if sent < 2000*16 || received < sent/2 {
				t.Errorf("sent %d, received %d: the frames did not go round", sent, received)
			}
			waitCompleted(t, s, c, 0)
			c.Flush()
			sn.closeAll()
		})
	}
}
