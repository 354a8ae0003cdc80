// Command xswitch is the xswitch daemon and its control client.
//
//	xswitch run --config FILE      run the switch in the foreground
//	xswitch check --config FILE    validate a configuration and exit
//	xswitch ctl [--socket S] show|fdb|stats [--json]
//	xswitch ctl [--socket S] trace BRIDGE in_port=PORT field=value... | --hex FRAME [--json]
//	xswitch ctl [--socket S] capture PORT [-c COUNT] [-d DURATION] [--snaplen N] -w FILE|-
//	xswitch version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	vswitch "xswitch/switch"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  xswitch run --config FILE                 run the switch (foreground; SIGINT/SIGTERM stop it,
                                            a second one forces the exit; SIGHUP is ignored)
  xswitch check --config FILE               validate a configuration file and exit
  xswitch ctl [--socket S] show|fdb|stats [--json]
                                            ask the running switch (default socket @xswitch,
                                            the instance of this network namespace)
  xswitch ctl [--socket S] trace BRIDGE in_port=PORT dl_src=MAC dl_dst=MAC [dl_type= dl_vlan= nw_src=
                                            nw_dst= nw_proto= tp_src= tp_dst=] | --hex FRAME  [--json]
                                            what the switch would do with a frame (no side effect);
                                            PORT: a port, the underlay (--hex: a Geneve frame) or tunnel:REMOTE
  xswitch ctl [--socket S] capture PORT|tunnel:REMOTE [-c COUNT] [-d DURATION] [--snaplen N] -w FILE|-
                                            frames received and sent on a port, as pcapng (tshark -r FILE)
  xswitch version
