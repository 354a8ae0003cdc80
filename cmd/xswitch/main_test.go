package main_test

import (
	"testing"

	"xswitch/internal/e2e"
)

// TestMain removes the xswitch binary the tests built.
func TestMain(m *testing.M) { e2e.Main(m) }
