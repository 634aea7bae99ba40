package hearth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/wire"
)

// Abuse g: one session cannot take the node's sys.push slots — past its
// share it gets 203 — and its streams end with it, so the slots come back
// at once rather than when the streams would have finished.
func TestSysPushPerSession(t *testing.T) {
	n, err := New(Config{TCPAddr: "127.0.0.1:0", WSAddr: Off, AdminAddr: Off, DataDir: t.TempDir()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Logf("node stopped: %v", err)
		}
	})
	<-n.Ready()

	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	c, err := client.Dial(rctx, "tcp://"+n.Addr("tcp").String(), client.Options{})
	require.NoError(t, err)
	long := []byte(`{"count":1000,"interval_ms":1000}`) // would run ~17 minutes
	for i := range maxSysPushPerSession {
		_, err := c.RequestRaw(rctx, "sys.push", long)
		require.NoError(t, err, "stream %d", i+1)
	}
	_, err = c.RequestRaw(rctx, "sys.push", long)
	var we *wire.Error
	require.True(t, errors.As(err, &we), "want a wire error, got %v", err)
	require.Equal(t, wire.CodeOverloaded, we.Code)
	require.Equal(t, 1, n.sysStreams.sessions())

	require.NoError(t, c.Close())
	deadline := time.Now().Add(10 * time.Second)
	for n.sysStreams.sessions() != 0 || n.sysPushes.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("streams of a closed session still run: %d sessions, %d streams", n.sysStreams.sessions(), n.sysPushes.Load())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not waiting for time to pass
	}
}

// Config.NATSPublishers sets the bus's publishing connections (zero: 4),
// and a node answers over any number of them.
func TestNATSPublishers(t *testing.T) {
	for _, tc := range []struct{ set, want int }{{0, 4}, {1, 1}, {3, 3}} {
		n, err := New(Config{TCPAddr: "127.0.0.1:0", WSAddr: Off, AdminAddr: Off, DataDir: t.TempDir(), NATSPublishers: tc.set})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- n.Run(ctx) }()
		<-n.Ready()
		require.Equal(t, tc.want, n.bus.Publishers(), "NATSPublishers %d", tc.set)
		rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.Dial(rctx, "tcp://"+n.Addr("tcp").String(), client.Options{})
		require.NoError(t, err)
		got, err := c.RequestRaw(rctx, "sys.ping", []byte("x"))
		require.NoError(t, err, "NATSPublishers %d", tc.set)
		require.Equal(t, "x", string(got), "sys.ping echoes")
		require.NoError(t, c.Close())
		rcancel()
		cancel()
		require.NoError(t, <-errc)
	}
}
