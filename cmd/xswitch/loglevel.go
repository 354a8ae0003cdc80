package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// levelNames are the log levels a configuration and `ctl log-level` take
// (zap's dpanic, panic and fatal are not levels to run at).
var levelNames = []string{"debug", "info", "warn", "error"}

// parseLevel parses one of levelNames.
func parseLevel(s string) (zapcore.Level, error) {
	for _, n := range levelNames {
		if s == n {
			return zapcore.ParseLevel(s)
		}
	}
	return 0, fmt.Errorf("%q is not a log level; give one of %s", s, strings.Join(levelNames, ", "))
}

// logLevelReply is the data of a log-level request.
type logLevelReply struct {
	Level    string `json:"level"`
	Previous string `json:"previous,omitempty"` // when it was set
}

// logLevel answers "log-level" (the current level) and "log-level LEVEL"
// (set it). It needs no switch: it works while the switch starts.
func (s *controlServer) logLevel(args []string) response {
	if s.level == nil {
		return response{Error: "this xswitch cannot change its log level"}
	}
	cur := s.level.Level()
	reply := logLevelReply{Level: cur.String()}
	switch len(args) {
	case 0:
	case 1:
		lvl, err := parseLevel(args[0])
		if err != nil {
			return response{Error: err.Error()}
		}
		reply = logLevelReply{Level: lvl.String(), Previous: cur.String()}
		// Logged at info under whichever of the two levels shows it.
		fields := []zap.Field{zap.Stringer("level", lvl), zap.Stringer("previous", cur)}
		if lvl > cur {
			s.log.Info("log level set by xswitch ctl", fields...)
			s.level.SetLevel(lvl)
		} else {
			s.level.SetLevel(lvl)
			s.log.Info("log level set by xswitch ctl", fields...)
		}
	default:
		return response{Error: "log-level takes one level: " + strings.Join(levelNames, ", ")}
	}
	b, err := json.Marshal(reply)
	if err != nil {
		return response{Error: "encode: " + err.Error()}
	}
	return response{Data: b}
}

// formatLogLevel prints a log-level reply for people.
func formatLogLevel(w io.Writer, data json.RawMessage) error {
	var r logLevelReply
	if err := json.Unmarshal(data, &r); err != nil {
		return err
	}
	if r.Previous != "" {
		fmt.Fprintf(w, "log level %s (was %s)\n", r.Level, r.Previous)
	} else {
		fmt.Fprintf(w, "log level %s\n", r.Level)
	}
	return nil
}
