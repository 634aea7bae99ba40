package gate

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// A parked session's read allocates nothing once its read buffer is
// there: an allocation made each reader help mark in every collection.
func TestReadSomeAllocatesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer peer.Close()
	c, err := ln.Accept()
	require.NoError(t, err)
	defer c.Close()
	raw, err := c.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	s := &Session{raw: raw}
	msg := []byte("frame bytes")
	var got int
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		for s.rbN < len(msg) {
			if err := s.readSome(true); err != nil {
				t.Fatal(err)
			}
		}
		got = s.rbN
		s.rbN = 0
	})
	require.Equal(t, len(msg), got)
	require.Zero(t, allocs, "allocations per read")
}
