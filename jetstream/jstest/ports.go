package jstest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// Ports are picked between these, below Linux's ephemeral range (32768
// and up), where the kernel does not hand ports to outgoing connections.
const (
	lowPort  = 20000
	highPort = 32000
)

// pickedPorts holds the ports FreePort handed out in this process.
var pickedPorts sync.Map

// FreePort returns a loopback port that was free a moment ago and that no
// other FreePort call of this process returned.
//
// A port asked of the kernel (127.0.0.1:0) comes from the ephemeral range,
// which the kernel also uses for outgoing connections: between the pick
// and the bind, one of a starting cluster's own route connections can take
// it ("address already in use"). Ports below that range are only ever
// taken by a listener that asks for them by number.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 1000 {
		port := lowPort + rand.IntN(highPort-lowPort)
		if _, taken := pickedPorts.LoadOrStore(port, true); taken {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = ln.Close()
		return port
	}
	t.Fatalf("jstest: no free loopback port between %d and %d", lowPort, highPort)
	return 0
}

// FreeAddr is FreePort as a host:port address on 127.0.0.1.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}
