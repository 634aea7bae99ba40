package gate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/gate"
)

// A gate whose NATS server stops reading its connection blocks in the
// publish of a request, and then reads nothing more from that session: the
// client's next request gets no answer at all, not even the gate's 302.
// The gate counts such a forward (hearth_bus_slow_forwards_total) and logs
// it, so an operator can tell this stall from a slow service; once the
// server reads again, requests are answered.
func TestGateReportsABusThatStopsReading(t *testing.T) {
	svc := hearth.NewService("big")
	hearth.HandleRaw(svc, "echo", func(_ context.Context, _ *hearth.Session, payload []byte) ([]byte, error) {
		if len(payload) > 64 {
			return nil, nil // a flood request: nobody reads its answer
		}
		return payload, nil
	})
	back := hearthtest.Start(t, hearth.Config{NodeID: "back", NATSListen: "127.0.0.1:0", Roles: []string{"big", "sys"}, TCPAddr: hearth.Off, WSAddr: hearth.Off}, svc)
	proxy := hearthtest.NewProxy(t, strings.TrimPrefix(back.NATSURL(), "nats://"))
	logs := &gate.LockedBuffer{}
	gate := hearthtest.Start(t, hearth.Config{NodeID: "front", NATSURL: "nats://" + proxy.Addr(), Roles: []string{"gate"},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Limits: hearth.Limits{MaxFrame: 600 << 10, RequestTimeout: 300 * time.Millisecond, MaxInFlight: 512}})
	hearthtest.Eventually(t, 10*time.Second, func() bool { return len(gate.Nodes()) == 2 }, "the nodes never saw each other")

	c := gate.Dial(t, "tcp")
	ask := func(ctx context.Context, n int) error {
		want := fmt.Sprint(n)
		out, err := c.RequestRaw(ctx, "big.echo", []byte(want))
		if err == nil && string(out) != want {
			err = fmt.Errorf("echo %s answered %q", want, out)
		}
		return err
	}
	require.NoError(t, ask(context.Background(), 1))

	// Stop the server reading, and send big requests until one is not
	// even read by the gate: its publish of an earlier one is blocked.
	proxy.Pause(true)
	flooder := gate.Dial(t, "tcp")
	big := make([]byte, 512<<10)
	stuck := false
	for i := 0; i < 40 && !stuck; i++ {
		for range 8 {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, _ = flooder.RequestRaw(ctx, "big.echo", big)
			}()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ask(ctx, i+2)
		cancel()
		// A request the gate read gets 302 after its RequestTimeout;
		// one it could not read gets nothing.
		stuck = errors.Is(err, context.DeadlineExceeded)
	}
	require.True(t, stuck, "every request was answered (the gate never blocked on the bus)")
	require.Zero(t, scrape(t, gate)["hearth_bus_slow_forwards_total"], "counted before the blocked publish returned")

	proxy.Pause(false)
	hearthtest.Eventually(t, 20*time.Second, func() error {
		if n := scrape(t, gate)["hearth_bus_slow_forwards_total"]; n < 1 {
			return fmt.Errorf("hearth_bus_slow_forwards_total %v after the bus read again", n)
		}
		return nil
	})
	require.Contains(t, logs.String(), "bus publish blocked")
	hearthtest.Eventually(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return ask(ctx, 1000)
	})
}
