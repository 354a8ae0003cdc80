//go:build !e2eready

package harness

import "testing"

// TEMPORARY until internal/e2e (which starts xswitch) lands.
func newXswitch(t *testing.T) System {
	t.Fatal("xswitch system: internal/e2e has not landed yet")
	return nil
}
