package testcluster

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var binary string // cmd/hearth, built by TestMain

func TestMain(m *testing.M) { os.Exit(RunWithBinary(m, "../../cmd/hearth", &binary)) }

func TestLogTail(t *testing.T) {
	cases := []struct {
		name   string
		writes []string
		count  int
		want   string
	}{
		{name: "nothing", want: "  (nothing)"},
		{name: "lines", writes: []string{"a\nb\n"}, count: 2, want: "  a\n  b"},
		{name: "split writes", writes: []string{"he", "llo\nwor", "ld\n"}, count: 2, want: "  hello\n  world"},
		{name: "last lines kept", writes: []string{"1\n2\n3\n4\n"}, count: 4, want: "  2\n  3\n  4"},
		{name: "unfinished line", writes: []string{"1\n2"}, count: 1, want: "  1\n  2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLogTail(3)
			for _, w := range tc.writes {
				n, err := l.Write([]byte(w))
				require.NoError(t, err)
				require.Equal(t, len(w), n)
			}
			require.Equal(t, tc.count, l.Count())
			require.Equal(t, tc.want, l.String())
			require.Equal(t, tc.want, l.String(), "String changed the tail")
		})
	}
}

func TestStartProcFails(t *testing.T) {
	_, err := StartProc(context.Background(), ProcConfig{Binary: binary, Args: []string{"serve", "--no-such-flag"}, ID: "bad"})
	require.ErrorContains(t, err, "node bad: exited before serving")
	require.ErrorContains(t, err, "no-such-flag", "the error carries the node's log")
}

// A cluster on the first node's embedded NATS: it forms, a node killed
// leaves it, the node started again rejoins, and Stop ends every process.
func TestClusterEmbedded(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Config{
		Binary: binary,
		Args:   []string{"--registry-interval", "200ms", "--log-level", "warn", "--drain-timeout", "1s"},
		Nodes:  []Node{{ID: "svc", Args: []string{"--roles", "sys", "--tcp", "off", "--ws", "off"}}, {ID: "gate", Args: []string{"--roles", "gate"}}},
		Within: 20 * time.Second,
	})
	require.NoError(t, err)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop()
		}
	})
	require.True(t, strings.HasPrefix(c.Prefix, "tc"), c.Prefix)
	require.True(t, strings.HasPrefix(c.NATS, "nats://127.0.0.1:"), c.NATS)
	svc, gate := c.Node("svc"), c.Node("gate")
	require.Equal(t, c.NATS, svc.NATS)
	require.Empty(t, svc.TCP, "svc runs --tcp off")
	require.True(t, strings.HasPrefix(gate.TCP, "tcp://127.0.0.1:"), gate.TCP)
	require.True(t, strings.HasPrefix(gate.WS, "ws://127.0.0.1:"), gate.WS)
	require.NotEmpty(t, gate.Admin)
	require.Equal(t, []*Proc{svc, gate}, c.Nodes())

	require.NoError(t, gate.Kill())
	require.False(t, gate.Running())
	require.Equal(t, []*Proc{svc}, c.Live())
	require.NoError(t, c.WaitServing(ctx, 10*time.Second, "svc"))

	again, err := c.StartNode(ctx, Node{ID: "gate", Args: []string{"--roles", "gate"}})
	require.NoError(t, err)
	require.NotEqual(t, gate.PID(), again.PID())
	require.Same(t, again, c.Node("gate"))
	require.NoError(t, c.WaitServing(ctx, 10*time.Second, "svc", "gate"))
	require.Contains(t, c.Logs(), "--- gate (pid ")

	_, err = c.StartNode(ctx, Node{ID: "svc"})
	require.ErrorContains(t, err, "embedded NATS")

	stopped = true
	require.NoError(t, c.Stop())
	for _, p := range []*Proc{svc, gate, again} {
		require.False(t, p.Running(), p.ID)
	}
}

// A cluster on the shared NATS deletes its buckets when it stops.
func TestClusterSharedNATS(t *testing.T) {
	ctx := context.Background()
	c, err := Start(ctx, Config{
		Binary: binary,
		NATS:   SharedNATS,
		Args:   []string{"--log-level", "warn"},
		Nodes:  []Node{{ID: "one"}},
	})
	require.NoError(t, err)
	require.Equal(t, SharedNATS, c.NATS)
	require.Empty(t, c.Node("one").NATS, "a node on an external NATS runs none")
	require.NotEmpty(t, bucketsOf(t, c.Prefix), "the node made no buckets")
	require.NoError(t, c.Stop())
	require.Empty(t, bucketsOf(t, c.Prefix), "buckets left on the shared NATS")
}

func bucketsOf(t *testing.T, prefix string) []string {
	t.Helper()
	nc, js, err := connectJS(SharedNATS)
	require.NoError(t, err)
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names, err := prefixBuckets(ctx, js, prefix)
	require.NoError(t, err)
	return names
}
