package hearth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
)

// A handler's context carries its request's deadline, and a handler still
// running when the node's shutdown runs out of time is cancelled —
// whichever of the node's request contexts its own was derived from.
func TestHandlerContextDeadlineAndShutdown(t *testing.T) {
	const handlers = 40
	started := make(chan struct{}, handlers)
	var mu sync.Mutex
	var ended []error // under mu: each handler's ctx.Err() when it returned
	svc := hearth.NewService("wait")
	hearth.HandleRaw(svc, "block", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("the handler's context has no deadline")
		}
		started <- struct{}{}
		<-ctx.Done()
		mu.Lock()
		ended = append(ended, ctx.Err())
		mu.Unlock()
		return nil, ctx.Err()
	})
	hearth.HandleRaw(svc, "deadline", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		return []byte(time.Until(dl).Round(time.Second).String()), nil
	})
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{RequestTimeout: time.Minute}}, svc)

	c := node.Dial(t, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := c.RequestRaw(ctx, "wait.deadline", nil)
	require.NoError(t, err)
	d, err := time.ParseDuration(string(out))
	require.NoError(t, err)
	require.Greater(t, d, 30*time.Second, "the handler's deadline is the request's (a minute)")

	for range handlers {
		go func() { _, _ = c.RequestRaw(ctx, "wait.block", nil) }()
	}
	for i := range handlers {
		select {
		case <-started:
		case <-time.After(15 * time.Second):
			t.Fatalf("gave up after 15s: %d of %d handlers started", i, handlers)
		}
	}
	// The handlers would run for a minute: the shutdown waits for them
	// only its own time, then cancels them.
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	require.Error(t, node.Shutdown(sctx), "handlers were still running")
	hearthtest.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(ended) != handlers {
			return fmt.Errorf("%d of %d handlers cancelled", len(ended), handlers)
		}
		for _, err := range ended {
			if !errors.Is(err, context.Canceled) {
				return fmt.Errorf("a handler ended with %v, want context.Canceled", err)
			}
		}
		return nil
	})
}

// A handler may keep its request's context after it has answered (a
// goroutine it started logs later): the context's trace id and logger stay
// that request's, though the node reuses the request's envelope for the
// next ones — on its own gate's path and on the bus's.
func TestKeptContextKeepsItsRequest(t *testing.T) {
	keepService := func() (*hearth.Service, chan context.Context) {
		kept := make(chan context.Context, 64)
		svc := hearth.NewService("keep")
		hearth.HandleRaw(svc, "one", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
			kept <- ctx
			return []byte(hearth.TraceID(ctx)), nil
		})
		return svc, kept
	}
	t.Run("own gate", func(t *testing.T) {
		var logs logBuffer
		svc, kept := keepService()
		node := hearthtest.Start(t, hearth.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}, svc)
		checkKeptContexts(t, node, kept, &logs)
	})
	t.Run("over the bus", func(t *testing.T) {
		var logs logBuffer
		svc, kept := keepService()
		nodes := startCluster(t, hearth.Config{NodeID: "hub"}, nil, func(url string) (hearth.Config, []*hearth.Service) {
			return hearth.Config{NodeID: "svc", NATSURL: url, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}, []*hearth.Service{svc}
		})
		checkKeptContexts(t, nodes[0], kept, &logs)
	})
}

// checkKeptContexts makes 20 requests to keep.one through node's gate, then
// reads each context the handler kept and logs with it.
func checkKeptContexts(t *testing.T, node *hearthtest.Node, kept chan context.Context, logs *logBuffer) {
	c := node.Dial(t, "tcp")
	var traces []string
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := c.RequestRaw(ctx, "keep.one", nil)
		cancel()
		require.NoError(t, err)
		require.NotEmpty(t, out)
		traces = append(traces, string(out))
	}
	for i, want := range traces {
		ctx := <-kept
		require.Equal(t, want, hearth.TraceID(ctx), "request %d", i)
		hearth.Logger(ctx).Info("later", "n", i)
	}
	for i, trace := range traces {
		l, err := logs.line("later", "trace", trace)
		require.NoError(t, err, "request %d logs with its own trace id", i)
		require.Equal(t, "keep.one", l["route"])
		require.NotEmpty(t, l["session"])
		require.EqualValues(t, i, l["n"])
	}
}
