// Command xswitch is the xswitch daemon and its control client.
//
//	xswitch run --config FILE      run the switch in the foreground
//	xswitch check --config FILE    validate a configuration and exit
//	xswitch ctl [--socket S] [--json] show|fdb|stats|reload|fdb-flush [BRIDGE]|log-level [LEVEL]
//	xswitch ctl [--socket S] trace BRIDGE in_port=PORT field=value... | --hex FRAME [--json]
//	xswitch ctl [--socket S] capture PORT [-c COUNT] [-d DURATION] [--snaplen N] -w FILE|-
//	xswitch version
//
// Every command and ctl subcommand answers --help (help.go).
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
		if wantsHelp(args[1:]) {
			return printHelp(stdout, runHelp)
		}
		return cmdRun(args[1:], stderr)
	case "check":
		if wantsHelp(args[1:]) {
			return printHelp(stdout, checkHelp)
		}
		return cmdCheck(args[1:], stdout, stderr)
	case "ctl":
		return cmdCtl(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		if wantsHelp(args[1:]) {
			return printHelp(stdout, versionHelp)
		}
		if len(args) > 1 {
			fmt.Fprintf(stderr, "xswitch version: takes no arguments\n%s", versionHelp)
			return 2
		}
		fmt.Fprintln(stdout, readBuildInfo())
		return 0
	case "help", "-h", "--help", "-help":
		if len(args) > 1 {
			// xswitch help CMD [SUB]: the same as xswitch CMD [SUB] --help.
			return mainArgs(append(args[1:], "--help"), stdout, stderr)
		}
		return printHelp(stdout, usage)
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

// newLogger builds the daemon's logger; its level can be changed while it
// runs (`xswitch ctl log-level`) through the returned AtomicLevel.
func newLogger(level string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, zap.AtomicLevel{}, err
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zc.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	zc.Sampling = nil
	log, err := zc.Build()
	return log, zc.Level, err
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
	log, level, err := newLogger(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "xswitch: logger: %v\n", err)
		return 1
	}
	defer log.Sync()
	// Signals are caught from here on, so that a stop during set-up still
	// cleans up what was created.
	sigs := catchSignals(log)
	defer sigs.release()

	srv, err := startControl(cfg.ControlSocket, &level, log)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	defer srv.close()
	ms, err := listenMetrics(cfg.Metrics.Listen, log)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	defer ms.close()

	build := readBuildInfo()
	sw, err := startSwitch(cfg, build.Version, log)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	reload := reloader(path, sw, log)
	srv.reload = reload
	srv.attach(sw)
	ms.serve(sw)
	log.Info("xswitch running", zap.String("config", path), zap.String("control_socket", cfg.ControlSocket),
		zap.String("version", build.Version), zap.String("revision", build.Revision))
	// Only now is the switch ready for systemd (Type=notify): the pollers
	// run and ctl answers.
	notify(log, readyState(sw.Status()))
	code := waitStop(sigs, sw, reload, log)
	if err := shutdown(sw, srv, ms, log); err != nil {
		code = 1
	}
	log.Info("stopped")
	return code
}

// startControl opens the control socket and serves it; the switch is
// attached once it runs.
func startControl(addr string, level *zap.AtomicLevel, log *zap.Logger) (*controlServer, error) {
	srv, err := listenControl(addr, log)
	if err != nil {
		return nil, err
	}
	srv.level = level
	srv.build = readBuildInfo()
	srv.started = time.Now()
	go srv.serve()
	return srv, nil
}

// startSwitch builds the switch and starts its pollers; on failure nothing
// of it is left behind.
func startSwitch(cfg *vswitch.Config, version string, log *zap.Logger) (*vswitch.Switch, error) {
	sw, err := vswitch.New(cfg, vswitch.Options{Logger: log, Version: version})
	if err != nil {
		return nil, err
	}
	if err := sw.Start(); err != nil {
		sw.Close()
		return nil, err
	}
	return sw, nil
}

// waitStop serves SIGHUP reloads until a stop signal (exit code 0) or a
// switch failure (exit code 1), telling systemd each change of state.
func waitStop(sigs *signals, sw *vswitch.Switch, reload func() (*vswitch.ReloadResult, error), log *zap.Logger) int {
	for {
		select {
		case <-sigs.stop:
			notify(log, "STOPPING=1\nSTATUS=stopping")
			return 0
		case <-sigs.hup:
			notify(log, "RELOADING=1")
			_, _ = reload() // logged by reloader
			notify(log, readyState(sw.Status()))
		case err := <-sw.Failed():
			log.Error("switch failed", zap.Error(err))
			notify(log, "STOPPING=1\nSTATUS=failed: "+err.Error())
			return 1
		}
	}
}

