package status

// TableInfo describes a table on this node (manager.TableManager.TableList),
// served as an element of GET /v1/tables's "tables".
type TableInfo struct {
	Name       string            `json:"name"`
	Spec       map[string]string `json:"spec,omitempty"`
	Partitions int               `json:"partitions"`
	// Keys counts the committed keys in the partitions assigned here.
	Keys int `json:"keys"`
	// KeysError says why Keys is not the table's count over the cluster
	// (another node does not declare the table: a rolling change of the
	// app's tables); Keys is 0 then.
	KeysError string `json:"keys_error,omitempty"`
	// Global is set for global tables: every node holds all of it.
	Global    bool     `json:"global,omitempty"`
	Changelog []string `json:"changelog"`
}
