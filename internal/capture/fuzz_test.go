package capture_test

import (
	"strings"
	"testing"

	"xswitch/internal/capture"
)

// FuzzParseFields: arbitrary tshark-like output gives frames or an error,
// never a panic.
func FuzzParseFields(f *testing.F) {
	f.Add("1\teth:ethertype:ip:udp:geneve:eth:ethertype:ip:icmp:data\t6a:9b:c9:28:a8:45|3a:88:c7:a5:01:42\t02:00:00:00:00:02|02:00:00:00:00:01\t0x0800|0x0800\t198.18.0.1|198.19.0.1\t198.18.0.2|198.19.0.2\t1|1\t\t\t59292\t6081\t0x0000\t3\t\t\t0x001388\t0x6558\t0\t1\t0x0102\t0x80\t010280010a0b0c0d\t10618\t\n")
	f.Add("1\teth:ethertype:ipv6:udp:geneve:eth:ethertype:arp\ta|b\tc|d\t0x86dd|0x0806\t\t\t\t2001:2::1\t2001:2::2\t1|2\t6081\t0x1234\t1\t\t\t0\t0x6558\t1\t0\t\t\t\t\t\n")
	f.Add(strings.Repeat("\t", 24) + "\n")
	f.Fuzz(func(t *testing.T, s string) {
		frames, err := capture.ParseFields(s)
		if err == nil {
			for _, fr := range frames {
				_ = fr.IsIPv6()
			}
		}
	})
}
