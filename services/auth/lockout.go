package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/hearth-server/hearth"
)

// lockout counts failed logins per account and per client IP in a KV
// bucket, so the limits hold across every auth instance of the cluster.
// Each key holds the failure times inside its window.
type lockout struct {
	kv            hearth.KV
	accountLimit  int
	accountWindow time.Duration
	ipLimit       int
	ipWindow      time.Duration
}

func newLockout(ctx context.Context, n *hearth.Node, accountLimit int, accountWindow time.Duration, ipLimit int, ipWindow time.Duration) (*lockout, error) {
	kv, err := n.KV(ctx, "lockout", max(accountWindow, ipWindow))
	if err != nil {
		return nil, err
	}
	return &lockout{kv: kv, accountLimit: accountLimit, accountWindow: accountWindow, ipLimit: ipLimit, ipWindow: ipWindow}, nil
}

func accountKey(account string) string {
	return "a." + base64.RawURLEncoding.EncodeToString([]byte(strings.ToLower(account)))
}

func ipKey(ip string) string { return "i." + base64.RawURLEncoding.EncodeToString([]byte(ip)) }

// check reports whether the account or the IP is locked out, and until when.
func (l *lockout) check(ctx context.Context, account, ip string, now time.Time) (bool, time.Duration) {
	if account != "" && l.accountLimit > 0 {
		if locked, wait := l.locked(ctx, accountKey(account), l.accountLimit, l.accountWindow, now); locked {
			return true, wait
		}
	}
	if ip != "" && l.ipLimit > 0 {
		return l.locked(ctx, ipKey(ip), l.ipLimit, l.ipWindow, now)
	}
	return false, 0
}

func (l *lockout) locked(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (bool, time.Duration) {
	times, _, err := l.read(ctx, key)
	if err != nil {
		return false, 0
	}
	times = within(times, window, now)
	if len(times) < limit {
		return false, 0
	}
	// Locked until the oldest failure that keeps it over the limit ages out.
	oldest := time.UnixMilli(times[len(times)-limit])
	return true, oldest.Add(window).Sub(now)
}

// fail records a failed attempt against the account and the IP.
func (l *lockout) fail(ctx context.Context, account, ip string, now time.Time) {
	if account != "" && l.accountLimit > 0 {
		l.add(ctx, accountKey(account), l.accountLimit, l.accountWindow, now)
	}
	if ip != "" && l.ipLimit > 0 {
		l.add(ctx, ipKey(ip), l.ipLimit, l.ipWindow, now)
	}
}

// reset clears an account's failures after a successful login.
func (l *lockout) reset(ctx context.Context, account string) {
	_ = l.kv.Delete(ctx, accountKey(account), 0)
}

func (l *lockout) read(ctx context.Context, key string) ([]int64, uint64, error) {
	e, err := l.kv.Get(ctx, key)
	if errors.Is(err, hearth.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var times []int64
	_ = json.Unmarshal(e.Value, &times)
	return times, e.Revision, nil
}

// add appends now under compare-and-set, retrying when another instance
// wrote the key first.
func (l *lockout) add(ctx context.Context, key string, limit int, window time.Duration, now time.Time) {
	for range 5 {
		times, rev, err := l.read(ctx, key)
		if err != nil {
			return
		}
		times = append(within(times, window, now), now.UnixMilli())
		if len(times) > 2*limit {
			times = times[len(times)-2*limit:]
		}
		val, _ := json.Marshal(times)
		if rev == 0 {
			_, err = l.kv.Create(ctx, key, val)
		} else {
			_, err = l.kv.Update(ctx, key, val, rev)
		}
		if err == nil {
			return
		}
	}
}

func within(times []int64, window time.Duration, now time.Time) []int64 {
	cut := now.Add(-window).UnixMilli()
	out := times[:0]
	for _, t := range times {
		if t > cut {
			out = append(out, t)
		}
	}
	return out
}
