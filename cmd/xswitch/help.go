package main

import (
	"fmt"
	"io"
)

// Help texts. Every command and ctl subcommand prints its own with -h or
// --help, to stdout, and exits 0 (TestHelp runs them all).

const usage = `usage:
  xswitch run --config FILE                 run the switch (foreground; SIGINT/SIGTERM stop it,
                                            a second one forces the exit; SIGHUP reloads FILE)
  xswitch check --config FILE               validate a configuration file and exit
  xswitch ctl [--socket S] [--json] show|fdb|stats|reload|fdb-flush [BRIDGE]|log-level [LEVEL]
                                            ask the running switch (default socket @xswitch,
                                            the instance of this network namespace)
  xswitch ctl [--socket S] trace BRIDGE in_port=PORT dl_src=MAC dl_dst=MAC [dl_type= dl_vlan= nw_src=
                                            nw_dst= nw_proto= tp_src= tp_dst=] | --hex FRAME  [--json]
                                            what the switch would do with a frame (no side effect)
  xswitch ctl [--socket S] capture PORT|tunnel:REMOTE [-c COUNT] [-d DURATION] [--snaplen N] -w FILE|-
                                            frames received and sent on a port, as pcapng (tshark -r FILE)
  xswitch version                           print the version and source revision
  xswitch COMMAND --help                    help on a command (also: xswitch ctl show --help)
`

const runHelp = `usage: xswitch run --config FILE

Runs the switch in the foreground until SIGINT or SIGTERM (a second one
exits at once, without clean-up). The configuration is checked first, as
by "xswitch check"; nothing is created if it is not valid. Logs go to
stderr. Under systemd (Type=notify) it reports READY=1 once the pollers
forward and the control socket answers, STOPPING=1 when it stops.
SIGHUP re-reads FILE and applies the changes, as "xswitch ctl reload".

  --config FILE   the configuration (YAML; docs/configuration.md)
`

const checkHelp = `usage: xswitch check --config FILE

Validates a configuration file and what it needs from the system (the
interfaces exist, the internal port names are free, the CPUs exist), then
exits: 0 and "OK" when "xswitch run" would start, 1 with every problem,
each naming the YAML field and the fix. It changes nothing.

  --config FILE   the configuration (YAML; docs/configuration.md)
`

const versionHelp = `usage: xswitch version

Prints the version, the source revision (commit), whether the source had
changes, the commit time and the Go version the binary was built with.
"xswitch ctl show" prints the version and revision of the running switch,
with its uptime.
`

const ctlHelp = `usage: xswitch ctl [--socket S] [--json] COMMAND [ARG]

Asks the running switch over its control socket.

  show              ports, bridges, tunnels and next hops; version, uptime
  fdb               the MAC tables
  bgp               EVPN: BGP neighbours, routes per VNI, counters
  stats             packet, byte and drop counters
  reload            re-read the configuration file and apply the changes
  fdb-flush [BRIDGE] forget the learned MACs (of one bridge); static ones stay
  log-level [LEVEL] print the log level, or set it: debug, info, warn, error
  trace BRIDGE ...  what the switch would do with a frame, step by step
  capture PORT ...  the frames a port receives and sends, as pcapng

  --socket S        the control socket: @name (abstract, per network
                    namespace) or a path; default @xswitch
  --json            print the reply as JSON (stable field names)
  --help            help; "xswitch ctl COMMAND --help" for one command
`

const showHelp = `usage: xswitch ctl [--socket S] [--json] show

Prints what the switch is made of: version, source revision and uptime,
the UMEM, the underlay and every bridge with its ports (how XDP is
attached, copy or zero-copy, pollers and their CPUs) and its tunnels with
their underlay next hop. --json adds the MAC table counters per bridge.
`

const fdbHelp = `usage: xswitch ctl [--socket S] [--json] fdb

Prints every MAC entry: bridge, VNI, MAC, the port (or tunnel:REMOTE) it
was last seen on, the seconds since (or static), and its source: learned,
static (configured, or the internal port's own MAC) or evpn (a BGP EVPN
type-2 route).
`

