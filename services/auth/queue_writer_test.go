package auth

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// Writes handed to the queue's KV writer while a lead ends run exactly
// once each — on the writer, or on their caller once it has stopped — and
// none is sent on the closed channel (a panic, and a race under -race: the
// send raced the close when the channel was read under the lock and sent
// on outside it).
func TestQueueWriterStopsUnderConcurrentWrites(t *testing.T) {
	q := &queue{}
	for range 200 {
		stop := q.startWriter()
		const writers, each = 4, 50
		var ran atomic.Int64
		var wg sync.WaitGroup
		for range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					q.write(func() { ran.Add(1) })
				}
			}()
		}
		stop()
		wg.Wait()
		require.Equal(t, int64(writers*each), ran.Load(), "every write runs once")
		q.mu.Lock()
		require.Nil(t, q.writes, "a stopped writer is gone")
		q.mu.Unlock()
	}
}
