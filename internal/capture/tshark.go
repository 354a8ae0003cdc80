package capture

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Checksum is Wireshark's verdict on a checksum (its proto_checksum_enum_e).
type Checksum int

// Wireshark's checksum statuses, as tshark prints them with -T fields.
const (
	ChecksumBad        Checksum = 0
	ChecksumGood       Checksum = 1
	ChecksumUnverified Checksum = 2
	ChecksumNotPresent Checksum = 3  // e.g. a zero UDP checksum over IPv4
	ChecksumIllegal    Checksum = 4  // e.g. a zero UDP checksum over IPv6
	ChecksumAbsent     Checksum = -1 // the field was not in the frame (no such header)
)

func (c Checksum) String() string {
	switch c {
	case ChecksumBad:
		return "bad"
	case ChecksumGood:
		return "good"
	case ChecksumUnverified:
		return "unverified"
	case ChecksumNotPresent:
		return "not_present"
	case ChecksumIllegal:
		return "illegal"
	case ChecksumAbsent:
		return "absent"
	}
	return "checksum(" + strconv.Itoa(int(c)) + ")"
}

// Option is one Geneve option TLV as tshark decoded it.
type Option struct {
	Class uint16
	Type  uint8
	Data  []byte
}

// Frame is one Geneve frame as tshark's dissectors decoded it: the outer
// headers, the Geneve header and options, and a summary of the inner frame.
type Frame struct {
	Number    int
	Protocols string // frame.protocols, e.g. eth:ethertype:ip:udp:geneve:eth:ethertype:ip:icmp:data

	OuterSrcMAC, OuterDstMAC string
	OuterSrc, OuterDst       netip.Addr
	IPChecksum               Checksum // outer IPv4 header checksum; ChecksumAbsent over IPv6
	SrcPort, DstPort         uint16   // outer UDP
	UDPChecksum              uint16
	UDPChecksumStatus        Checksum

	VNI           uint32
	Proto         uint16
	OAM, Critical bool
	Options       []Option

	InnerSrcMAC, InnerDstMAC string
	InnerEtherType           uint16
	InnerSrc, InnerDst       netip.Addr // inner IPv4/IPv6 if any
	InnerL4                  string     // "icmp", "icmpv6", "udp", "tcp", "arp" or ""
	InnerSrcPort             uint16     // inner UDP/TCP ports, or the ICMP echo identifier in InnerSrcPort
	InnerDstPort             uint16
}

// IsIPv6 reports whether the outer header is IPv6.
func (f *Frame) IsIPv6() bool { return f.OuterSrc.Is6() }

var tsharkFields = []string{
	"frame.number", "frame.protocols",
	"eth.src", "eth.dst", "eth.type",
	"ip.src", "ip.dst", "ip.checksum.status",
	"ipv6.src", "ipv6.dst",
	"udp.srcport", "udp.dstport", "udp.checksum", "udp.checksum.status",
	"tcp.srcport", "tcp.dstport",
	"geneve.vni", "geneve.proto_type", "geneve.flags.oam", "geneve.flags.critical",
	"geneve.option.class", "geneve.option.type", "geneve.option",
	"icmp.ident", "icmpv6.echo.identifier",
}

