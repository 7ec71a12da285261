package e2e

import (
	"net"
	"testing"
)

// FreeAddr is a loopback address with a port nobody listens on at the time of the call: for
// a process to listen on, or to be restarted on, or for a client to find nothing at.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
