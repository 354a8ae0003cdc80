package harness

import (
	"testing"

	"xswitch/internal/e2e"
)

// TestMain removes the binaries the tests built (bench commands, xswitch).
func TestMain(m *testing.M) { e2e.Main(m) }
