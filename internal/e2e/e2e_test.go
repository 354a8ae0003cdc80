package e2e

import (
	"testing"

	"xswitch/internal/testnet"
)

// TestTopology: three hosts reach each other over the wire bridge on IPv4
// and IPv6.
func TestTopology(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := Topology(t, 3)
	for _, dst := range []string{hosts[2].IP4.String(), hosts[2].IP6.String()} {
		if out, err := testnet.Try(hosts[0].NS, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst); err != nil {
			t.Errorf("ping %s from h1: %v\n%s", dst, err, out)
		}
	}
	if out, err := testnet.Try(hosts[1].NS, "ping", "-c", "1", "-W", "2", hosts[0].IP6.String()); err != nil {
		t.Errorf("ping h1 from h2: %v\n%s", err, out)
	}
}
