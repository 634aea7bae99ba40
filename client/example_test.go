package client_test

import (
	"context"
	"log"
	"time"

	"github.com/hearth-server/hearth/client"
)

// A process that holds many sessions (a load generator, a bot farm) reads
// them on one Poller instead of a goroutine each. Push handlers run on the
// Poller's goroutines (PushOnReader), so they must not block.
func ExamplePoller() {
	p, err := client.NewPoller(client.PollerOptions{Gather: time.Millisecond})
	if err != nil {
		log.Fatal(err) // not Linux: leave Options.Poller nil instead
	}
	defer p.Close() // after the clients: it ends those it still reads

	ctx := context.Background()
	opts := client.Options{Poller: p, PushOnReader: true, OnPush: func(p client.Push) {
		// p.Payload is valid until this returns.
	}}
	for range 1000 {
		c, err := client.Dial(ctx, "tcp://localhost:7100", opts)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		// Requests on c from any goroutine but the Poller's.
		go func() { _, _ = c.RequestRaw(ctx, "sys.ping", nil) }()
	}
}