// shutdown detaches the control and metrics servers from the switch, then
// closes it. The error (logged here) is Close's.
func shutdown(sw *vswitch.Switch, srv *controlServer, ms *metricsServer, log *zap.Logger) error {
	// Detaching waits for the control requests in flight: none may read
	// the switch while Close releases it.
	srv.attach(nil)
	ms.close() // scrapes read the switch
	if os.Getenv(stallEnv) != "" {
		log.Warn("test hook: the shutdown stalls here", zap.String("env", stallEnv))
		select {}
	}
	err := sw.Close()
	if err != nil {
		log.Error("stop", zap.Error(err))
	}
	return err
}

func cmdCtl(args []string, stdout, stderr io.Writer) int {
	sock := vswitch.DefaultControlSocket
	asJSON, help := false, false
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case isHelpFlag(a):
			help = true
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
	if len(rest) > 0 && argCtlCommands[rest[0]] != nil && !help {
		return argCtlCommands[rest[0]](sock, asJSON, rest[1:], stdout, stderr)
	}
	if len(rest) == 0 {
		if help {
			return printHelp(stdout, ctlHelp)
		}
		fmt.Fprint(stderr, "xswitch ctl: give one of show, fdb, bgp, stats, reload, fdb-flush, log-level, trace, capture\n"+ctlHelp)
		return 2
	}
	cmd := rest[0]
	c, ok := ctlCommands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "xswitch ctl: unknown command %q; give show, fdb or stats, or bgp, reload, fdb-flush, log-level [LEVEL], trace, capture\n", cmd)
		return 2
	}
	if help {
		return printHelp(stdout, c.help)
	}
	if len(rest)-1 > c.maxArgs {
		fmt.Fprintf(stderr, "xswitch ctl %s: too many arguments: %s\n%s", cmd, strings.Join(rest[1:], " "), c.help)
		return 2
	}
	if cmd == "log-level" && len(rest) == 2 {
		if _, err := parseLevel(rest[1]); err != nil {
			fmt.Fprintf(stderr, "xswitch ctl log-level: %v\n", err)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data, err := request(ctx, sock, strings.Join(rest, " "))
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
	if cmd == "log-level" {
		err = formatLogLevel(stdout, data)
	} else {
		err = formatText(stdout, cmd, data)
	}
	if err != nil {
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
// SIGHUP asks for a reload of the configuration file (hup; several pending
// make one reload; one during start-up or shutdown is logged and dropped).
type signals struct {
	ch   chan os.Signal
	stop chan struct{}
	hup  chan struct{}
	done chan struct{}
}

func catchSignals(log *zap.Logger) *signals {
	s := &signals{ch: make(chan os.Signal, 4), stop: make(chan struct{}), hup: make(chan struct{}, 1), done: make(chan struct{})}
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
				log.Info("SIGHUP: reloading the configuration")
				select {
				case s.hup <- struct{}{}:
				default: // a reload is pending already
				}
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

// reloader re-reads the configuration file and applies it to sw, for `ctl
// reload` and SIGHUP; the outcome is logged either way.
func reloader(path string, sw *vswitch.Switch, log *zap.Logger) func() (*vswitch.ReloadResult, error) {
	return func() (*vswitch.ReloadResult, error) {
		cfg, err := vswitch.LoadConfig(path)
		if err == nil {
			var r *vswitch.ReloadResult
			if r, err = sw.Apply(cfg); err == nil {
				log.Info("reloaded", zap.String("config", path), zap.Uint64("generation", r.Generation))
				return r, nil
			}
		}
		var b strings.Builder
		printConfigError(&b, path, err)
		log.Warn("reload refused; nothing was changed", zap.String("config", path), zap.Error(err))
		return nil, errors.New(strings.TrimSuffix(strings.TrimPrefix(b.String(), "xswitch: "), "\n"))
	}
}

// release stops catching signals.
func (s *signals) release() {
	signal.Stop(s.ch)
	close(s.done)
}