`

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

func mainArgs(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stderr)
	case "check":
		return cmdCheck(args[1:], stdout, stderr)
	case "ctl":
		return cmdCtl(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "xswitch %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "xswitch: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "xswitch %s: give the configuration file: xswitch %s --config FILE\n", name, name)
		return "", false
	}
	return *path, true
}

// printConfigError prints every problem of a configuration, one per line.
func printConfigError(w io.Writer, path string, err error) {
	fmt.Fprintf(w, "xswitch: configuration %s is not valid; nothing was changed:\n", path)
	msg := strings.TrimPrefix(err.Error(), "config "+path+": ")
	for _, line := range strings.Split(msg, "\n") {
		fmt.Fprintf(w, "  %s\n", line)
	}
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := vswitch.LoadConfig(path)
	if err == nil {
		err = vswitch.CheckSystem(cfg)
	}
	if err != nil {
		printConfigError(stderr, path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK (%d bridges)\n", path, len(cfg.Bridges))
	return 0
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	zc.Sampling = nil
	return zc.Build()
}

func cmdRun(args []string, stderr io.Writer) int {
	path, ok := configFlag("run", args, stderr)
	if !ok {
		return 2
	}
	// Everything is validated before anything is touched.
	cfg, err := vswitch.LoadConfig(path)
	if err == nil {
		err = vswitch.CheckSystem(cfg)
	}
	if err != nil {
		printConfigError(stderr, path, err)
		return 1
	}
	log, err := newLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "xswitch: logger: %v\n", err)
		return 1
	}
	defer log.Sync()
	// Signals are caught from here on, so that a stop during set-up still
	// cleans up what was created.
	sigs := catchSignals(log)
	defer sigs.release()

	srv, err := listenControl(cfg.ControlSocket, log)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	go srv.serve()
	defer srv.close()
	ms, err := listenMetrics(cfg.Metrics.Listen, log)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	defer ms.close()

	sw, err := vswitch.New(cfg, vswitch.Options{Logger: log, Version: version})
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	if err := sw.Start(); err != nil {
		log.Error("cannot start", zap.Error(err))
		sw.Close()
		return 1
	}
	srv.attach(sw)
	ms.serve(sw)
	log.Info("xswitch running", zap.String("config", path), zap.String("control_socket", cfg.ControlSocket), zap.String("version", version))
	code := 0
	select {
	case <-sigs.stop:
	case err := <-sw.Failed():
		log.Error("switch failed", zap.Error(err))
		code = 1
	}
	// Detaching waits for the control requests in flight: none may read
	// the switch while Close releases it.
	srv.attach(nil)
	ms.close() // scrapes read the switch
	if os.Getenv(stallEnv) != "" {
		log.Warn("test hook: the shutdown stalls here", zap.String("env", stallEnv))
		select {}
	}
	if err := sw.Close(); err != nil {
		log.Error("stop", zap.Error(err))
		code = 1
	}
	log.Info("stopped")
	return code
}

func cmdCtl(args []string, stdout, stderr io.Writer) int {
	sock := vswitch.DefaultControlSocket
	asJSON := false
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--json" || a == "-json" || a == "-j":
			asJSON = true
		case a == "--socket" || a == "-socket" || a == "-s":
			if i+1 >= len(args) {
				fmt.Fprintf(stderr, "xswitch ctl: %s needs a value, e.g. --socket @xswitch\n", a)
				return 2
			}
			i++
			sock = args[i]
		case strings.HasPrefix(a, "--socket="):
			sock = strings.TrimPrefix(a, "--socket=")
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) > 0 && argCtlCommands[rest[0]] != nil {
		return argCtlCommands[rest[0]](sock, asJSON, rest[1:], stdout, stderr)
	}
	if len(rest) != 1 {
		fmt.Fprint(stderr, "xswitch ctl: give one of show, fdb, stats\n"+usage)
		return 2
	}
	cmd := rest[0]
	switch cmd {
	case "show", "fdb", "stats":
	default:
		fmt.Fprintf(stderr, "xswitch ctl: unknown command %q; give show, fdb or stats\n", cmd)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data, err := request(ctx, sock, cmd)
	if err != nil {
		fmt.Fprintf(stderr, "xswitch ctl %s: %v\n", cmd, err)
		return 1
	}
	if asJSON {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			fmt.Fprintf(stderr, "xswitch ctl %s: %v\n", cmd, err)
			return 1
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	if err := formatText(stdout, cmd, data); err != nil {
		fmt.Fprintf(stderr, "xswitch ctl %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

var errUnknown = errors.New("unknown command")

// stallEnv, when set, makes `xswitch run` stall before it cleans up after a
// stop signal: the end-to-end tests use it to check that a second signal
// forces the exit of a shutdown that hangs.
const stallEnv = "XSWITCH_TEST_STALL_SHUTDOWN"

// forceExit ends the process at a second stop signal.
var forceExit = os.Exit

// signals handles the daemon's signals. The first SIGINT or SIGTERM closes
// stop; a second one exits at once (status 1), for a shutdown that hangs.
// SIGHUP is logged and ignored: there is no configuration reload, and its
// default action would kill the daemon without clean-up.
type signals struct {
	ch   chan os.Signal
	stop chan struct{}
	done chan struct{}
}

func catchSignals(log *zap.Logger) *signals {
	s := &signals{ch: make(chan os.Signal, 4), stop: make(chan struct{}), done: make(chan struct{})}
	signal.Notify(s.ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go s.loop(log)
	return s
}

func (s *signals) loop(log *zap.Logger) {
	stopping := false
	for {
		select {
		case <-s.done:
			return
		case sig := <-s.ch:
			switch {
			case sig == syscall.SIGHUP:
				log.Warn("SIGHUP ignored: xswitch does not reload its configuration; restart it to apply a change")
			case !stopping:
				stopping = true
				log.Info("stopping", zap.Stringer("signal", sig))
				close(s.stop)
			default:
				log.Error("second stop signal: exiting now, without clean-up; managed neighbour entries, and XDP programs attached through netlink, may be left behind",
					zap.Stringer("signal", sig))
				_ = log.Sync()
				forceExit(1)
			}
		}
	}
}

// release stops catching signals.
func (s *signals) release() {
	signal.Stop(s.ch)
	close(s.done)
}
