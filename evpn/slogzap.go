package evpn

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// slogZap hands GoBGP's log/slog records to the switch's zap logger. GoBGP
// logs every session step at info; that is debug for xswitch, whose own
// lines (session up/down, MAC moves) are at info.
type slogZap struct {
	z      *zap.Logger
	prefix string
}

func newSlogZap(z *zap.Logger) *slog.Logger { return slog.New(&slogZap{z: z}) }

func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	default:
		return zapcore.DebugLevel
	}
}

func (h *slogZap) Enabled(_ context.Context, l slog.Level) bool {
	return h.z.Core().Enabled(zapLevel(l))
}

func (h *slogZap) Handle(_ context.Context, r slog.Record) error {
	ce := h.z.Check(zapLevel(r.Level), r.Message)
	if ce == nil {
		return nil
	}
	fields := make([]zap.Field, 0, r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(h.prefix+a.Key, a.Value.Any()))
		return true
	})
	ce.Write(fields...)
	return nil
}

func (h *slogZap) WithAttrs(attrs []slog.Attr) slog.Handler {
	fields := make([]zap.Field, 0, len(attrs))
	for _, a := range attrs {
		fields = append(fields, zap.Any(h.prefix+a.Key, a.Value.Any()))
	}
	return &slogZap{z: h.z.With(fields...), prefix: h.prefix}
}

func (h *slogZap) WithGroup(name string) slog.Handler {
	return &slogZap{z: h.z, prefix: h.prefix + name + "."}
}
