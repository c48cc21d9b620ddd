package httpapi

// Internals the external tests (package httpapi_test, which run a node of
// package edge) check.
var (
	Open         = open
	DecodeAnswer = decodeAnswer
	CodeErrors   = codeErrors
	// UpdateGolden is -update: rewrite the golden files.
	UpdateGolden = updateGolden
)

// Query and Answer are a routed query and its answer on the wire.
type (
	Query  = query
	Answer = answer
)
