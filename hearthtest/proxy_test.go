package hearthtest_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/hearthtest"
)

// echoServer echoes each line it is sent, on 127.0.0.1.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line through c and reads it back within d.
func roundTrip(c net.Conn, line string, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return errors.New("echo answered " + got)
	}
	return nil
}

// Pause holds what a client sends until Pause(false); Cut drops every
// connection and refuses new ones until Restore.
func TestProxy(t *testing.T) {
	p := hearthtest.NewProxy(t, echoServer(t))
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	require.NoError(t, roundTrip(c, "one", 5*time.Second))

	p.Pause(true)
	p.Pause(true) // idempotent
	require.ErrorIs(t, roundTrip(c, "two", 200*time.Millisecond), os.ErrDeadlineExceeded, "answered while paused")
	p.Pause(false)
	got, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "two\n", got, "what was sent while paused arrives after")
	require.NoError(t, roundTrip(c, "three", 5*time.Second))

	p.Cut()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "a cut connection is closed")
	refused, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err, "the listener stays up")
	_ = refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = refused.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "a connection while cut is closed at once")

	p.Restore()
	c, err = net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	require.NoError(t, roundTrip(c, "four", 5*time.Second))
}
