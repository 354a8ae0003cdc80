package csumref

import "testing"

// TestRFC1071Example: the worked example of RFC 1071 section 3, and the
// end-around carry.
func TestRFC1071Example(t *testing.T) {
	if got := Sum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0xddf2 {
		t.Errorf("RFC 1071 example: %#04x, want 0xddf2", got)
	}
	if got := Sum([]byte{0xff, 0xff}, []byte{0x00, 0x01}); got != 0x0001 {
		t.Errorf("0xffff + 1 = %#04x, want 0x0001 (end-around carry)", got)
	}
	if got := Sum([]byte{0x12}, []byte{0x34}); got != 0x1234 {
		t.Errorf("parts join: %#04x, want 0x1234", got)
	}
}
