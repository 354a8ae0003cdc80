package xsk

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/mdlayher/netlink"

	"xswitch/internal/testnet"
)

// TestDeviceFeaturesVeth asks the kernel about a veth in a namespace: the
// netdev family answers (Linux 6.18 here), XDP basic and redirect are
// there, and veth offers no AF_XDP zero-copy and no xsk tx-checksum.
func TestDeviceFeaturesVeth(t *testing.T) {
	testnet.RequireRoot(t)
	n := testnet.New(t)
	a, b := n.NS("fa"), n.NS("fb")
	n.Veth(a, "a0", b, "b0", 1)
	var f Features
	var missErr error
	err := testnet.Do(a, func() error {
		ifc, err := net.InterfaceByName("a0")
		if err != nil {
			return err
		}
		f, err = DeviceFeatures(ifc.Index)
		if err != nil {
			return err
		}
		_, missErr = DeviceFeatures(ifc.Index + 1000)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("veth: %v (xdp %#x xsk %#x zc-max-segs %d)", f, f.XDP, f.XSK, f.ZCMaxSegs)
	if !f.Known {
		t.Fatal("netdev family missing on this kernel: the test expects Linux 6.3+")
	}
	if f.XDP&XDPActBasic == 0 || f.XDP&XDPActRedirect == 0 {
		t.Errorf("veth XDP features %#x lack basic/redirect", f.XDP)
	}
	if f.TxChecksum() || f.ZeroCopy() {
		t.Errorf("veth reports tx-checksum %v zero-copy %v, want neither", f.TxChecksum(), f.ZeroCopy())
	}
	if missErr == nil {
		t.Error("DeviceFeatures of a missing ifindex returned no error")
	}
}

func encodeAttrs(t testing.TB, fn func(ae *netlink.AttributeEncoder)) []byte {
	ae := netlink.NewAttributeEncoder()
	fn(ae)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseDevAttrs(t *testing.T) {
	b := encodeAttrs(t, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(netdevADevIfindex, 7)
		ae.Uint64(netdevADevXDPFeatures, XDPActBasic|XDPActXSKZeroCopy|XDPActRxSG)
		ae.Uint32(netdevADevZCMaxSegs, 17)
		ae.Uint64(netdevADevXSKFeatures, XSKTxChecksum)
		ae.Bytes(99, []byte{1, 2, 3}) // unknown: skipped
	})
	a, err := parseDevAttrs(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.ifindex != 7 || !a.Known || !a.TxChecksum() || !a.ZeroCopy() || !a.RxSG() || a.ZCMaxSegs != 17 || !a.HasXSKField {
		t.Fatalf("parsed %+v", a)
	}
	if s := a.String(); s != "basic,xsk-zerocopy,rx-sg,xsk:tx-checksum,zc-max-segs:17" {
		t.Errorf("String() = %q", s)
	}
	// A 4-byte flag set is the same bits; a 2-byte one is an error.
	b = encodeAttrs(t, func(ae *netlink.AttributeEncoder) { ae.Uint32(netdevADevXSKFeatures, XSKTxTimestamp) })
	if a, err = parseDevAttrs(b); err != nil || a.XSK != XSKTxTimestamp || a.TxChecksum() {
		t.Errorf("4-byte xsk-features: %+v, %v", a, err)
	}
	b = encodeAttrs(t, func(ae *netlink.AttributeEncoder) { ae.Uint16(netdevADevXSKFeatures, 2) })
	if _, err = parseDevAttrs(b); err == nil {
		t.Error("2-byte xsk-features accepted")
	}
	b = encodeAttrs(t, func(ae *netlink.AttributeEncoder) { ae.Uint64(netdevADevIfindex, 2) })
	if _, err = parseDevAttrs(b); err == nil {
		t.Error("8-byte ifindex accepted")
	}
	if (Features{}).String() != "unknown (no netdev netlink family)" {
		t.Error("String of unknown features")
	}
}

// FuzzParseDevAttrs: any bytes give a result or an error, never a panic;
// a result's fields are the last value of their attribute.
func FuzzParseDevAttrs(f *testing.F) {
	f.Add(encodeAttrs(f, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(netdevADevIfindex, 3)
		ae.Uint64(netdevADevXDPFeatures, 0x23)
		ae.Uint64(netdevADevXSKFeatures, 2)
	}))
	f.Add([]byte{4, 0, 1, 0})
	f.Add([]byte{8, 0, 6, 0, 2, 0, 0, 0})
	f.Add([]byte{255, 255, 6, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseDevAttrs(b)
		if err != nil {
			return
		}
		// Cross-check xsk-features against a plain walk of the TLVs.
		var want uint64
		for r := b; len(r) >= 4; {
			l := int(binary.NativeEndian.Uint16(r))
			typ := binary.NativeEndian.Uint16(r[2:]) & 0x3fff
			if l == 0 { // the decoder skips an empty attribute's header
				r = r[4:]
				continue
			}
			if l < 4 || l > len(r) {
				break
			}
			if typ == netdevADevXSKFeatures {
				switch l - 4 {
				case 4:
					want = uint64(binary.NativeEndian.Uint32(r[4:]))
				case 8:
					want = binary.NativeEndian.Uint64(r[4:])
				}
			}
			al := (l + 3) &^ 3
			if al > len(r) {
				break
			}
			r = r[al:]
		}
		if a.XSK != want {
			t.Fatalf("xsk-features %#x, plain walk says %#x", a.XSK, want)
		}
	})
}