// TsharkArgs are the arguments DecodeGeneve passes to tshark (after -r
// FILE): Geneve frames only, checksum validation on, one line per frame with
// every occurrence of a field joined by '|'.
func TsharkArgs() []string {
	args := []string{"-Y", "geneve", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	return args
}

// Tshark runs tshark -r pcap with args and returns its standard output.
func Tshark(pcap string, args ...string) (string, error) {
	if _, err := exec.LookPath("tshark"); err != nil {
		return "", fmt.Errorf("tshark not found: %w (make deps)", err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("tshark", append([]string{"-r", pcap}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("tshark -r %s %s: %w: %s", pcap, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// DecodeGeneve decodes every Geneve frame in pcap with tshark.
func DecodeGeneve(pcap string) ([]Frame, error) {
	out, err := Tshark(pcap, TsharkArgs()...)
	if err != nil {
		return nil, err
	}
	return ParseFields(out)
}

// ParseFields parses tshark output produced with TsharkArgs.
func ParseFields(out string) ([]Frame, error) {
	var frames []Frame
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) != len(tsharkFields) {
			return nil, fmt.Errorf("tshark line has %d fields, want %d: %q", len(cols), len(tsharkFields), line)
		}
		v := make(map[string][]string, len(cols))
		for i, c := range cols {
			if c != "" {
				v[tsharkFields[i]] = strings.Split(c, "|")
			}
		}
		f, err := parseFrame(v)
		if err != nil {
			return nil, fmt.Errorf("%w in tshark line %q", err, line)
		}
		frames = append(frames, f)
	}
	return frames, nil
}

// parseFrame builds a Frame from one line of tshark fields, by name.
func parseFrame(v map[string][]string) (Frame, error) {
	var f Frame
	var p parser
	f.Number = int(p.uint(at(v, "frame.number", 0), 32))
	f.Protocols = at(v, "frame.protocols", 0)
	outer, inner, err := splitAtGeneve(f.Protocols)
	if err != nil {
		return f, err
	}
	ip4, ip6, err := p.outer(v, outer, &f)
	if err != nil {
		return f, err
	}
	if err := p.geneve(v, &f); err != nil {
		return f, err
	}
	p.inner(v, inner, ip4, ip6, &f)
	return f, p.err
}

// splitAtGeneve splits frame.protocols into the outer layers (eth, ip or
// ipv6, udp) and the inner frame's, which come after "geneve".
func splitAtGeneve(protocols string) (outer, inner []string, err error) {
	layers := strings.Split(protocols, ":")
	gi := slices.Index(layers, "geneve")
	if gi < 0 {
		return nil, nil, fmt.Errorf("not a Geneve frame (protocols %s)", protocols)
	}
	return layers[:gi], layers[gi+1:], nil
}

// outer fills f's outer Ethernet, IP and UDP fields and returns how many
// IPv4 and IPv6 headers it took: the inner frame's are the next
// occurrences of the same fields.
func (p *parser) outer(v map[string][]string, outer []string, f *Frame) (ip4, ip6 int, err error) {
	f.OuterSrcMAC, f.OuterDstMAC = at(v, "eth.src", 0), at(v, "eth.dst", 0)
	f.IPChecksum = ChecksumAbsent
	switch {
	case slices.Contains(outer, "ip"):
		f.OuterSrc, f.OuterDst = p.addr(at(v, "ip.src", 0)), p.addr(at(v, "ip.dst", 0))
		f.IPChecksum = Checksum(p.uint(at(v, "ip.checksum.status", 0), 8))
		ip4++
	case slices.Contains(outer, "ipv6"):
		f.OuterSrc, f.OuterDst = p.addr(at(v, "ipv6.src", 0)), p.addr(at(v, "ipv6.dst", 0))
		ip6++
	default:
		return 0, 0, fmt.Errorf("outer header is neither IPv4 nor IPv6 (protocols %s)", f.Protocols)
	}
	f.SrcPort = uint16(p.uint(at(v, "udp.srcport", 0), 16))
	f.DstPort = uint16(p.uint(at(v, "udp.dstport", 0), 16))
	f.UDPChecksum = uint16(p.uint(at(v, "udp.checksum", 0), 16))
	f.UDPChecksumStatus = Checksum(p.uint(at(v, "udp.checksum.status", 0), 8))
	return ip4, ip6, nil
}

// geneve fills f's Geneve header fields and options.
func (p *parser) geneve(v map[string][]string, f *Frame) error {
	f.VNI = uint32(p.uint(at(v, "geneve.vni", 0), 24))
	f.Proto = uint16(p.uint(at(v, "geneve.proto_type", 0), 16))
	f.OAM = p.bool(at(v, "geneve.flags.oam", 0))
	f.Critical = p.bool(at(v, "geneve.flags.critical", 0))
	classes, types, raws := v["geneve.option.class"], v["geneve.option.type"], v["geneve.option"]
	if len(classes) != len(types) || len(classes) != len(raws) {
		return fmt.Errorf("option fields disagree: %d classes, %d types, %d options", len(classes), len(types), len(raws))
	}
	for i := range classes {
		raw, err := hex.DecodeString(raws[i])
		if err != nil || len(raw) < 4 {
			return fmt.Errorf("option %d: bad bytes %q", i, raws[i])
		}
		f.Options = append(f.Options, Option{
			Class: uint16(p.uint(classes[i], 16)),
			Type:  uint8(p.uint(types[i], 8)),
			Data:  raw[4:], // after class(2), type(1), reserved+length(1)
		})
	}
	return nil
}

// inner fills f's inner Ethernet, IP and L4 fields. ip4 and ip6 are the
// occurrences of the IP fields the outer header took; the outer UDP header
// took the first UDP fields.
func (p *parser) inner(v map[string][]string, inner []string, ip4, ip6 int, f *Frame) {
	if slices.Contains(inner, "eth") {
		f.InnerSrcMAC, f.InnerDstMAC = at(v, "eth.src", 1), at(v, "eth.dst", 1)
		f.InnerEtherType = uint16(p.uint(at(v, "eth.type", 1), 16))
	}
	switch {
	case slices.Contains(inner, "ip"):
		f.InnerSrc, f.InnerDst = p.addr(at(v, "ip.src", ip4)), p.addr(at(v, "ip.dst", ip4))
	case slices.Contains(inner, "ipv6"):
		f.InnerSrc, f.InnerDst = p.addr(at(v, "ipv6.src", ip6)), p.addr(at(v, "ipv6.dst", ip6))
	}
	switch {
	case slices.Contains(inner, "udp"):
		f.InnerL4 = "udp"
		f.InnerSrcPort = uint16(p.uint(at(v, "udp.srcport", 1), 16))
		f.InnerDstPort = uint16(p.uint(at(v, "udp.dstport", 1), 16))
	case slices.Contains(inner, "tcp"):
		f.InnerL4 = "tcp"
		f.InnerSrcPort = uint16(p.uint(at(v, "tcp.srcport", 0), 16))
		f.InnerDstPort = uint16(p.uint(at(v, "tcp.dstport", 0), 16))
	case slices.Contains(inner, "icmp"):
		f.InnerL4 = "icmp"
		if s := at(v, "icmp.ident", 0); s != "" {
			f.InnerSrcPort = uint16(p.uint(s, 16))
		}
	case slices.Contains(inner, "icmpv6"):
		f.InnerL4 = "icmpv6"
		if s := at(v, "icmpv6.echo.identifier", 0); s != "" {
			f.InnerSrcPort = uint16(p.uint(s, 16))
		}
	case slices.Contains(inner, "arp"):
		f.InnerL4 = "arp"
	}
}

// at returns occurrence i of a field, or "".
func at(v map[string][]string, field string, i int) string {
	if s := v[field]; i < len(s) {
		return s[i]
	}
	return ""
}

// parser keeps the first error, so parseFrame reads as a list of fields.
type parser struct{ err error }

func (p *parser) uint(s string, bits int) uint64 {
	if s == "" {
		return 0
	}
	n, err := strconv.ParseUint(s, 0, bits)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("bad number %q: %w", s, err)
	}
	return n
}

func (p *parser) addr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("bad address %q: %w", s, err)
	}
	return a
}

func (p *parser) bool(s string) bool {
	switch strings.ToLower(s) {
	case "1", "true":
		return true
	case "", "0", "false":
		return false
	}
	if p.err == nil {
		p.err = fmt.Errorf("bad boolean %q", s)
	}
	return false
}
