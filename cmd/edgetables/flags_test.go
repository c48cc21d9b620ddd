package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

//go:generate go test -run ^TestFlagsReference$ . -update-flags

var updateFlags = flag.Bool("update-flags", false, "rewrite docs/flags.md from the command line's model")

const flagsDoc = "../../docs/flags.md"

// TestFlagsReference fails when docs/flags.md is not what the command
// line's model makes; `go generate ./cmd/edgetables` rewrites it.
func TestFlagsReference(t *testing.T) {
	var c cli
	parser, err := newParser(&c, io.Discard, io.Discard, func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	want := flagsMarkdown(parser.Model)
	if *updateFlags {
		if err := os.WriteFile(flagsDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(flagsDoc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is stale: run `go generate ./cmd/edgetables` and commit it", flagsDoc)
	}
}

// flagsMarkdown renders every visible flag of every command.
func flagsMarkdown(app *kong.Application) string {
	var b strings.Builder
	b.WriteString(`# Flags of edgetables

Generated from the command line's definitions by ` + "`go generate ./cmd/edgetables`" + `;
` + "`TestFlagsReference`" + ` fails when this file is stale. Every flag can also be
set with the environment variable shown; the flags of ` + "`run`" + ` and ` + "`check`" + `
also in a ` + "`--config`" + ` file, under the flag's name (see the README,
Configuration files). A flag wins over its variable, which wins over the file,
which wins over the default.

`)
	writeFlags(&b, "## Global flags\n\nBefore or after the command.", app.Flags)
	seen := map[string]string{} // flag names of a command → the command
	for _, cmd := range app.Children {
		if cmd.Hidden {
			continue
		}
		fmt.Fprintf(&b, "## edgetables %s\n\n%s\n\n", cmd.Name, cmd.Help)
		var names []string
		for _, f := range cmd.Flags {
			names = append(names, f.Name)
		}
		key := strings.Join(names, ",")
		if prev, ok := seen[key]; ok && key != "" {
			fmt.Fprintf(&b, "The same flags as `edgetables %s`.\n\n", prev)
			continue
		}
		seen[key] = cmd.Name
		if len(cmd.Flags) == 0 {
			b.WriteString("No flags of its own.\n\n")
			continue
		}
		var groups []string
		byGroup := map[string][]*kong.Flag{}
		for _, f := range cmd.Flags {
			g := ""
			if f.Group != nil {
				g = f.Group.Title
			}
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
			byGroup[g] = append(byGroup[g], f)
		}
		slices.SortStableFunc(groups, func(a, b string) int { // ungrouped first, as in --help
			return boolCmp(a != "", b != "")
		})
		for _, g := range groups {
			title := ""
			if g != "" {
				title = "### " + g
			}
			writeFlags(&b, title, byGroup[g])
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// writeFlags writes a table of flags under a title (none when empty).
func writeFlags(b *strings.Builder, title string, flags []*kong.Flag) {
	if title != "" {
		fmt.Fprintf(b, "%s\n\n", title)
	}
	b.WriteString("| flag | environment | default | meaning |\n|---|---|---|---|\n")
	for _, f := range flags {
		if f.Hidden {
			continue
		}
		name := "--" + f.Name
		if f.Short != 0 {
			name = fmt.Sprintf("-%c, %s", f.Short, name)
		}
		if !f.IsBool() {
			// The placeholder without the default (a column of its own).
			v, nf := *f.Value, *f
			v.Default, v.HasDefault, nf.Value = "", false, &v
			name += "=" + nf.FormatPlaceHolder()
		}
		env := ""
		if len(f.Tag.Envs) > 0 {
			env = "`" + strings.Join(f.Tag.Envs, "`, `") + "`"
		}
		def := ""
		if f.Default != "" {
			def = "`" + f.Default + "`"
		}
		help := f.Help
		if f.IsCumulative() && !strings.Contains(help, "Repeatable") {
			help += " Repeatable."
		}
		if f.Enum != "" && slices.ContainsFunc(f.EnumSlice(), func(e string) bool { return !strings.Contains(help, e) }) {
			help += " One of: " + strings.Join(f.EnumSlice(), ", ") + "."
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", cell(name), env, cell(def), cell(help))
	}
	b.WriteString("\n")
}

// cell escapes a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
