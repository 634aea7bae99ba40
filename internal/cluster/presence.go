package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Where is where a user's session lives.
type Where struct {
	Gate    string    `json:"gate"`
	Session string    `json:"session"`
	Codec   string    `json:"codec,omitempty"` // the session's codec, so a push is encoded once
	Since   time.Time `json:"since"`
}

// ErrOffline is returned for a user with no live session.
var ErrOffline = errors.New("cluster: user is offline")

// Presence maps user ids to the gate and session holding them, in a KV
// bucket shared by the cluster. An entry whose gate has left the registry
// counts as offline, so a killed gate's users are offline as soon as the
// registry drops the gate; the entries are purged by PurgeGate.
type Presence struct {
	kv  jetstream.KeyValue
	reg *Registry
}

// NewPresence opens the presence bucket. reg, when set, filters out entries
// of gates that are gone.
func NewPresence(ctx context.Context, b *Bus, reg *Registry) (*Presence, error) {
	kv, err := b.openKV(ctx, bucketName(b.subj.Prefix, "presence"), 0)
	if err != nil {
		return nil, err
	}
	return &Presence{kv: kv, reg: reg}, nil
}

// presenceKey maps a user id to a KV key: ids made of key-safe characters
// are kept as they are (readable in tools), others are base64url-encoded.
func presenceKey(user string) string {
	safe := len(user) > 0 && len(user) <= 200
	for i := 0; safe && i < len(user); i++ {
		c := user[i]
		safe = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if safe {
		return "u." + user
	}
	return "b." + base64.RawURLEncoding.EncodeToString([]byte(user))
}

// Set records that user is on gate in session, returning where the user was
// before (ok false when nowhere live).
func (p *Presence) Set(ctx context.Context, user string, w Where) (prev Where, ok bool, err error) {
	if user == "" {
		return Where{}, false, errors.New("cluster: empty user id")
	}
	key := presenceKey(user)
	if e, err := p.kv.Get(ctx, key); err == nil {
		if json.Unmarshal(e.Value(), &prev) == nil && p.live(prev) {
			ok = true
		}
	}
	val, _ := json.Marshal(w)
	if _, err := p.kv.Put(ctx, key, val); err != nil {
		return Where{}, false, fmt.Errorf("cluster: set presence: %w", err)
	}
	return prev, ok, nil
}

// Lookup returns where user is, or ErrOffline.
func (p *Presence) Lookup(ctx context.Context, user string) (Where, error) {
	e, err := p.kv.Get(ctx, presenceKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Where{}, ErrOffline
	}
	if err != nil {
		return Where{}, fmt.Errorf("cluster: presence lookup: %w", err)
	}
	var w Where
	if err := json.Unmarshal(e.Value(), &w); err != nil || !p.live(w) {
		return Where{}, ErrOffline
	}
	return w, nil
}

// Clear removes user's entry if it still names session, so a session
// closing late cannot erase the user's newer login elsewhere.
func (p *Presence) Clear(ctx context.Context, user, session string) error {
	key := presenceKey(user)
	e, err := p.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var w Where
	if json.Unmarshal(e.Value(), &w) == nil && w.Session != session {
		return nil
	}
	err = p.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && isWrongSequence(err) {
		return nil // replaced meanwhile
	}
	return err
}

// PurgeGate removes every entry on gate (after the gate died). It returns
// how many it removed.
func (p *Presence) PurgeGate(ctx context.Context, gate string) (int, error) {
	lister, err := p.kv.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for key := range lister.Keys() {
		e, err := p.kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var w Where
		if json.Unmarshal(e.Value(), &w) == nil && w.Gate == gate {
			if p.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())) == nil {
				n++
			}
		}
	}
	return n, nil
}

func (p *Presence) live(w Where) bool {
	return p.reg == nil || p.reg.Alive(w.Gate)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
