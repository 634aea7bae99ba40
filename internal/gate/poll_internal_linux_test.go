package gate

import (
	"log/slog"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// rawPair connects a TCP client, peer, to a server side, whose raw
// connection it returns; both close with the test.
func rawPair(t *testing.T) (peer net.Conn, raw syscall.RawConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	peer, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { peer.Close() })
	c, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	raw, err = c.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	return peer, raw
}

// A parked session's read allocates nothing once its read buffer is
// there: an allocation made each reader help mark in every collection.
func TestReadSomeAllocatesNothing(t *testing.T) {
	peer, raw := rawPair(t)
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

// A read that fills less than the buffer took all the socket had, and says
// so: the reader then parks without a second read that would find nothing.
// A read that fills the buffer may have left bytes behind, and does not.
func TestReadSomeMarksDrained(t *testing.T) {
	peer, raw := rawPair(t)
	s := &Session{raw: raw}

	// unread waits until the socket holds n unread bytes (the peer's
	// write has arrived whole), or fails saying how many it has.
	unread := func(n int) {
		t.Helper()
		var have int
		for range 1000 {
			var err error
			require.NoError(t, raw.Control(func(fd uintptr) {
				have, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			}))
			require.NoError(t, err)
			if have == n {
				return
			}
			runtime.Gosched()
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("socket holds %d unread bytes, want %d", have, n)
	}

	_, err := peer.Write(make([]byte, readBufSize+100))
	require.NoError(t, err)
	unread(readBufSize + 100)
	require.NoError(t, s.readSome(false))
	require.Equal(t, readBufSize, s.rbN)
	require.False(t, s.drained, "a read that filled the buffer may have left bytes")

	s.rbN = 0
	require.NoError(t, s.readSome(false))
	require.Equal(t, 100, s.rbN)
	require.True(t, s.drained, "a short read took all there was")
	require.ErrorIs(t, s.readSome(false), errWouldBlock, "nothing is left to read")
}

// A poller whose wait fails says so in the log and takes no session from
// then on: the gate's sessions read on goroutines of their own instead.
func TestPollerThatFailsLogsAndRefusesSessions(t *testing.T) {
	var logs LockedBuffer
	p, err := newReadPoller(slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = unix.Close(p.stop) })
	_, raw := rawPair(t)
	// Closing the set's file under the loop wakes its wait with an error,
	// as a failure of the runtime's poller would.
	require.NoError(t, p.ep.Close())
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the poller's loop did not end after its wait failed")
	}
	require.Contains(t, logs.String(), "the read poller stopped")
	require.Contains(t, logs.String(), "level=ERROR")
	s := &Session{}
	var armed bool
	require.NoError(t, raw.Control(func(fd uintptr) { armed = p.arm(s, int(fd)) }))
	require.False(t, armed, "a poller that has stopped took a session")
}
