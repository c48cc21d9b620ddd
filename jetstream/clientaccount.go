package jetstream

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/edgetables/edgetables/manager/subject"
)

// ClientsAccount is the account of the embedded server's device and reader
// users. It holds no stream: it reaches the app's account only through
// service imports of the app's source subjects and of its query subjects.
//
// A publish's reply subject is not checked against the publisher's
// permissions, and the answer to it (JetStream's publish acknowledgement,
// a node's query answer) is published by the server. In the app's own
// account, a device could so have the acknowledgement of an allowed event
// stored on any subject a stream captures: a changelog record, a
// global-table value, the app's metadata or the group's leader key. Through
// an import, the answer goes back to the requester's account instead,
// where no stream captures anything.
const ClientsAccount = "EDGETABLES_CLIENTS"

// clientsAccount adds ClientsAccount to opts and returns it, for the users
// of roles device and reader (nil when there are none).
func clientsAccount(users []User, opts *server.Options) (*server.Account, error) {
	if !slices.ContainsFunc(users, func(u User) bool { return u.Role == RoleDevice || u.Role == RoleReader }) {
		return nil, nil
	}
	for _, a := range opts.Accounts {
		if a.Name == ClientsAccount {
			return nil, fmt.Errorf("edgetables/jetstream: Security.ConfigFile: account %s is edgetables' own (its device and reader users)", ClientsAccount)
		}
	}
	acc := server.NewAccount(ClientsAccount)
	opts.Accounts = append(opts.Accounts, acc)
	return acc, nil
}

// clientImports returns the subjects ClientsAccount imports from the app's
// account: the source subjects (devices' events) and the app's query
// subjects (readers' routed reads), as disjointSubjects.
func clientImports(app string, sources []string) []string {
	return disjointSubjects(append(slices.Clone(sources), app+".query.>"))
}

// disjointSubjects returns subjects with every two that overlap replaced by
// one that covers both (sensors.*.temp and sensors.> by sensors.>; a.*.x
// and a.y.* by a.*.*), until no two overlap. A message matching two
// service imports is delivered once per import, so imports must not
// overlap; the wider cover lets no device publish more than before, since
// its permissions allow the source subjects only.
func disjointSubjects(subjects []string) []string {
	out := slices.Clone(subjects)
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(out) && !merged; i++ {
			for j := i + 1; j < len(out); j++ {
				if subject.Collide(out[i], out[j]) {
					out[i] = coverSubject(out[i], out[j])
					out = slices.Delete(out, j, j+1)
					merged = true
					break
				}
			}
		}
	}
	return out
}

// coverSubject returns a subject matching every subject a or b match (two
// subjects that overlap): their common tokens, '*' where they differ, and
// '>' from where either has it.
func coverSubject(a, b string) string {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	var out []string
	for i := 0; i < max(len(at), len(bt)); i++ {
		if i >= len(at) || i >= len(bt) || at[i] == ">" || bt[i] == ">" {
			out = append(out, ">")
			break
		}
		if at[i] == bt[i] {
			out = append(out, at[i])
		} else {
			out = append(out, "*")
		}
	}
	return strings.Join(out, ".")
}

// linkClientsAccount exports subjects as services from the app's account
// (account: "" is the global account) and imports them into
// ClientsAccount, on a server created but not started yet, so that no
// client publishes before the imports exist.
func linkClientsAccount(ns *server.Server, account string, subjects []string) error {
	clients, err := ns.LookupAccount(ClientsAccount)
	if err != nil {
		return fmt.Errorf("%w: account %s: %w", ErrServerStart, ClientsAccount, err)
	}
	app := ns.GlobalAccount()
	if account != "" {
		if app, err = ns.LookupAccount(account); err != nil {
			return fmt.Errorf("%w: account %s: %w", ErrServerStart, account, err)
		}
	}
	for _, s := range subjects {
		if err := app.AddServiceExport(s, nil); err != nil {
			return fmt.Errorf("%w: export %s from the app's account: %w", ErrServerStart, s, err)
		}
		if err := clients.AddServiceImport(app, s, s); err != nil {
			return fmt.Errorf("%w: import %s into %s: %w", ErrServerStart, s, ClientsAccount, err)
		}
	}
	return nil
}
