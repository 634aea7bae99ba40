package bots

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/hearthtest"
)

// adminStandIn serves /debug/pprof/goroutine?debug=2 as "goroutines of
// name"; while block is set each request waits for release.
func adminStandIn(t *testing.T, name string, block *atomic.Bool, release <-chan struct{}) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/pprof/goroutine" || r.URL.Query().Get("debug") != "2" {
			http.NotFound(w, r)
			return
		}
		if block.Load() {
			<-release
		}
		fmt.Fprintf(w, "goroutines of %s\n", name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A set starts only past the threshold, 10 s after the last at the
// earliest, never while one is in flight, and at most 20 times; each
// process's dump lands in its own file, named by node and time.
func TestStallDumper(t *testing.T) {
	var block atomic.Bool
	release := make(chan struct{})
	a := adminStandIn(t, "tables", &block, release)
	b := adminStandIn(t, "gate-1", &block, release)
	dir := filepath.Join(t.TempDir(), "stalls", "new") // created if missing
	d, err := newStallDumper(context.Background(), dir, 3*time.Second, []string{a.URL, "", b.URL + "/"}, []string{"tables", "none", "gate-1"})
	require.NoError(t, err)

	t0 := time.Unix(1_700_000_000, 0)
	files := func(at time.Time) []string {
		return []string{
			filepath.Join(dir, fmt.Sprintf("goroutines-tables-%d.txt", at.Unix())),
			filepath.Join(dir, fmt.Sprintf("goroutines-gate-1-%d.txt", at.Unix())),
		}
	}
	requireSet := func(at time.Time, msg string, set int) {
		t.Helper()
		f := files(at)
		require.Equal(t, fmt.Sprintf("bots  action p99 5000 ms > 3s: goroutines of the server (set %d of at most 20): %s, %s", set, f[0], f[1]), msg)
		for i, name := range []string{"tables", "gate-1"} {
			got, err := os.ReadFile(f[i])
			require.NoError(t, err)
			require.Equal(t, "goroutines of "+name+"\n", string(got))
		}
	}

	require.False(t, d.check(t0, 3000), "at the threshold: no dump")
	require.False(t, d.check(t0, 120))
	require.Equal(t, "", d.take())
	require.True(t, d.check(t0, 5000))
	requireSet(t0, d.wait(), 1)

	require.False(t, d.check(t0.Add(stallGap-time.Millisecond), 5000), "within 10 s of the last set")
	t1 := t0.Add(stallGap)
	require.True(t, d.check(t1, 5000))
	requireSet(t1, d.wait(), 2)

	// A set in flight holds the next back, however long it takes.
	block.Store(true)
	t2 := t1.Add(stallGap)
	require.True(t, d.check(t2, 5000))
	require.False(t, d.check(t2.Add(time.Minute), 5000), "a set is in flight")
	require.Equal(t, "", d.take(), "the set in flight has not finished")
	close(release)
	var msg string
	hearthtest.Eventually(t, 10*time.Second, func() error {
		if msg = d.take(); msg == "" {
			return fmt.Errorf("the released set reported nothing")
		}
		return nil
	})
	requireSet(t2, msg, 3)
	block.Store(false)

	at := t2.Add(time.Minute)
	for set := 4; set <= stallSets; set++ {
		at = at.Add(stallGap)
		require.True(t, d.check(at, 5000), "set %d", set)
		requireSet(at, d.wait(), set)
	}
	require.False(t, d.check(at.Add(time.Hour), 5000), "no more than 20 sets in a run")
	require.Equal(t, "", d.wait(), "nothing in flight")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2*stallSets)

	var none *stallDumper // without --dump-stalls
	require.False(t, none.check(t0, 1e9))
	require.Equal(t, "", none.take())
	require.Equal(t, "", none.wait())
}

// With --addr the files are named by the admin URL's host; the admin
// token comes from HEARTH_ADMIN_TOKEN, and a refused fetch leaves no file.
func TestStallDumperToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret" {
			http.Error(w, "admin token required", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "goroutine 1 [running]:")
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	d, err := newStallDumper(context.Background(), dir, time.Second, []string{srv.URL}, nil)
	require.NoError(t, err)
	node := strings.ReplaceAll(strings.TrimPrefix(srv.URL, "http://"), ":", "_")
	t0 := time.Unix(1_700_000_000, 0)
	file := filepath.Join(dir, fmt.Sprintf("goroutines-%s-%d.txt", node, t0.Unix()))

	t.Setenv("HEARTH_ADMIN_TOKEN", "")
	require.True(t, d.check(t0, 1500))
	require.Contains(t, d.wait(), node+": GET /debug/pprof/goroutine: 401 Unauthorized")
	require.NoFileExists(t, file)

	t.Setenv("HEARTH_ADMIN_TOKEN", "secret")
	t1 := t0.Add(stallGap)
	file = filepath.Join(dir, fmt.Sprintf("goroutines-%s-%d.txt", node, t1.Unix()))
	require.True(t, d.check(t1, 1500))
	require.True(t, strings.HasSuffix(d.wait(), ": "+file))
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "goroutine 1 [running]:\n", string(got))

	_, err = newStallDumper(context.Background(), dir, time.Second, []string{""}, nil)
	require.ErrorContains(t, err, "no admin listener")
}
