package httpapi

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
)

func TestWarnOpen(t *testing.T) {
	lo := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	wild := &net.TCPAddr{IP: net.IPv4zero, Port: 8080}
	for _, tc := range []struct {
		name                     string
		addr                     net.Addr
		authenticated, encrypted bool
		want                     string // "" for no warning
	}{
		{"loopback, open", lo, false, false, ""},
		{"beyond loopback, open", wild, false, false, "without authentication"},
		{"beyond loopback, tokens in clear", wild, true, false, "without TLS"},
		{"beyond loopback, tokens over TLS", wild, true, true, ""},
		{"beyond loopback, TLS without auth", wild, false, true, "without authentication"},
	} {
		var b bytes.Buffer
		WarnOpen(slog.New(slog.NewTextHandler(&b, nil)), tc.addr, tc.authenticated, tc.encrypted)
		if got := b.String(); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: logged %q, want %q", tc.name, got, tc.want)
		}
	}
}
