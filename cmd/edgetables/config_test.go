package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	specA = "name=a,source=s.*,key=subject:2,agg=count"
	specB = "name=b,source=s.*,key=subject:2,agg=sum,field=v"
	// tableA is a YAML line declaring table a (quoted: in a YAML flow list,
	// a spec's commas would separate items).
	tableA = "table: ['" + specA + "']\n"
)

// configYAML and configJSON say the same thing in the two formats: a table
// as a spec string and one as an object, keys with '-' and with '_'.
const configYAML = `
name: from-file
partitions: 4
data_dir: /srv/file
http-listen: 127.0.0.1:9999
memory-limit: 300MiB
table:
  - ` + specA + `
  - name: b
    source: s.*
    key: subject:2
    agg: sum
    field: v
`

const configJSON = `{
  "name": "from-file", "partitions": 4, "data_dir": "/srv/file", "http-listen": "127.0.0.1:9999",
  "memory-limit": "300MiB",
  "table": ["` + specA + `", {"name": "b", "source": "s.*", "key": "subject:2", "agg": "sum", "field": "v"}]
}`

// writeConfig writes text to a file named name in a temp dir.
func writeConfig(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// check runs `edgetables check` with args and env and returns the exit
// status, stdout and stderr.
func check(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), append([]string{"check"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestConfigPrecedence: a flag wins over its EDGETABLES_* variable, which
// wins over the file, which wins over the default; for both formats, and for
// the table list (replaced, not merged).
func TestConfigPrecedence(t *testing.T) {
	for _, format := range []struct{ name, text string }{{"site.yaml", configYAML}, {"site.json", configJSON}} {
		file := writeConfig(t, format.name, format.text)
		cases := []struct {
			name string
			env  map[string]string
			args []string
			want []string // substrings of the summary
		}{
			{"default", nil, []string{"--table=" + specA}, []string{"8 partitions", "data dir ./data", "HTTP 127.0.0.1:8080", "1 tables (a)"}},
			{"file", nil, []string{"--config=" + file}, []string{"node from-file", "4 partitions", "data dir /srv/file", "HTTP 127.0.0.1:9999", "2 tables (a, b)"}},
			{"env over file", map[string]string{"EDGETABLES_PARTITIONS": "16", "EDGETABLES_DATA_DIR": "/srv/env"}, []string{"--config=" + file},
				[]string{"node from-file", "16 partitions", "data dir /srv/env", "HTTP 127.0.0.1:9999"}},
			{"flag over env and file", map[string]string{"EDGETABLES_PARTITIONS": "16"}, []string{"--config=" + file, "--partitions=32", "--name=flag"},
				[]string{"node flag", "32 partitions", "data dir /srv/file"}},
			{"flag over file", nil, []string{"--config=" + file, "--http-listen=off"}, []string{"4 partitions", "HTTP off"}},
			{"env table replaces the file's", map[string]string{"EDGETABLES_TABLE": specB}, []string{"--config=" + file}, []string{"1 tables (b)"}},
			{"flag table replaces the file's", nil, []string{"--config=" + file, "--table=" + specB}, []string{"1 tables (b)"}},
			{"env config", map[string]string{"EDGETABLES_CONFIG": file}, nil, []string{"node from-file", "2 tables (a, b)"}},
			{"env tables separated by ;", map[string]string{"EDGETABLES_TABLE": specA + ";" + specB}, nil, []string{"2 tables (a, b)"}},
		}
		for _, c := range cases {
			t.Run(format.name+"/"+c.name, func(t *testing.T) {
				code, out, errOut := check(t, c.env, c.args...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				for _, w := range c.want {
					if !strings.Contains(out, w) {
						t.Errorf("summary lacks %q:\n%s", w, out)
					}
				}
			})
		}
	}
}

// TestConfigErrors: a file that run would refuse makes check exit 2 naming
// the key or flag.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, file, text string
		env              map[string]string
		mention          string
	}{
		{"unknown key", "c.yaml", tableA + "colour: red\n", nil, `unknown key "colour"`},
		{"unknown key json", "c.json", `{"table": "` + specA + `", "nats_listen_port": 1}`, nil, `unknown key "nats_listen_port"`},
		{"status flag in a run file", "c.yaml", tableA + "http: 127.0.0.1:8080\n", nil, `unknown key "http"`},
		{"bad table string", "c.yaml", "table: ['name=c,source=a.*,key=subject:2,agg=median']\n", nil, "--table"},
		{"bad table object", "c.yaml", "table:\n  - {name: c, source: a.*, key: subject:2, agg: count, colour: red}\n", nil, "--table"},
		{"table object with a comma", "c.yaml", "table:\n  - {name: c, source: 'a.*,b', key: subject:2, agg: count}\n", nil, "--table"},
		{"bad item named", "c.yaml", "table:\n  - " + specA + "\n  - {name: d, source: doors.>, key: json:door, agg: latest, field: state}\n", nil, `--table: item 2 ({"agg":"latest","field":"state","key":"json:door","name":"d","source":"doors.>"})`},
		{"item of the wrong type", "c.yaml", tableA + "routes: [1]\n", nil, "--routes: item 1"},
		{"table twice", "c.yaml", "table: ['" + specA + "', '" + specA + "']\n", nil, "used twice"},
		{"no table", "c.yaml", "partitions: 4\n", nil, "--table"},
		{"empty file", "c.yaml", "", nil, "--table"},
		{"partitions not an integer", "c.json", `{"table": "` + specA + `", "partitions": 9.5}`, nil, "--partitions"},
		{"partitions out of range", "c.yaml", tableA + "partitions: 5000\n", nil, "--partitions"},
		{"bad sync", "c.yaml", tableA + "sync: sometimes\n", nil, "--sync"},
		{"replicas alone", "c.yaml", tableA + "replicas: 3\n", nil, "--replicas 3: a single node"},
		{"replicas over routes", "c.yaml", tableA + "name: n\ncluster-listen: 127.0.0.1:6222\nroutes: [nats-route://127.0.0.1:6222]\nreplicas: 3\n", nil, "--replicas 3"},
		{"bad nats url", "c.yaml", tableA + "nats-url: [http://x:4222]\n", nil, "--nats-url"},
		{"key twice", "c.yaml", tableA + "data-dir: a\ndata_dir: b\n", nil, "given twice"},
		{"config in a config", "c.yaml", tableA + "config: other.yaml\n", nil, "cannot name another"},
		{"not a mapping", "c.yaml", "- " + specA + "\n", nil, "want a mapping"},
		{"bad yaml", "c.yaml", "table: [unclosed\n", nil, "YAML"},
		{"bad json", "c.json", `{"table": }`, nil, "JSON"},
		{"bad memory limit", "c.yaml", tableA + "memory-limit: lots\n", nil, "--memory-limit"},
		{"missing creds file", "c.yaml", tableA + "nats-url: [nats://x:4222]\nnats-creds: /nonexistent/creds\n", nil, "--nats-creds"},
		{"env still checked", "c.yaml", tableA, map[string]string{"EDGETABLES_PARTITIONS": "0"}, "--partitions"},
		{"bad env table", "c.yaml", "partitions: 4\n", map[string]string{"EDGETABLES_TABLE": specA + ";name=x"}, "--table"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := writeConfig(t, c.file, c.text)
			code, out, errOut := check(t, c.env, "--config="+file)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stdout %s; stderr %s", code, exitUsage, out, errOut)
			}
			if !strings.Contains(errOut, c.mention) {
				t.Errorf("stderr does not mention %q:\n%s", c.mention, errOut)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		code, _, errOut := check(t, nil, "--config=/nonexistent/site.yaml")
		if code != exitUsage || !strings.Contains(errOut, "--config") {
			t.Errorf("exit %d, stderr %s", code, errOut)
		}
	})
}

// TestCheckFlags: check takes run's flags without a file, and refuses what
// run refuses (the same Validate).
func TestCheckFlags(t *testing.T) {
	if code, out, errOut := check(t, nil, "--table="+specA, "--name=n1", "--partitions=2"); code != 0 || !strings.Contains(out, "configuration OK: node n1") {
		t.Errorf("exit %d, stdout %s, stderr %s", code, out, errOut)
	}
	if code, out, errOut := check(t, nil, "--table="+specA, "--nats-url=tls://hub:secret-in-url@127.0.0.1:4222"); code != 0 ||
		strings.Contains(out, "secret-in-url") || !strings.Contains(out, "tls://hub:xxxxx@127.0.0.1:4222") {
		t.Errorf("a password in --nats-url: exit %d, stdout %s, stderr %s; want it hidden", code, out, errOut)
	}
	if code, _, errOut := check(t, nil, "--table="+specA, "--replicas=5"); code != exitUsage || !strings.Contains(errOut, "--replicas") {
		t.Errorf("exit %d, stderr %s", code, errOut)
	}
	// What run refuses only once it builds the server's options: a port
	// open beyond loopback without authentication.
	if code, _, errOut := check(t, nil, "--table="+specA, "--nats-listen=0.0.0.0:4222"); code != exitUsage || !strings.Contains(errOut, "without authentication") {
		t.Errorf("a client port beyond loopback without auth: exit %d, stderr %s", code, errOut)
	}
	if code, out, errOut := check(t, nil, "--table="+specA, "--nats-listen=0.0.0.0:4222", "--insecure"); code != 0 {
		t.Errorf("with --insecure: exit %d, stdout %s, stderr %s", code, out, errOut)
	}
}

func TestByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1048576", 1 << 20, true}, {"512MiB", 512 << 20, true}, {"1GiB", 1 << 30, true},
		{"1.5GB", 1_500_000_000, true}, {"64 KiB", 64 << 10, true}, {"100B", 100, true},
		{"lots", 0, false}, {"-1MiB", 0, false}, {"MiB", 0, false}, {"1e30GiB", 0, false},
		{"1TiB", 1 << 40, true}, {"2TB", 2e12, true}, {"7EiB", 7 << 60, true}, {"1.1KB", 1100, true},
		{"9223372036854775807", 0, false}, {"8EiB", 0, false}, {"1.5", 0, false},
	}
	for _, c := range cases {
		var b byteSize
		err := b.UnmarshalText([]byte(c.in))
		if (err == nil) != c.ok || (c.ok && int64(b) != c.want) {
			t.Errorf("%q: got %d, %v; want %d, ok %v", c.in, b, err, c.want, c.ok)
		}
	}
}

// TestDeployExample: deploy/site.example.yaml is a valid configuration.
func TestDeployExample(t *testing.T) {
	code, out, errOut := check(t, nil, "--config=../../deploy/site.example.yaml")
	if code != 0 || !strings.Contains(out, "5 tables (readings, temps, hourly, doors, sites)") {
		t.Errorf("exit %d, stdout %s, stderr %s", code, out, errOut)
	}
}

// TestDeployHubExample: deploy/hub.example.yaml is a valid configuration
// of a hub node.
func TestDeployHubExample(t *testing.T) {
	code, out, errOut := check(t, nil, "--config=../../deploy/hub.example.yaml")
	if code != 0 || !strings.Contains(out, "node hub-node1") || !strings.Contains(out, "1 tables (readings_by_site)") ||
		!strings.Contains(out, "NATS nats://127.0.0.1:4222") {
		t.Errorf("exit %d, stdout %s, stderr %s", code, out, errOut)
	}
}
