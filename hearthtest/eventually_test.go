package hearthtest

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the calling goroutine, as the real one does.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// runEventually runs Eventually with a recording TB on its own goroutine
// and returns the failure message, "" if it succeeded.
func runEventually(t *testing.T, f func(tb testing.TB)) string {
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.msg
}

func TestEventually(t *testing.T) {
	t.Run("error form succeeds once cond returns nil", func(t *testing.T) {
		calls := 0
		msg := runEventually(t, func(tb testing.TB) {
			Eventually(tb, 5*time.Second, func() error {
				calls++
				if calls < 3 {
					return fmt.Errorf("call %d", calls)
				}
				return nil
			})
		})
		require.Empty(t, msg)
		require.Equal(t, 3, calls)
	})
	t.Run("error form reports the last error", func(t *testing.T) {
		calls := 0
		msg := runEventually(t, func(tb testing.TB) {
			Eventually(tb, 30*time.Millisecond, func() error {
				calls++
				return fmt.Errorf("still %d", calls)
			})
		})
		require.Contains(t, msg, "gave up after 30ms")
		require.Contains(t, msg, fmt.Sprintf("still %d", calls))
	})
	t.Run("bool form reports the message", func(t *testing.T) {
		msg := runEventually(t, func(tb testing.TB) {
			Eventually(tb, 20*time.Millisecond, func() bool { return false }, "want %d", 7)
		})
		require.Contains(t, msg, "want 7")
	})
	t.Run("bool form without a message", func(t *testing.T) {
		msg := runEventually(t, func(tb testing.TB) {
			Eventually(tb, 20*time.Millisecond, func() bool { return false })
		})
		require.Contains(t, msg, "condition not met")
	})
	t.Run("bool form succeeds", func(t *testing.T) {
		ok := false
		msg := runEventually(t, func(tb testing.TB) {
			Eventually(tb, 5*time.Second, func() bool { ok = !ok; return !ok })
		})
		require.Empty(t, msg)
	})
}
