package main

import (
	"io"
	"log/slog"
)

// newLogger returns the slog logger configured by --log-level and --log-format
// (already validated).
func newLogger(cfg serveConfig, w io.Writer) *slog.Logger {
	level, _ := parseLogLevel(cfg.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
