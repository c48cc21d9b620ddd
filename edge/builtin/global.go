package builtin

import (
	"github.com/edgetables/edgetables/manager"

	"github.com/edgetables/edgetables/manager/codec"
)

// GlobalJSONTable returns a global table with text keys and JSON values
// (the CLI's --global-table): every node holds all of it, and it is written
// over the HTTP API (PUT and DELETE on /v1/tables/{name}/keys/{key}) or in
// Go with Set, Delete and Update.
func GlobalJSONTable(name string) (*manager.GlobalTable[string, string], error) {
	if err := manager.ValidateTableName(name); err != nil {
		return nil, err
	}
	return manager.NewGlobalTable(manager.TableConfig[string, string]{
		Name: name, Keys: codec.String{}, Values: codec.RawJSON{},
		Spec: map[string]string{"kind": "global", "values": "json"},
	}), nil
}
