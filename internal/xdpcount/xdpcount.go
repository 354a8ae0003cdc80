// Package xdpcount is the benchmarks' sink (make bench, xsk's
// BenchmarkL2fwd): an XDP program that counts every frame (and its bytes) in
// a per-CPU array and drops it, except ARP and ICMP (plain, or in Geneve
// without options), which it counts apart and passes to the kernel so that
// a sink namespace with an address can still answer a switch's ARP
// requests and the benchmark's pings (latency probes, also through a
// tunnel to a geneve device). Counting at XDP is the cheapest way to receive: no
// socket, no copy, no wakeup.
package xdpcount

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// Counts are totals over all CPUs since the program was attached.
type Counts struct {
	Packets, Bytes uint64 // counted and dropped
	Passed         uint64 // ARP and ICMP frames passed to the kernel
}

// Sub returns c - o.
func (c Counts) Sub(o Counts) Counts {
	return Counts{Packets: c.Packets - o.Packets, Bytes: c.Bytes - o.Bytes, Passed: c.Passed - o.Passed}
}

type slot struct{ Packets, Bytes uint64 }

const (
	slotCounted = 0
	slotPassed  = 1
	xdpDrop     = 1
	xdpPass     = 2
)

// Counter is an attached counting program.
type Counter struct {
	prog  *ebpf.Program
	m     *ebpf.Map
	link  link.Link
	mode  string
	ncpu  int
	slots []slot
}

// Mode is "native" or "generic".
func (c *Counter) Mode() string { return c.mode }

func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// geneveInnerIP is where the inner IPv4 header starts in a Geneve frame
// without options over IPv4 without options: Ethernet 14, IPv4 20, UDP 8,
// Geneve 8, inner Ethernet 14.
const geneveInnerIP = 14 + 20 + 8 + 8 + 14

func instructions(mapFD int) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R7, asm.R3),
		asm.Sub.Reg(asm.R7, asm.R2), // frame length (root may subtract packet pointers)
		asm.Mov.Imm(asm.R8, slotCounted),
		asm.Mov.Imm(asm.R9, xdpDrop),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R3, "count"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JEq.Imm(asm.R5, be16(0x0806), "pass"), // ARP
		asm.JNE.Imm(asm.R5, be16(0x0800), "count"),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 34),
		asm.JGT.Reg(asm.R4, asm.R3, "count"),
		asm.LoadMem(asm.R5, asm.R2, 23, asm.Byte),
		asm.JEq.Imm(asm.R5, 1, "pass"), // ICMP: the benchmark's latency probes
		asm.JNE.Imm(asm.R5, 17, "count"),
		// Geneve without options (outer IPv4 header of 20 bytes) carrying
		// ARP or ICMP: probes through a tunnel, for the sink's geneve device.
		asm.LoadMem(asm.R5, asm.R2, 14, asm.Byte),
		asm.JNE.Imm(asm.R5, 0x45, "count"),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, geneveInnerIP+20),
		asm.JGT.Reg(asm.R4, asm.R3, "count"),
		asm.LoadMem(asm.R5, asm.R2, 36, asm.Half),
		asm.JNE.Imm(asm.R5, be16(6081), "count"),
		asm.LoadMem(asm.R5, asm.R2, 42, asm.Byte),
		asm.And.Imm(asm.R5, 0x3f), // option length
		asm.JNE.Imm(asm.R5, 0, "count"),
		asm.LoadMem(asm.R5, asm.R2, geneveInnerIP-2, asm.Half),
		asm.JEq.Imm(asm.R5, be16(0x0806), "pass"),
		asm.JNE.Imm(asm.R5, be16(0x0800), "count"),
		asm.LoadMem(asm.R5, asm.R2, geneveInnerIP+9, asm.Byte),
		asm.JNE.Imm(asm.R5, 1, "count"),
		asm.Mov.Imm(asm.R8, slotPassed).WithSymbol("pass"),
		asm.Mov.Imm(asm.R9, xdpPass),
		asm.StoreMem(asm.RFP, -4, asm.R8, asm.Word).WithSymbol("count"),
		asm.LoadMapPtr(asm.R1, mapFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R7),
		asm.StoreMem(asm.R0, 8, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R0, asm.R9).WithSymbol("out"),
		asm.Return(),
	}
}

// Attach loads the program and attaches it to ifname in the calling thread's
// network namespace (a caller that switched namespaces holds its OS thread
// locked). mode is "native", "generic" or "" (native, else generic). The
// counters can be read from any goroutine afterwards.
func Attach(ifname, mode string) (*Counter, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("xdpcount: interface %s: %w", ifname, err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("xdpcount: possible CPUs: %w", err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_sink", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 2})
	if err != nil {
		return nil, fmt.Errorf("xdpcount: create counters map: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "bench_sink", Type: ebpf.XDP, License: "GPL",
		Instructions: instructions(m.FD()),
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("xdpcount: load program: %w", err)
	}
	c := &Counter{prog: prog, m: m, ncpu: ncpu, slots: make([]slot, ncpu)}
	try := []struct {
		name  string
		flags link.XDPAttachFlags
	}{{"native", link.XDPDriverMode}, {"generic", link.XDPGenericMode}}
	var errs []error
	for _, t := range try {
		if mode != "" && mode != t.name {
			continue
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: t.flags})
		if err == nil {
			c.link, c.mode = l, t.name
			return c, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.name, err))
	}
	c.Close()
	if len(errs) == 0 {
		return nil, fmt.Errorf("xdpcount: unknown XDP mode %q (native, generic or empty)", mode)
	}
	return nil, fmt.Errorf("xdpcount: attach to %s: %w", ifname, errors.Join(errs...))
}

// Read sums the per-CPU counters. Not safe for concurrent use.
func (c *Counter) Read() (Counts, error) {
	var out Counts
	for key, dst := range []*uint64{&out.Packets, &out.Passed} {
		if err := c.m.Lookup(uint32(key), c.slots); err != nil {
			return Counts{}, fmt.Errorf("xdpcount: read counters: %w", err)
		}
		for _, s := range c.slots {
			*dst += s.Packets
			if key == slotCounted {
				out.Bytes += s.Bytes
			}
		}
	}
	return out, nil
}

// Close detaches the program and frees it.
func (c *Counter) Close() error {
	var errs []error
	if c.link != nil {
		errs = append(errs, c.link.Close())
	}
	errs = append(errs, c.prog.Close(), c.m.Close())
	runtime.KeepAlive(c)
	return errors.Join(errs...)
}
