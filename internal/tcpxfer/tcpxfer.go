// Package tcpxfer moves a stream of pseudo-random bytes over TCP between two
// network namespaces and checks that every byte arrived unchanged (SHA-256 of
// what was sent against what was received). It is the end-to-end check that
// TCP really works through the switch: a wrong checksum, a lost or reordered
// segment that TCP could not repair, or a stall shows up as an error.
package tcpxfer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"xswitch/internal/testnet"
)

// Result is what one transfer measured.
type Result struct {
	Bytes    int64         // bytes received and verified
	Duration time.Duration // from connect to the receiver's last byte
}

// Gbps is the goodput of r in Gbit/s.
func (r Result) Gbps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Bytes) * 8 / r.Duration.Seconds() / 1e9
}

// Run listens on dst:port in namespace srvNS, connects from cliNS, sends n
// bytes and waits for the receiver to have read and hashed them all, within
// timeout. It fails when the hashes differ, the byte counts differ, or the
// transfer does not finish in time.
func Run(srvNS, cliNS string, dst netip.Addr, port int, n int64, timeout time.Duration) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addr := netip.AddrPortFrom(dst, uint16(port)).String()
	var ln net.Listener
	if err := testnet.Do(srvNS, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return Result{}, fmt.Errorf("listen on %s in %s: %w", addr, srvNS, err)
	}
	defer ln.Close()
	got := make(chan received, 1)
	go func() { got <- receive(ctx, ln) }()

	var conn net.Conn
	if err := testnet.Do(cliNS, func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
		return err
	}); err != nil {
		return Result{}, fmt.Errorf("connect to %s from %s: %w", addr, cliNS, err)
	}
	start := time.Now()
	sent, sum, err := send(ctx, conn, n)
	if err != nil {
		return Result{}, fmt.Errorf("send %d bytes to %s (sent %d): %w", n, addr, sent, err)
	}
	var r received
	select {
	case r = <-got:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("receiver at %s: %w after %d bytes sent", addr, ctx.Err(), sent)
	}
	if r.err != nil {
		return Result{}, fmt.Errorf("receive at %s: %w", addr, r.err)
	}
	if r.n != sent || r.sum != sum {
		return Result{}, fmt.Errorf("received %d bytes (sha256 %x), sent %d (sha256 %x)", r.n, r.sum[:8], sent, sum[:8])
	}
	return Result{Bytes: r.n, Duration: r.end.Sub(start)}, nil
}

// received is what the receiving side read.
type received struct {
	n   int64
	sum [32]byte
	end time.Time
	err error
}

// receive accepts one connection and hashes what it reads until EOF.
func receive(ctx context.Context, ln net.Listener) (r received) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	c, err := ln.Accept()
	if err != nil {
		r.err = err
		return
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	h := sha256.New()
	r.n, r.err = io.Copy(h, c)
	r.end = time.Now()
	copy(r.sum[:], h.Sum(nil))
	return r
}

// send writes n pseudo-random bytes in 256 KiB writes and closes the
// connection's write side.
func send(ctx context.Context, c net.Conn, n int64) (int64, [32]byte, error) {
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	buf := make([]byte, 256<<10)
	h := sha256.New()
	var sent int64
	for sent < n {
		k := int64(len(buf))
		if n-sent < k {
			k = n - sent
		}
		_, _ = rng.Read(buf[:k])
		h.Write(buf[:k])
		w, err := c.Write(buf[:k])
		sent += int64(w)
		if err != nil {
			var sum [32]byte
			return sent, sum, err
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return sent, sum, err
		}
	}
	return sent, sum, nil
}
