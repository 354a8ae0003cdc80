package vswitch

import (
	"net"
	"net/netip"
	"strconv"
)

// MetricsConfig is the Prometheus endpoint (`metrics:`).
type MetricsConfig struct {
	// Listen is the host:port that serves /metrics over HTTP; empty: no
	// metrics. The host is an IP address, "localhost", or empty for every
	// address of the network namespace.
	Listen string `yaml:"listen"`
}

// validateMetrics checks metrics.listen without opening anything.
func validateMetrics(m *MetricsConfig, bad func(field, format string, a ...any)) {
	if m.Listen == "" {
		return
	}
	const fix = "write host:port, e.g. 127.0.0.1:9417, [::1]:9417, or :9417 for every address"
	host, port, err := net.SplitHostPort(m.Listen)
	if err != nil {
		bad("metrics.listen", "%q is not host:port; %s", m.Listen, fix)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		bad("metrics.listen", "%q: port %q is not a number 1..65535; %s", m.Listen, port, fix)
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "" && host != "localhost" {
		bad("metrics.listen", "%q: host %q is not an IP address; %s", m.Listen, host, fix)
	}
}
