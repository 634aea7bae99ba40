package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
)

// gameSettings are a game's own settings, declared through Options.Flags.
type gameSettings struct {
	Round  time.Duration
	Seats  int
	Name   string
	NodeID string
}

func gameOptions(got chan<- gameSettings) Options {
	var g gameSettings
	return Options{
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&g.Round, "round", 30*time.Second, "length of a round")
			fs.IntVar(&g.Seats, "seats", 4, "seats per table")
			fs.StringVar(&g.Name, "table-name", "t", "table name prefix")
		},
		Services: func(cfg *hearth.Config) []*hearth.Service {
			g.NodeID = cfg.NodeID
			got <- g
			return []*hearth.Service{hearth.NewService("table")}
		},
	}
}

// A game's settings reach its services from a flag, the environment and
// the config file, with the same precedence as the built-in ones.
func TestOptionsGameSettings(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "game.yaml")
	require.NoError(t, os.WriteFile(conf, []byte("round: 45s\nseats: 3\ntable-name: from-file\nnode-id: game-1\n"), 0o600))
	t.Setenv("HEARTH_TABLE_NAME", "from-env")

	got := make(chan gameSettings, 1)
	opts := gameOptions(got)
	var errb bytes.Buffer
	out := &readyWriter{ready: make(chan struct{})}
	opts.Stdout, opts.Stderr = out, &errb
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, []string{"serve", "--config", conf, "--seats", "6", "--tcp", "127.0.0.1:0", "--ws", "off",
			"--admin", "off", "--data", dir, "--log-level", "error"}, opts)
	}()
	select {
	case g := <-got:
		require.Equal(t, gameSettings{Round: 45 * time.Second, Seats: 6, Name: "from-env", NodeID: "game-1"}, g)
	case c := <-code:
		t.Fatalf("serve exited with %d before starting the services: %s", c, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("Services was not called")
	}
	select {
	case <-out.ready:
	case c := <-code:
		t.Fatalf("serve exited with %d: %s", c, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	cancel()
	select {
	case c := <-code:
		require.Equal(t, 0, c, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}

	// The game's flags are in serve's help, and a bad value is refused.
	errb.Reset()
	require.Equal(t, 0, Main(ctx, []string{"serve", "-h"}, opts))
	require.Contains(t, errb.String(), "seats per table")
	require.Equal(t, 2, Main(ctx, []string{"serve", "--seats", "many"}, opts))
}

// readyWriter is serve's stdout: ready is closed once serve has printed
// its listeners.
type readyWriter struct {
	mu    sync.Mutex // guards buf
	buf   bytes.Buffer
	ready chan struct{}
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := bytes.Contains(w.buf.Bytes(), []byte("try:"))
	w.buf.Write(p)
	if !had && bytes.Contains(w.buf.Bytes(), []byte("try:")) {
		close(w.ready)
	}
	return len(p), nil
}

// Library errors name Config fields; serve names the flags instead.
func TestServeErrorsNameFlags(t *testing.T) {
	var errb bytes.Buffer
	code := Main(context.Background(), []string{"serve", "--admin", "0.0.0.0:0", "--data", t.TempDir()}, Options{Stdout: &bytes.Buffer{}, Stderr: &errb})
	require.Equal(t, 1, code)
	require.Contains(t, errb.String(), "set --admin-token (or HEARTH_ADMIN_TOKEN), or bind --admin to loopback")
	require.NotContains(t, errb.String(), "Config.")
}

// In a game's own binary the usage names that binary.
func TestUsageNamesTheBinary(t *testing.T) {
	name := filepath.Base(os.Args[0])
	var out, errb bytes.Buffer
	opts := Options{Stdout: &out, Stderr: &errb, Commands: map[string]Command{"tables": nil}}
	require.Equal(t, 0, Main(context.Background(), []string{"help"}, opts))
	require.Contains(t, out.String(), "  "+name+" serve [flags] ")
	require.Contains(t, out.String(), "see '"+name+" tables -h'")
	require.NotContains(t, out.String(), "hearth serve")
	require.Equal(t, 2, Main(context.Background(), []string{"nope"}, opts))
	require.Contains(t, errb.String(), name+`: unknown command "nope"`)
}
