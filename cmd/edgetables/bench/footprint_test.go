package bench

import (
	"context"
	"debug/elf"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// TestFootprintExecutable: the footprint scenario and the sweep's idle
// curve run --executable when given, else the release build when there is
// one, else the running executable.
func TestFootprintExecutable(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, executable, release string
		wantExe, wantWhat         string
	}{
		{"release build", "", "/tmp/b/edgetables-release", "/tmp/b/edgetables-release", "the release build (CGO_ENABLED=0"},
		{"executable over the release build", "/opt/edgetables", "/tmp/b/edgetables-release", "/opt/edgetables", "edgetables"},
		{"executable, no release build", "/opt/edgetables", "", "/opt/edgetables", "edgetables"},
		{"no module: this program", "", "", self, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := &env{cfg: Config{Executable: c.executable}}
			exe, what, err := e.footprintExecutable(c.release)
			if err != nil {
				t.Fatal(err)
			}
			if exe != c.wantExe || !strings.HasPrefix(what, c.wantWhat) {
				t.Errorf("footprintExecutable(%q) = %q, %q; want %q, %q…", c.release, exe, what, c.wantExe, c.wantWhat)
			}
		})
	}
}

// TestReleaseBinary: the binary the footprint scenario measures is built as
// deploy/release.sh builds it: static (no program interpreter, so no libc
// mapped) and stripped (no symbol table).
func TestReleaseBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx := context.Background()
	if findModule(ctx) == "" {
		t.Skip("no go command or edgetables module here")
	}
	e := &env{dir: t.TempDir(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	bin, err := e.releaseBinary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the release binary is dynamically linked (it has a program interpreter)")
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("the release binary is not stripped (it has .symtab)")
	}
}
