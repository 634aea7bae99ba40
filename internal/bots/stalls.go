package bots

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// stallGap and stallSets bound --dump-stalls: a dump stops the
	// server's world, and a long stall would otherwise fill the disk.
	stallGap  = 10 * time.Second
	stallSets = 20
	// stallFetch bounds one process's dump: a stalled server may answer
	// slowly, but the run's end waits for the set in flight.
	stallFetch = 30 * time.Second
)

// stallDumper is --dump-stalls: when the progress line's action p99 passes
// a threshold, it saves every server process's goroutines from its admin
// listener. Only the run loop calls check and take; the fetches run in a
// goroutine of their own, one set at a time, so the loop never waits on a
// server.
type stallDumper struct {
	ctx    context.Context
	dir    string
	after  time.Duration
	admins []string // admin base URLs
	names  []string // each one's node name in the file names
	client *http.Client

	last    time.Time   // when the last set started
	sets    int         // sets started
	running bool        // a set is in flight: its result comes on done
	done    chan string // a set's line for stderr
}

// newStallDumper creates dir if missing. names are the processes' names
// in the order of admins (nil with --addr: from the URLs); "" admins are
// skipped.
func newStallDumper(ctx context.Context, dir string, after time.Duration, admins, names []string) (*stallDumper, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--dump-stalls: %w", err)
	}
	d := &stallDumper{ctx: ctx, dir: dir, after: after, client: &http.Client{Timeout: stallFetch}, done: make(chan string, 1)}
	for i, a := range admins {
		if a == "" {
			continue
		}
		name := ""
		if i < len(names) {
			name = names[i]
		} else if u, err := url.Parse(a); err == nil {
			name = u.Host
		}
		d.admins = append(d.admins, strings.TrimRight(a, "/"))
		d.names = append(d.names, fileSafe(cmp.Or(name, strconv.Itoa(i+1))))
	}
	if len(d.admins) == 0 {
		return nil, errors.New("--dump-stalls: no admin listener to fetch goroutines from")
	}
	return d, nil
}

// fileSafe replaces what a file name should not hold (host:port's colon).
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		}
		return '_'
	}, s)
}

// check starts a set of dumps when p99 (ms, the progress line's) is past
// the threshold, none is in flight, the last began stallGap ago or more
// and fewer than stallSets began; it reports whether it did.
func (d *stallDumper) check(now time.Time, p99 float64) bool {
	if d == nil || p99 <= float64(d.after)/float64(time.Millisecond) || d.running || d.sets >= stallSets ||
		!d.last.IsZero() && now.Sub(d.last) < stallGap {
		return false
	}
	d.running, d.last = true, now
	d.sets++
	why := fmt.Sprintf("action p99 %s > %s", fmtMS(p99), d.after)
	set := d.sets
	go func() { d.done <- d.dump(now.Unix(), set, why) }()
	return true
}

// take is the line of a set that has finished since, or "".
func (d *stallDumper) take() string {
	if d == nil || !d.running {
		return ""
	}
	select {
	case msg := <-d.done:
		d.running = false
		return msg
	default:
		return ""
	}
}

// wait waits for the set in flight, if any, and returns its line.
func (d *stallDumper) wait() string {
	if d == nil || !d.running {
		return ""
	}
	d.running = false
	return <-d.done
}

// dump fetches every process's goroutines into
// dir/goroutines-<node>-<unix>.txt, all at once so that they show the same
// moment, and says where they went.
func (d *stallDumper) dump(unix int64, set int, why string) string {
	res := make([]string, len(d.admins))
	var wg sync.WaitGroup
	for i, a := range d.admins {
		wg.Go(func() {
			file := filepath.Join(d.dir, fmt.Sprintf("goroutines-%s-%d.txt", d.names[i], unix))
			if err := d.fetch(a, file); err != nil {
				res[i] = d.names[i] + ": " + err.Error()
				return
			}
			res[i] = file
		})
	}
	wg.Wait()
	return fmt.Sprintf("bots  %s: goroutines of the server (set %d of at most %d): %s", why, set, stallSets, strings.Join(res, ", "))
}

// fetch writes one process's goroutines to file, or removes it on an error.
func (d *stallDumper) fetch(admin, file string) (err error) {
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, admin+"/debug/pprof/goroutine?debug=2", nil)
	if err != nil {
		return err
	}
	// The admin API's token, as testcluster.AdminNodes sends it.
	if tok := os.Getenv("HEARTH_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/goroutine: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(file)
	}
	return err
}
