package edge

// Config returns the node's configuration with the defaults NewNode filled
// in (edgetables check prints it).
func (n *Node) Config() Config { return n.cfg }
