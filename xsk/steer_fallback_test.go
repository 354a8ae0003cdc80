package xsk

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"xswitch/internal/testnet"
)

// TestLinkUnsupportedDecision: only "this kernel has no BPF links for XDP"
// sends the attach to netlink (an attachment that survives SIGKILL): the
// typed ebpf.ErrNotSupported, or EINVAL on 5.7/5.8 (links, but not for
// XDP). An EINVAL from a driver or from a bad request on a kernel with XDP
// links, EOPNOTSUPP, EBUSY and untyped errors keep the BPF link path.
func TestLinkUnsupportedDecision(t *testing.T) {
	// The errors as link.AttachXDP wraps them.
	wrap := func(err error) error {
		return fmt.Errorf("failed to attach link: %w", fmt.Errorf("create link: %w", err))
	}
	k518, k58, k57, k618 := kernelVersion{5, 18}, kernelVersion{5, 8}, kernelVersion{5, 7}, kernelVersion{6, 18}
	cases := []struct {
		name   string
		err    error
		kernel kernelVersion
		want   bool
	}{
		{"no bpf_link (typed)", fmt.Errorf("failed to attach link: %w", ebpf.ErrNotSupported), k57, true},
		{"no bpf_link (typed), any kernel", fmt.Errorf("failed to attach link: %w", ebpf.ErrNotSupported), k618, true},
		{"EINVAL on 5.8: links without XDP", wrap(unix.EINVAL), k58, true},
		{"EINVAL on 5.7: links without XDP", wrap(unix.EINVAL), k57, true},
		{"driver EINVAL on 5.18", wrap(unix.EINVAL), k518, false},
		{"driver EINVAL on 6.18", wrap(unix.EINVAL), k618, false},
		{"EINVAL, kernel unknown", wrap(unix.EINVAL), kernelVersion{}, false},
		{"EOPNOTSUPP (no native XDP)", wrap(unix.EOPNOTSUPP), k58, false},
		{"EBUSY (another program)", wrap(unix.EBUSY), k618, false},
		{"EPERM", wrap(unix.EPERM), k57, false},
		{"untyped text", errors.New("invalid argument"), k57, false},
		{"nil", nil, k57, false},
	}
	for _, c := range cases {
		if got := linkUnsupported(c.err, c.kernel); got != c.want {
			t.Errorf("%s: linkUnsupported(%v, %v) = %v, want %v", c.name, c.err, c.kernel, got, c.want)
		}
	}
}

func TestParseKernelRelease(t *testing.T) {
	for r, want := range map[string]kernelVersion{
		"6.18.0":                 {6, 18},
		"5.8.0-63-generic":       {5, 8},
		"5.10.0-rc1+":            {5, 10},
		"4.19.260.x86_64":        {4, 19},
		"":                       {},
		"linux":                  {},
		"6":                      {},
		"-1.2":                   {},
		"6.-2":                   {},
		"99999999999999999999.1": {},
	} {
		if got := parseKernelRelease(r); got != want {
			t.Errorf("parseKernelRelease(%q) = %v, want %v", r, got, want)
		}
	}
	if k := runningKernel(); !k.valid() {
		t.Errorf("runningKernel() = %v: cannot read this kernel's version", k)
	}
}

// TestLinkEINVALStaysOnLinks: a real EINVAL from the kernel's link attach
// (two XDP mode flags at once, refused like a driver refusing a mode) is
// not taken for "no XDP links" on this kernel.
func TestLinkEINVALStaysOnLinks(t *testing.T) {
	sn := newSteerNet(t, 1)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xsw_einval", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var attachErr error
	if err := testnet.Do(sn.a, func() error {
		ifi, err := net.InterfaceByName("sa0")
		if err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPGenericMode | link.XDPDriverMode})
		if err == nil {
			l.Close()
		}
		attachErr = err
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(attachErr, unix.EINVAL) {
		t.Fatalf("attach with two modes: %v, want EINVAL", attachErr)
	}
	// Before 5.9 every EINVAL of an XDP link means "no XDP links".
	k := runningKernel()
	if got, want := linkUnsupported(attachErr, k), k.before(5, 9); got != want {
		t.Errorf("kernel %d.%d: linkUnsupported(%q) = %v, want %v", k.major, k.minor, attachErr, got, want)
	}
}
