package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"xswitch/metrics"
)

// metricsServer serves Prometheus metrics on metrics.listen. Its listener
// is taken before the switch is built, so that an address in use fails the
// start before anything is created; it serves once the switch runs.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
	log *zap.Logger
}

// listenMetrics takes the metrics address; nil, nil when none is configured.
func listenMetrics(addr string, log *zap.Logger) (*metricsServer, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w (the host must be an address of this network namespace, the port free; write another address in metrics.listen)", addr, err)
	}
	return &metricsServer{ln: ln, log: log}, nil
}

// serve answers GET /metrics from src until close.
func (m *metricsServer) serve(src metrics.Source) {
	if m == nil {
		return
	}
	build := readBuildInfo()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(src, build.Version, build.Revision),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(m.log), Registry: reg, MaxRequestsInFlight: 4, Timeout: 10 * time.Second}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.log.Info("metrics served", zap.String("url", "http://"+m.ln.Addr().String()+"/metrics"))
	go func() {
		if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics server", zap.Error(err))
		}
	}()
}

// close stops serving and waits for scrapes under way, which read the
// switch: call it before closing the switch. Safe to call more than once.
func (m *metricsServer) close() {
	if m == nil {
		return
	}
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.srv.Shutdown(ctx); err != nil {
			m.log.Warn("metrics server shutdown", zap.Error(err))
		}
	}
	m.ln.Close() // not yet served, or Serve not yet started: Shutdown did not close it
}
