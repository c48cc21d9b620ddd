package main

import "testing"

// TestGCPercent: run sets the flag's collection target if given, leaves
// GOGC's in force if that is set, and otherwise sets the default.
func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flag   int
		gogc   string
		want   int
		wantOK bool
	}{
		{"default", 0, "", defaultGCPercent, true},
		{"flag", 80, "", 80, true},
		{"GOGC set", 0, "200", 0, false},
		{"flag over GOGC", 30, "200", 30, true},
		{"GOGC off", 0, "off", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			r := &runCmd{GCPercent: tc.flag}
			if got, ok := r.gcPercent(); got != tc.want || ok != tc.wantOK {
				t.Errorf("gcPercent() = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
