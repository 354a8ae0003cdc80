package vswitch

import (
	"strings"
	"testing"
)

func TestConfigMetrics(t *testing.T) {
	base := "bridges:\n  - name: br1\n"
	for _, ok := range []string{"198.18.0.1:9417", "[2001:2::1]:9417", ":9417", "localhost:9417"} {
		c, err := ParseConfig([]byte(base + "metrics: {listen: \"" + ok + "\"}\n"))
		if err != nil {
			t.Errorf("metrics.listen %q rejected: %v", ok, err)
		} else if c.Metrics.Listen != ok {
			t.Errorf("metrics.listen %q parsed as %q", ok, c.Metrics.Listen)
		}
	}
	c, err := ParseConfig([]byte(base))
	if err != nil || c.Metrics.Listen != "" {
		t.Errorf("no metrics key: %v, listen %q", err, c.Metrics.Listen)
	}
	for _, bad := range []struct{ listen, want string }{
		{"198.18.0.1", "is not host:port"},
		{"198.18.0.1:0", `port "0" is not a number 1..65535`},
		{"198.18.0.1:65536", "is not a number 1..65535"},
		{"198.18.0.1:http", `port "http"`},
		{"example.org:9417", `host "example.org" is not an IP address`},
		{"2001:2::1:9417", "is not host:port"},
	} {
		_, err := ParseConfig([]byte(base + "metrics: {listen: \"" + bad.listen + "\"}\n"))
		if err == nil {
			t.Errorf("metrics.listen %q accepted", bad.listen)
			continue
		}
		for _, w := range []string{"metrics.listen: ", bad.want, "write host:port, e.g. 127.0.0.1:9417"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("metrics.listen %q: error %q lacks %q", bad.listen, err, w)
			}
		}
	}
}
