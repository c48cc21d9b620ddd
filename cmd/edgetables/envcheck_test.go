package main

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// TestWarnUnknownEnv: an EDGETABLES_ variable no flag reads is named in a
// warning, with the nearest flag's variable when one is close; the ones
// flags or the binary read are not.
func TestWarnUnknownEnv(t *testing.T) {
	var c cli
	parser, err := newParser(&c, io.Discard, io.Discard, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want string // "" for no warning
	}{
		{"EDGETABLES_PARTITIONS=8", ""},
		{"EDGETABLES_DATA_DIR=/x", ""},
		{tokenEnv + "=t", ""},
		{"PATH=/bin", ""},
		{"EDGETABLES_PARTITONS=8", "name=EDGETABLES_PARTITONS did_you_mean=EDGETABLES_PARTITIONS"},
		{"EDGETABLES_DATADIR=/x", "name=EDGETABLES_DATADIR did_you_mean=EDGETABLES_DATA_DIR"},
		{"EDGETABLES_WHATEVER=1", "name=EDGETABLES_WHATEVER\n"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			var out bytes.Buffer
			warnUnknownEnv(parser.Model, []string{tc.env}, slog.New(slog.NewTextHandler(&out, nil)))
			switch {
			case tc.want == "" && out.Len() > 0:
				t.Errorf("warned: %s", out.String())
			case tc.want != "" && !strings.Contains(out.String(), tc.want):
				t.Errorf("log %q; want it to contain %q", out.String(), tc.want)
			}
		})
	}
}
