package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hearth-server/hearth"
)

// window counts events per key inside a sliding time window, cluster-wide:
// each KV entry holds the times of the key's recent events, and writes are
// compare-and-set, so every auth instance sees one count.
type window struct {
	kv    hearth.KV
	limit int // events allowed per span; <= 0: unlimited
	span  time.Duration
}

// full reports whether key has reached the limit, and how long until an
// event ages out.
func (w window) full(ctx context.Context, key string, now time.Time) (bool, time.Duration) {
	if w.limit <= 0 {
		return false, 0
	}
	times, _, err := w.read(ctx, key, now)
	if err != nil {
		return false, 0
	}
	return w.over(times, now)
}

// over reports whether times (already inside the span) reach the limit,
// and until when.
func (w window) over(times []int64, now time.Time) (bool, time.Duration) {
	if len(times) < w.limit {
		return false, 0
	}
	// Full until the oldest event that keeps it at the limit ages out.
	oldest := time.UnixMilli(times[len(times)-w.limit])
	return true, oldest.Add(w.span).Sub(now)
}

// add records an event whatever the count.
func (w window) add(ctx context.Context, key string, now time.Time) {
	if w.limit > 0 {
		_, _, _ = w.record(ctx, key, now, false)
	}
}

// take records an event only while key is under the limit; ok false says
// it was full, with the wait until it is not. An error means the count
// could not be read or written.
func (w window) take(ctx context.Context, key string, now time.Time) (ok bool, wait time.Duration, err error) {
	if w.limit <= 0 {
		return true, 0, nil
	}
	return w.record(ctx, key, now, true)
}

// record appends now under compare-and-set, retrying when another instance
// wrote the key first. With bounded, a full key is left as it is.
func (w window) record(ctx context.Context, key string, now time.Time, bounded bool) (bool, time.Duration, error) {
	var err error
	for range 8 {
		var times []int64
		var rev uint64
		if times, rev, err = w.read(ctx, key, now); err != nil {
			return false, 0, err
		}
		if bounded {
			if full, wait := w.over(times, now); full {
				return false, wait, nil
			}
		}
		times = append(times, now.UnixMilli())
		if len(times) > 2*w.limit {
			times = times[len(times)-2*w.limit:]
		}
		val, _ := json.Marshal(times)
		if rev == 0 {
			_, err = w.kv.Create(ctx, key, val)
		} else {
			_, err = w.kv.Update(ctx, key, val, rev)
		}
		if err == nil {
			return true, 0, nil
		}
		if !errors.Is(err, hearth.ErrKeyExists) && !errors.Is(err, hearth.ErrRevisionMismatch) {
			return false, 0, err
		}
	}
	return false, 0, fmt.Errorf("auth: %s: too much contention: %w", key, err)
}

// read returns the key's event times inside the span, and its revision (0
// when it has none).
func (w window) read(ctx context.Context, key string, now time.Time) ([]int64, uint64, error) {
	e, err := w.kv.Get(ctx, key)
	if errors.Is(err, hearth.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var times []int64
	_ = json.Unmarshal(e.Value, &times)
	cut := now.Add(-w.span).UnixMilli()
	out := times[:0]
	for _, t := range times {
		if t > cut {
			out = append(out, t)
		}
	}
	return out, e.Revision, nil
}

// lockout counts failed logins per account and per client IP, so the
// limits hold across every auth instance of the cluster.
type lockout struct {
	account, ip window
}

func newLockout(ctx context.Context, n *hearth.Node, accountLimit int, accountWindow time.Duration, ipLimit int, ipWindow time.Duration) (*lockout, error) {
	kv, err := n.KV(ctx, "lockout", max(accountWindow, ipWindow))
	if err != nil {
		return nil, err
	}
	return &lockout{account: window{kv, accountLimit, accountWindow}, ip: window{kv, ipLimit, ipWindow}}, nil
}

func accountKey(account string) string {
	return "a." + base64.RawURLEncoding.EncodeToString([]byte(strings.ToLower(account)))
}

func ipKey(ip string) string { return "i." + base64.RawURLEncoding.EncodeToString([]byte(ip)) }

// check reports whether the account or the IP is locked out, and until when.
func (l *lockout) check(ctx context.Context, account, ip string, now time.Time) (bool, time.Duration) {
	if account != "" {
		if locked, wait := l.account.full(ctx, accountKey(account), now); locked {
			return true, wait
		}
	}
	if ip != "" {
		return l.ip.full(ctx, ipKey(ip), now)
	}
	return false, 0
}

// fail records a failed attempt against the account and the IP.
func (l *lockout) fail(ctx context.Context, account, ip string, now time.Time) {
	if account != "" {
		l.account.add(ctx, accountKey(account), now)
	}
	if ip != "" {
		l.ip.add(ctx, ipKey(ip), now)
	}
}

// reset clears an account's failures after a successful login.
func (l *lockout) reset(ctx context.Context, account string) {
	_ = l.account.kv.Delete(ctx, accountKey(account), 0)
}