const bgpHelp = `usage: xswitch ctl [--socket S] [--json] bgp

Prints the EVPN control plane (the evpn: section, docs/fabric.md): router
id, AS, tunnel endpoint; per BGP neighbour its state, uptime and the EVPN
routes received, accepted and advertised; per VNI the flood list (VTEPs of
the type-3 routes), remote and local MACs and routes; the counters of
ignored routes by reason. An error without an evpn: section.
`

const statsHelp = `usage: xswitch ctl [--socket S] [--json] stats

Prints packets and bytes received and sent per port and tunnel, drops per
reason (docs/operations.md lists the reasons), and the kernel's counters
of the AF_XDP sockets and devices.
`

const logLevelHelp = `usage: xswitch ctl [--socket S] [--json] log-level [LEVEL]

Without LEVEL, prints the running switch's log level; with LEVEL (debug,
info, warn or error) sets it until the switch stops (log_level in the
configuration is the level at start). At debug the switch logs, once a
second at most per port and reason, the drops that grew with a hint, and
MAC moves per bridge.
`

const reloadHelp = `usage: xswitch ctl [--socket S] [--json] reload

Re-reads the running switch's configuration file and applies the
difference while it runs: bridges, tunnels, local ports, keys, options,
static MACs and FDB limits. The file is validated in full first; an
invalid file changes nothing, and the reply lists every problem (exit 1).
What did not change keeps forwarding. Settings that need a restart
(underlay, cpus, umem, ...) are refused with a message that says so.
Prints what was added, removed and kept. SIGHUP does the same.
`

const fdbFlushHelp = `usage: xswitch ctl [--socket S] [--json] fdb-flush [BRIDGE]

Forgets the learned MACs of every bridge, or of BRIDGE; static entries
(static_macs, the internal port's own MAC) stay. Prints how many were
removed. Traffic is flooded until the MACs are learned again.
`

const traceHelp = `usage: xswitch ctl [--socket S] [--json] trace BRIDGE in_port=PORT [FIELD=VALUE...] | --hex FRAME

Runs the switch's forwarding decision on a copy of a frame, with no side
effect (nothing learned, nothing sent), and prints each step: where the
frame came from, what learning would do, the lookup, the outputs (flood
list, split horizon) with the Geneve headers tunnel outputs would get, or
the drop reason. PORT is a local or internal port, tunnel:REMOTE (the frame
as that remote's VM sent it) or the underlay (with --hex: a whole Geneve
frame). Fields, as ovs-appctl ofproto/trace: dl_src, dl_dst, dl_type,
dl_vlan, nw_src, nw_dst, nw_proto, tp_src, tp_dst; --hex FRAME gives the
frame's bytes instead.
`

const captureHelp = `usage: xswitch ctl [--socket S] capture PORT|tunnel:REMOTE [-c COUNT] [-d DURATION] [--snaplen N] -w FILE|-

Writes the frames the switch receives and sends on PORT (both directions
marked) as pcapng to FILE, or to stdout with -w -, until COUNT frames,
DURATION or ctrl-C. The underlay shows Geneve frames as on the wire,
tunnel:REMOTE the inner frames. A capture that cannot keep up loses
capture copies (counted, in the file's statistics), never switch frames.
Read it with tshark -r FILE.
`

// ctlCommand is one request of `xswitch ctl`.
type ctlCommand struct {
	maxArgs int // arguments after the command word
	help    string
}

var ctlCommands = map[string]ctlCommand{
	"show":      {help: showHelp},
	"fdb":       {help: fdbHelp},
	"bgp":       {help: bgpHelp},
	"stats":     {help: statsHelp},
	"reload":    {help: reloadHelp},
	"fdb-flush": {maxArgs: 1, help: fdbFlushHelp},
	"log-level": {maxArgs: 1, help: logLevelHelp},
	"trace":     {maxArgs: 64, help: traceHelp},
	"capture":   {maxArgs: 64, help: captureHelp},
}

func isHelpFlag(a string) bool { return a == "-h" || a == "--help" || a == "-help" }

// wantsHelp reports whether args ask for help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

func printHelp(w io.Writer, text string) int {
	fmt.Fprint(w, text)
	return 0
}
