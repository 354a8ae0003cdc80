// Command swprof runs the xswitch data plane (package switch, set up as
// `xswitch run` does) with Go's CPU profiler at hand, so that the benchmark
// can take a pprof profile of the switch under load: the xswitch binary has
// no profiling endpoint. Run it in the switch's namespace:
//
//	ip netns exec sw swprof -config xswitch.yaml -learned 02:be:00:02:00:01 -o cpu.pprof -duration 3s
//
// It prints "ready" once the switch runs, "learned" once the bridge's MAC
// table holds -learned, and on SIGUSR1 profiles for -duration, writes the
// profile to -o and prints "profiled". SIGINT or SIGTERM stop it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	vswitch "xswitch/switch"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "swprof:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		config   = flag.String("config", "", "xswitch configuration file (required)")
		out      = flag.String("o", "cpu.pprof", "where to write the CPU profile")
		duration = flag.Duration("duration", 3*time.Second, "how long to profile after SIGUSR1")
		learned  = flag.String("learned", "", "print \"learned\" once this MAC is in a bridge's MAC table")
	)
	flag.Parse()
	if *config == "" {
		flag.Usage()
		return fmt.Errorf("-config is required")
	}
	cfg, err := vswitch.LoadConfig(*config)
	if err == nil {
		err = vswitch.CheckSystem(cfg)
	}
	if err != nil {
		return fmt.Errorf("configuration %s: %w", *config, err)
	}
	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	log = log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	sw, err := vswitch.New(cfg, vswitch.Options{Logger: log, Version: "swprof"})
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	if err := sw.Start(); err != nil {
		sw.Close()
		return fmt.Errorf("switch: %w", err)
	}
	defer sw.Close()
	fmt.Println("ready")
	if mac := strings.ToLower(*learned); mac != "" {
		go func() {
			for {
				for _, e := range sw.FDB() {
					if e.MAC == mac {
						fmt.Println("learned")
						return
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	for {
		select {
		case err := <-sw.Failed():
			return fmt.Errorf("switch failed: %w", err)
		case s := <-sigs:
			if s != syscall.SIGUSR1 {
				return nil
			}
			if err := profile(*out, *duration); err != nil {
				return err
			}
			fmt.Println("profiled")
		}
	}
}

// profile records the CPU profile of the whole process for d into path.
func profile(path string, d time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	time.Sleep(d)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	return nil
}
