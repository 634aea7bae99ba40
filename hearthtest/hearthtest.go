// Package hearthtest starts real hearth nodes for tests — embedded NATS,
// real sockets — and dials real clients to them:
//
//	node := hearthtest.Start(t, hearth.Config{}, mySvc)
//	c := node.Dial(t, "tcp")
//
// Every address defaults to 127.0.0.1:0 and the data directory to
// t.TempDir(); the node shuts down when the test ends. With the auth
// service (package authtest), clients log in in one more line:
//
//	node := authtest.Start(t, hearth.Config{}, mySvc)
//	alice := node.Login(t, "tcp")
//
// State that settles asynchronously is awaited with Eventually, never
// time.Sleep.
package hearthtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
)

// Transports lists the client transports, for tables that run over both.
var Transports = []string{"tcp", "ws"}

// Node is a running node under test.
type Node struct {
	*hearth.Node
	t testing.TB
}

// Start runs a node with cfg (test defaults filled in) and svcs registered,
// and waits until it serves. It fails the test if the node cannot start.
func Start(t testing.TB, cfg hearth.Config, svcs ...*hearth.Service) *Node {
	t.Helper()
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&cfg.TCPAddr, "127.0.0.1:0")
	def(&cfg.WSAddr, "127.0.0.1:0")
	def(&cfg.AdminAddr, "127.0.0.1:0")
	def(&cfg.DataDir, t.TempDir())
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = time.Second // tests' clients rarely resume elsewhere
	}
	if cfg.Logger == nil {
		cfg.Logger = Logger(t, slog.LevelWarn)
	}
	n, err := hearth.New(cfg)
	if err != nil {
		t.Fatalf("hearthtest: new node: %v", err)
	}
	if err := n.Register(svcs...); err != nil {
		t.Fatalf("hearthtest: register: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	select {
	case <-n.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("hearthtest: node did not start: %v", err)
	case <-time.After(15 * time.Second):
		cancel()
		t.Fatalf("hearthtest: node not ready after 15s")
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = n.Shutdown(sctx)
		cancel()
		if err := <-errc; err != nil {
			t.Logf("hearthtest: node stopped: %v", err)
		}
	})
	return &Node{Node: n, t: t}
}

// URL returns the client address of a transport: "tcp://…" or "ws://…/ws".
func (n *Node) URL(transport string) string {
	a := n.Addr(transport)
	if a == nil {
		n.t.Fatalf("hearthtest: node has no %s listener", transport)
	}
	if transport == "ws" {
		return "ws://" + a.String() + "/ws"
	}
	return "tcp://" + a.String()
}

// AdminURL returns the admin server's base URL, "http://host:port".
func (n *Node) AdminURL() string {
	a := n.Addr("admin")
	if a == nil {
		n.t.Fatalf("hearthtest: node has no admin listener")
	}
	return "http://" + a.String()
}

// Dial connects a client over transport ("tcp" or "ws") and completes the
// handshake; it is closed when the test ends.
func (n *Node) Dial(t testing.TB, transport string, opts ...client.Options) *client.Client {
	t.Helper()
	var o client.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.URL(transport), o)
	if err != nil {
		t.Fatalf("hearthtest: dial %s: %v", transport, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Logger returns a slog.Logger that writes to t.Log at level and above, and
// drops lines once the test has finished (late goroutines must not fail it).
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// Condition is what Eventually polls: a func() error that returns nil once
// the condition holds (its last error says why it does not yet), or a
// func() bool with a message for Eventually to report.
type Condition interface{ func() error | func() bool }

// Eventually polls cond every 10ms until it holds or timeout passes, then
// fails the test with the reason: the last error cond returned, or for a
// func() bool, msgAndArgs (a format string and its arguments, evaluated
// once, when Eventually is called). Use it for state that settles
// asynchronously, never time.Sleep; prefer the func() error form, whose
// message is fresh when the test gives up:
//
//	hearthtest.Eventually(t, 5*time.Second, func() error {
//		if n := len(node.Nodes()); n != 2 {
//			return fmt.Errorf("%d nodes, want 2", n)
//		}
//		return nil
//	})
//
// Call it on the test goroutine (it calls t.Fatalf).
func Eventually[C Condition](t testing.TB, timeout time.Duration, cond C, msgAndArgs ...any) {
	t.Helper()
	check := func() error {
		switch f := any(cond).(type) {
		case func() error:
			return f()
		case func() bool:
			if f() {
				return nil
			}
		}
		if len(msgAndArgs) == 0 {
			return errors.New("condition not met")
		}
		format, _ := msgAndArgs[0].(string)
		return fmt.Errorf(format, msgAndArgs[1:]...)
	}
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hearthtest: gave up after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
