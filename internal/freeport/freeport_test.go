package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddrBelowEphemeralRange: the port is one a server can bind, and
// below the range outgoing connections take their local ports from.
func TestAddrBelowEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		addr := ForTest(t, "127.0.0.1")
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		if low > lowestPort+100 && (p < lowestPort || p >= low) {
			t.Fatalf("port %d outside [%d, %d)", p, lowestPort, low)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on the address Addr gave: %v", err)
		}
		ln.Close()
	}
}
