package ovspeer_test

import (
	"testing"

	"xswitch/internal/ovspeer"
)

// FuzzParseFDB: arbitrary fdb/show output gives entries or an error, never
// a panic.
func FuzzParseFDB(f *testing.F) {
	f.Add(" port  VLAN  MAC                Age\n    1     0  b2:63:1c:1f:6e:8f    2\nLOCAL     0  2e:ee:79:0b:19:4d    ?\n")
	f.Add("port\n")
	f.Fuzz(func(t *testing.T, s string) {
		es, err := ovspeer.ParseFDB(s)
		if err == nil {
			for _, e := range es {
				if e.MAC == "" || e.Port == "" {
					t.Fatalf("entry with empty field from %q: %+v", s, e)
				}
			}
		}
	})
}
