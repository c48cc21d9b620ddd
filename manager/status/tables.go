package status

// TableInfo describes a table on this node (manager.TableManager.TableList),
// served as an element of GET /v1/tables's "tables".
type TableInfo struct {
	Name       string            `json:"name"`
	Spec       map[string]string `json:"spec,omitempty"`
	Partitions int               `json:"partitions"`
	// Keys counts the committed keys in the partitions assigned here.
	Keys int `json:"keys"`
	// Global is set for global tables: every node holds all of it.
	Global    bool     `json:"global,omitempty"`
	Changelog []string `json:"changelog"`
}
