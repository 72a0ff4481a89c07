// Package freeport finds a TCP port nothing listens on, for a server that a
// test or `sluice dev cluster` is about to start on a loopback address.
//
// Asking the kernel for port 0 and closing the listener is not enough: that
// port comes from the ephemeral range, the same range the kernel draws the
// local ports of outgoing connections from. Nodes of a cluster dial each
// other while the next node starts, so one of their connections can take
// the port picked for that node a moment before it binds it ("address
// already in use": a CI run met it on each of its three attempts). A port below
// the ephemeral range is never handed to a connection; only another
// process picking the same one can take it, which the caller retries.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// lowestPort is the lowest port picked: above the well-known and most
// registered service ports.
const lowestPort = 10000

// defaultEphemeralLow is where Linux's ephemeral range starts by default
// (net.ipv4.ip_local_port_range), used when the setting cannot be read.
const defaultEphemeralLow = 32768

// maxTries bounds how many ports Addr tries before it gives up.
const maxTries = 200

// Addr returns host:port with a port below the ephemeral range that
// nothing listened on a moment ago on host.
func Addr(host string) (string, error) {
	high := ephemeralLow()
	if high <= lowestPort+100 {
		// The ephemeral range starts low: any port may be taken by a
		// connection, so let the kernel pick.
		return kernelPick(host)
	}
	var last error
	for range maxTries {
		port := lowestPort + rand.IntN(high-lowestPort)
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			last = err
			continue
		}
		ln.Close()
		return addr, nil
	}
	return "", fmt.Errorf("find a free port on %s below %d: %d tries failed, the last: %w", host, high, maxTries, last)
}

// ForTest is Addr that fails t when no port is found.
func ForTest(t testing.TB, host string) string {
	t.Helper()
	addr, err := Addr(host)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func kernelPick(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralLow
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultEphemeralLow
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 0 {
		return defaultEphemeralLow
	}
	return low
}
