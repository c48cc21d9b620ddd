// Package status defines the status documents of an edgetables node: what
// its table manager reports about itself (Status, with one PartitionStatus
// per assigned partition and their RecoveryProgress), about its group
// (ClusterStatus, MemberState) and about its tables (TableInfo).
//
// These types are a contract. Their JSON is what the HTTP API serves
// (GET /v1/status, /v1/cluster/partitions, /v1/tables) and what
// `edgetables status`, the bench and the console read, possibly from a
// node of another version. The golden files in testdata (version 1) hold
// their encoding byte for byte. A compatible change adds an optional field
// (omitempty, or one whose zero value means what its absence meant before)
// and updates the golden files; renaming or removing a field, changing its
// type or its meaning, or changing the value of a constant is a new
// version: a new document, served beside the old one until readers moved.
//
// The package holds data only; package manager fills it.
package status
