package xsk

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"xswitch/internal/testnet"
)

// TestSteerKill9LeavesNoProgram: a process that attached the steering
// program through a BPF link, alone or with a port's AF_XDP sockets (one
// per queue, fill rings filled), and dies by SIGKILL leaves no XDP program
// on the interface, and no socket holding its queues: a new port opens.
func TestSteerKill9LeavesNoProgram(t *testing.T) {
	sn := newSteerNet(t, 2)
	bin := filepath.Join(t.TempDir(), "steerhold")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if out, err := exec.Command(goBin, "build", "-o", bin, "./internal/steerhold").CombinedOutput(); err != nil {
		t.Fatalf("build steerhold: %v: %s", err, out)
	}
	// The interface is reusable after each kill.
	for round, args := range [][]string{{"sa0"}, {"-port", "sa0"}, {"-port", "sa0"}} {
		cmd := testnet.Cmd(sn.a, bin, args...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// ip netns exec execs the helper: cmd.Process is the helper itself.
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line := make(chan string, 1)
		go func() {
			l, _ := bufio.NewReader(stdout).ReadString('\n')
			line <- l
		}()
		select {
		case l := <-line:
			if !strings.HasPrefix(l, "attached native bpf_link") || (args[0] == "-port" && !strings.Contains(l, "sockets 2")) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("helper said %q (stderr %q)", l, stderr.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("helper did not attach (stderr %q)", stderr.String())
		}
		if shown := steerXDPShown(t, sn.a, "sa0"); shown == "" {
			t.Fatal("helper reports attached, but ip link shows no XDP program")
		} else {
			t.Logf("round %d (%v): attached: %s", round, args, shown)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("helper did not die by SIGKILL: %v", err)
		}
		// The link is released with the process's files; allow the kernel a moment.
		var shown string
		for i := 0; i < 50; i++ {
			if shown = steerXDPShown(t, sn.a, "sa0"); shown == "" {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if shown != "" {
			t.Fatalf("after kill -9 ip -n %s link show dev sa0 still shows %q", sn.a, shown)
		}
		out, err := exec.Command("ip", "-n", sn.a, "link", "show", "dev", "sa0").CombinedOutput()
		if err != nil {
			t.Fatalf("ip -n %s link show dev sa0: %v: %s", sn.a, err, out)
		}
		if strings.Contains(string(out), "xdp") {
			t.Fatalf("after kill -9: %s", out)
		}
	}
	// The queues are free: a port binds all of them again.
	u, err := NewUmem(UmemConfig{NumFrames: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if err := testnet.Do(sn.a, func() error {
		p, err := u.OpenPort(PortConfig{Interface: "sa0", RingSize: 256})
		if err != nil {
			return err
		}
		if len(p.Sockets()) != 2 {
			t.Errorf("port has %d sockets, want 2", len(p.Sockets()))
		}
		return p.Close()
	}); err != nil {
		t.Fatalf("open a port after kill -9: %v", err)
	}
	// And traffic reaches the kernel again.
	steerPing(t, sn.b, "198.18.0.1")
}
