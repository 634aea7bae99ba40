package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitDone waits for ch, failing with why after d.
func waitDone(t *testing.T, ch <-chan struct{}, d time.Duration, why string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("gave up after %s: %s", d, why)
	}
}

func TestBufferedConnWritesDoNotWaitForTheReader(t *testing.T) {
	srv, cli := net.Pipe()
	c := newBufferedConn(cli, 64<<10)
	var sent bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 { // 100 × 500 bytes, under the limit, nobody reading
			p := bytes.Repeat([]byte{byte(i)}, 500)
			if _, err := c.Write(p); err != nil {
				t.Errorf("write %d: %v", i, err)
				return
			}
			sent.Write(p)
		}
	}()
	waitDone(t, done, 10*time.Second, "writes under the limit waited for a reader that never read (a bare net.Pipe would)")

	got := make([]byte, sent.Len())
	_, err := io.ReadFull(srv, got)
	require.NoError(t, err)
	require.Equal(t, sent.Bytes(), got, "bytes arrive whole and in order")
	require.NoError(t, c.Close())
}

func TestBufferedConnWaitsPastItsLimit(t *testing.T) {
	srv, cli := net.Pipe()
	c := newBufferedConn(cli, 1024)
	t.Cleanup(func() { _ = c.Close() })

	// The pump takes the first KiB and blocks on the pipe; the next KiB
	// fills the buffer; the byte after it must wait.
	_, err := c.Write(make([]byte, 1024))
	require.NoError(t, err)
	_, err = c.Write(make([]byte, 1024))
	require.NoError(t, err)
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = c.Write([]byte{1})
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "a full buffer makes the writer wait (until its deadline)")

	// Reading frees room: the same write now goes through.
	require.NoError(t, c.SetWriteDeadline(time.Time{}))
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(srv, make([]byte, 2049))
		read <- err
	}()
	_, err = c.Write([]byte{1})
	require.NoError(t, err)
	select {
	case err := <-read:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("gave up after 10s: the reader did not get the 2,049 bytes written")
	}
}

func TestBufferedConnCloseDeliversWhatWasWritten(t *testing.T) {
	srv, cli := net.Pipe()
	c := newBufferedConn(cli, 1<<20)
	want := bytes.Repeat([]byte("hearth"), 10000)
	_, err := c.Write(want)
	require.NoError(t, err)

	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(srv) // until the conn is closed
		got <- b
	}()
	require.NoError(t, c.Close())
	select {
	case b := <-got:
		require.Equal(t, want, b, "Close writes what was written before it, then closes")
	case <-time.After(10 * time.Second):
		t.Fatal("gave up after 10s: the reader never saw the connection close")
	}
	_, err = c.Write([]byte("x"))
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestBufferedConnCloseDoesNotWaitForeverForAStuckReader(t *testing.T) {
	_, cli := net.Pipe() // nobody ever reads
	c := newBufferedConn(cli, 1<<20)
	_, err := c.Write(make([]byte, 4096))
	require.NoError(t, err)
	closed := make(chan struct{})
	go func() {
		_ = c.Close()
		close(closed)
	}()
	waitDone(t, closed, 10*time.Second, "Close waited for a reader that never reads (closeFlush should bound it)")
}

func TestBufferedConnReportsAFailedPeer(t *testing.T) {
	srv, cli := net.Pipe()
	c := newBufferedConn(cli, 1<<20)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, srv.Close())
	var err error
	eventually(t, 10*time.Second, func() bool {
		_, err = c.Write([]byte("after the peer closed"))
		return err != nil
	}, "writes kept succeeding after the peer closed")
	require.ErrorIs(t, err, io.ErrClosedPipe)
}

// Concurrent writers: every write arrives whole (never interleaved with
// another) and each writer's in its order.
func TestBufferedConnConcurrentWritesStayWhole(t *testing.T) {
	const writers, each = 8, 2000
	srv, cli := net.Pipe()
	c := newBufferedConn(cli, 4096)

	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, 8+w*7)
			for i := range each {
				binary.BigEndian.PutUint16(rec[0:], uint16(len(rec)))
				binary.BigEndian.PutUint16(rec[2:], uint16(w))
				binary.BigEndian.PutUint32(rec[4:], uint32(i))
				for k := 8; k < len(rec); k++ {
					rec[k] = byte(w + i)
				}
				if _, err := c.Write(rec); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		next := make([]uint32, writers)
		var hdr [8]byte
		for n := 0; n < writers*each; n++ {
			if _, err := io.ReadFull(srv, hdr[:]); err != nil {
				readErr <- err
				return
			}
			size, w, i := binary.BigEndian.Uint16(hdr[0:]), binary.BigEndian.Uint16(hdr[2:]), binary.BigEndian.Uint32(hdr[4:])
			if int(w) >= writers || int(size) != 8+int(w)*7 {
				readErr <- errors.New("a record's header is torn: writes interleaved")
				return
			}
			if i != next[w] {
				readErr <- errors.New("a writer's records arrived out of order")
				return
			}
			next[w]++
			body := make([]byte, int(size)-8)
			if _, err := io.ReadFull(srv, body); err != nil {
				readErr <- err
				return
			}
			for _, b := range body {
				if b != byte(int(w)+int(i)) {
					readErr <- errors.New("a record's body is torn: writes interleaved")
					return
				}
			}
		}
		readErr <- nil
	}()
	wg.Wait()
	select {
	case err := <-readErr:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatal("gave up after 60s: the reader did not get every record")
	}
	require.NoError(t, c.Close())
}
