//go:build !xskready

package gen

import "errors"

// The xsk socket layer has not landed yet: the AF_XDP backend is built with
// -tags xskready until it does.
func openXSK(*Config) (txer, error) {
	return nil, errors.New("gen: AF_XDP backend not built (package xsk sockets pending); use -backend packet")
}
