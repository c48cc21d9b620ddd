package jetstream

// ForgetFullCheck lets the next send of d look at the dead-letter
// stream's size at once (tests; it looks at most once a minute).
func ForgetFullCheck(d *DeadLetters) { d.lastFullCheck.Store(0) }
