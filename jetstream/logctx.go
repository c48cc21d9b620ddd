package jetstream

import (
	"context"
	"log/slog"
)

// loggerKey is the context key of WithLogger.
type loggerKey struct{}

// WithLogger returns ctx carrying log: what this package logs while it
// works for a call given that context (start-up retries, the dead letters
// and the queries it sets up) goes there rather than to slog.Default().
func WithLogger(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// loggerFrom returns the logger of ctx (WithLogger), or slog.Default().
func loggerFrom(ctx context.Context) *slog.Logger {
	if log, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && log != nil {
		return log
	}
	return slog.Default()
}
