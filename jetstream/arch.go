package jetstream

import "strconv"

// ClusterSupported says whether this build can run an embedded JetStream
// cluster: not a 32-bit one (see ErrClusterUnsupported).
const ClusterSupported = strconv.IntSize == 64
