package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
	"go.yaml.in/yaml/v3"
)

// A configuration file (--config FILE) holds flags of the command it is given
// to, YAML or JSON, one key per flag: the flag's name without the dashes,
// with '-' or '_' between words (data-dir or data_dir). A repeatable flag
// takes a list. Every flag the command has is allowed, including the global
// ones (log-level, log-format), and no other key: an unknown key is an error
// that names it. Precedence: command-line flag, then EDGETABLES_* variable,
// then the file, then the flag's default.
//
// The values are looked up by kong's own JSON loader (kong.JSON) for both
// formats: a YAML file is decoded and re-encoded as JSON first, so that both
// formats mean the same thing.

// configFlagName is the name of the flag that names the file.
const configFlagName = "config"

// BeforeResolve loads the configuration file, if --config (or its
// environment variable) names one, and adds it to kong's resolvers. Kong
// calls it for the command after the flags are read and before flags not
// given on the command line are resolved.
func (r *runCmd) BeforeResolve(kctx *kong.Context) error {
	path := r.Config // from EDGETABLES_CONFIG or empty
	for _, tr := range kctx.Path {
		if tr.Flag != nil && tr.Flag.Name == configFlagName {
			path, _ = kctx.FlagValue(tr.Flag).(string)
		}
	}
	if path == "" {
		return nil
	}
	res, err := loadConfigFile(path, kctx.Command(), kctx.Flags())
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	kctx.AddResolver(res)
	return nil
}

// errUnknownKey is wrapped by the error for a key that is not a flag.
var errUnknownKey = errors.New("unknown key")

// loadConfigFile reads a YAML or JSON configuration file and returns the
// resolver of its values for flags. Every key must name one of flags.
func loadConfigFile(path, command string, flags []*kong.Flag) (kong.Resolver, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	values, err := decodeConfig(b)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, f := range flags {
		if f.Name != "help" && f.Name != configFlagName {
			known[f.Name] = true
		}
	}
	// Keys in kong.JSON's spelling (underscores); checked against the flags.
	norm := map[string]any{}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.ReplaceAll(k, "_", "-")
		switch {
		case name == configFlagName:
			return nil, fmt.Errorf("key %q: a configuration file cannot name another one", k)
		case !known[name]:
			return nil, fmt.Errorf("%w %q: not a flag of this command (see edgetables %s --help)", errUnknownKey, k, command)
		}
		jk := strings.ReplaceAll(name, "-", "_")
		if _, dup := norm[jk]; dup {
			return nil, fmt.Errorf("key %q: given twice (as %s and %s)", k, name, jk)
		}
		norm[jk] = values[k]
	}
	js, err := json.Marshal(norm)
	if err != nil {
		return nil, err
	}
	inner, err := kong.JSON(bytes.NewReader(js))
	if err != nil {
		return nil, err
	}
	return envFirst{inner}, nil
}

// decodeConfig decodes a JSON object or a YAML mapping (JSON when the first
// character that is not white space is '{').
func decodeConfig(b []byte) (map[string]any, error) {
	values := map[string]any{}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(t))
		if err := dec.Decode(&values); err != nil {
			return nil, fmt.Errorf("JSON: %w", err)
		}
		if dec.More() {
			return nil, errors.New("JSON: more than one object")
		}
		return values, nil
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("YAML: %w", err)
	}
	switch d := doc.(type) {
	case nil: // an empty file
		return values, nil
	case map[string]any:
		// Values must re-encode as JSON: mappings with keys that are not
		// strings (e.g. 1: x) cannot.
		if _, err := json.Marshal(d); err != nil {
			return nil, fmt.Errorf("YAML: %w", err)
		}
		return d, nil
	default:
		return nil, fmt.Errorf("YAML: want a mapping of flag names to values, not %T", doc)
	}
}

// envFirst is a resolver that leaves a flag alone when one of its
// environment variables is set: kong applies environment variables before
// resolvers, and without this a file would override them.
type envFirst struct{ kong.Resolver }

// Resolve returns the file's value of flag, or nil when the environment sets it.
func (e envFirst) Resolve(kctx *kong.Context, parent *kong.Path, flag *kong.Flag) (any, error) {
	if slices.ContainsFunc(flag.Tag.Envs, func(env string) bool { _, ok := os.LookupEnv(env); return ok }) {
		return nil, nil
	}
	v, err := e.Resolver.Resolve(kctx, parent, flag)
	if err != nil {
		return nil, err
	}
	switch val := v.(type) {
	case float64:
		// As written on the command line: 9.5 is no integer, where kong
		// would round it for an integer flag.
		v = strconv.FormatFloat(val, 'f', -1, 64)
	case []any:
		if err := checkItems(flag, val); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// checkItems decodes each item of a list for a repeatable flag as kong will
// (JSON into the flag's element type), to name the item that is wrong
// rather than print the whole list.
func checkItems(flag *kong.Flag, items []any) error {
	if flag.Target.Kind() != reflect.Slice {
		return nil
	}
	for i, item := range items {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // subjects hold '>'
		if err := enc.Encode(item); err != nil {
			return fmt.Errorf("item %d: %w", i+1, err)
		}
		b := bytes.TrimSpace(buf.Bytes())
		if err := json.Unmarshal(b, reflect.New(flag.Target.Type().Elem()).Interface()); err != nil {
			return fmt.Errorf("item %d (%s): %w", i+1, b, err)
		}
	}
	return nil
}
