package vswitch

import "net/netip"

// Status is what `xswitch ctl show` reports.
type Status struct {
	Version string `json:"version"`
	// Revision (the source commit, Modified if the source had changes),
	// StartedAt (RFC 3339) and UptimeSeconds are set by the daemon, which
	// knows its build and when it started.
	Revision      string  `json:"revision,omitempty"`
	Modified      bool    `json:"modified,omitempty"`
	StartedAt     string  `json:"started_at,omitempty"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	PID           int     `json:"pid"`
	CPUs          []int   `json:"cpus"`
	BusyPoll      bool    `json:"busy_poll"`
	// PollerPolicy is the pollers' scheduling policy (normal or batch).
	PollerPolicy string `json:"poller_policy"`
	// Idle is what the pollers do between bursts (poller_idle and the
	// poller_sleep_* and poller_kick_* settings).
	Idle     IdleStatus     `json:"idle"`
	UMEM     UMEMStatus     `json:"umem"`
	Underlay *PortStatus    `json:"underlay,omitempty"`
	Bridges  []BridgeStatus `json:"bridges"`
	// Generation counts the fabric generations published (reloads, link
	// events); Warnings are conditions an operator should look at (ports
	// down or absent).
	Generation uint64   `json:"generation"`
	Warnings   []string `json:"warnings,omitempty"`
}

// UMEMStatus describes the shared UMEM.
type UMEMStatus struct {
	Frames     int `json:"frames"`
	FrameSize  int `json:"frame_size"`
	Headroom   int `json:"headroom"`
	FreeFrames int `json:"free_frames"`
}

// PortStatus describes one port.
type PortStatus struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // "underlay", "local" or "internal"
	// State is the interface's link state: "up", "down" (administratively
	// down or no carrier) or "absent" (no interface of that name: its
	// frames are port_absent drops until it is back).
	State   string `json:"state"`
	Ifindex int    `json:"ifindex"`
	MAC     string `json:"mac,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
	// XDP is "native" or "generic", Link "bpf_link" or "netlink" (AF_XDP
	// ports); Copy is "zero-copy" or "copy" (AF_XDP) or "tap" (internal).
	XDP      string `json:"xdp,omitempty"`
	Link     string `json:"link,omitempty"`
	Copy     string `json:"copy"`
	ZeroCopy bool   `json:"zero_copy"`
	Queues   int    `json:"queues"`
	// TxBudget is how many frames one sendto transmits (copy mode).
	TxBudget  int            `json:"tx_budget,omitempty"`
	Pollers   []PollerStatus `json:"pollers,omitempty"`
	LocalIPs  []string       `json:"local_ips,omitempty"`
	Addresses []string       `json:"addresses,omitempty"`
	// Offloads are the checksum and segmentation offloads the port uses,
	// and why others are off.
	Offloads []string `json:"offloads,omitempty"`
}

// PollerStatus is one polling goroutine (one queue of one port).
type PollerStatus struct {
	Queue int `json:"queue"`
	CPU   int `json:"cpu"` // -1: not pinned
}

// BridgeStatus describes one bridge.
type BridgeStatus struct {
	Name    string         `json:"name"`
	VNI     uint32         `json:"vni"`
	Ports   []PortStatus   `json:"ports"`
	Tunnels []TunnelStatus `json:"tunnels"`
	FDB     FDBStats       `json:"fdb"`
}

// FDBStats are a bridge's MAC table counters.
type FDBStats struct {
	Entries   int    `json:"entries"`
	Learned   uint64 `json:"learned"`
	Moves     uint64 `json:"moves"`
	Evictions uint64 `json:"evictions"`
	Expired   uint64 `json:"expired"`
	Full      uint64 `json:"full"`
	// MovesDamped counts MAC moves refused by flap damping (the MAC stayed
	// where it was; the frame was forwarded).
	MovesDamped uint64 `json:"moves_damped"`
}

// TunnelStatus describes one tunnel and its underlay next hop.
type TunnelStatus struct {
	Remote  string        `json:"remote"`
	Key     uint32        `json:"key"`
	Local   string        `json:"local"`
	Options []string      `json:"options,omitempty"`
	NextHop NextHopStatus `json:"next_hop"`
	Source  string        `json:"source"` // "static" (configured) or "evpn" (from BGP routes)
}

