package manager

// The consumer group: how the members of a cluster agree on who processes
// which partition. The protocol's meaning lives here; a Coordinator
// (package jetstream: a JetStream KV bucket) stores its state.