// NextHopStatus is a tunnel's resolved next hop.
type NextHopStatus struct {
	State   string `json:"state"` // "resolved", "unresolved" (no neighbour yet) or "no_route"
	Gateway string `json:"gateway,omitempty"`
	Dev     string `json:"dev,omitempty"`
	MAC     string `json:"mac,omitempty"`
	Error   string `json:"error,omitempty"`

	src netip.Addr // the local endpoint address chosen
}

// FDBEntry is one MAC table entry as `xswitch ctl fdb` reports it.
type FDBEntry struct {
	Bridge string  `json:"bridge"`
	VNI    uint32  `json:"vni"`
	MAC    string  `json:"mac"`
	Port   string  `json:"port"`             // port name, or "tunnel:<remote>"
	Remote string  `json:"remote,omitempty"` // tunnel entries: the remote endpoint
	Age    float64 `json:"age"`              // seconds since last seen
	Static bool    `json:"static,omitempty"`
	Source string  `json:"source"` // "static" (configured or internal port), "learned" or "evpn"
}

// Stats is what `xswitch ctl stats` reports.
type Stats struct {
	Ports   []PortStats   `json:"ports"`
	Tunnels []TunnelStats `json:"tunnels"`
	// Options counts received Geneve options per (class, type).
	Options         []OptionStat `json:"options"`
	OptionsOverflow uint64       `json:"options_overflow"`
	// FloodCopies counts frames copied for flooding, TAPCopies frames copied
	// to or from internal ports.
	FloodCopies uint64 `json:"flood_copies"`
	TAPCopies   uint64 `json:"tap_copies"`
	// UMEMLostFrames counts frames closed sockets never gave back.
	UMEMLostFrames uint64 `json:"umem_lost_frames"`
}

// PortStats are the counters of one port.
type PortStats struct {
	Name      string            `json:"name"`
	Bridge    string            `json:"bridge,omitempty"`
	Kind      string            `json:"kind"`
	RxPackets uint64            `json:"rx_packets"`
	RxBytes   uint64            `json:"rx_bytes"`
	TxPackets uint64            `json:"tx_packets"`
	TxBytes   uint64            `json:"tx_bytes"`
	Drops     map[string]uint64 `json:"drops"`
	// Kernel are the kernel's counters of the port (kernelstats.go).
	Kernel *KernelPortStats `json:"kernel,omitempty"`
	// Offload counters (offload.go): partial checksums of frames received
	// on the port that xswitch finished; large frames read from an
	// internal port and the frames cut from them; merged frames written to
	// an internal port and the frames merged into them.
	ChecksumsCompleted uint64 `json:"checksums_completed"`
	// ChecksumsOffloaded: checksums of frames sent on the port that its
	// device computed, requested through AF_XDP TX metadata (txcsum.go).
	ChecksumsOffloaded uint64 `json:"checksums_offloaded,omitempty"`
	TSOFrames          uint64 `json:"tso_frames,omitempty"`
	TSOSegments        uint64 `json:"tso_segments,omitempty"`
	GROFrames          uint64 `json:"gro_frames,omitempty"`
	GROSegments        uint64 `json:"gro_segments,omitempty"`
	// Jumbo frames (AF_XDP multi-buffer, multibuf.go): frames longer
	// than one UMEM frame received on the port, and sent on it.
	JumboRx uint64 `json:"jumbo_rx,omitempty"`
	JumboTx uint64 `json:"jumbo_tx,omitempty"`
}

// TunnelStats are the counters of one tunnel (frames sent to and received
// from one remote endpoint).
type TunnelStats struct {
	Bridge    string            `json:"bridge"`
	Remote    string            `json:"remote"`
	VNI       uint32            `json:"vni"`
	RxPackets uint64            `json:"rx_packets"`
	RxBytes   uint64            `json:"rx_bytes"`
	TxPackets uint64            `json:"tx_packets"`
	TxBytes   uint64            `json:"tx_bytes"`
	Drops     map[string]uint64 `json:"drops"`
}

// OptionStat counts received Geneve options of one kind.
type OptionStat struct {
	Class string `json:"class"` // "0x0102"
	Type  string `json:"type"`  // "0x80"
	Count uint64 `json:"count"`
}
