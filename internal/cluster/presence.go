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
	bus *Bus
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
	return &Presence{bus: b, kv: kv, reg: reg}, nil
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

// ErrTaken is returned by Claim when a live session of another holds the
// user and the caller would not replace it.
var ErrTaken = errors.New("cluster: user is online in another session")

// Claim records that user is on w.Gate in session w.Session. It is a
// compare-and-set on the entry's revision: of logins racing on several
// nodes, each sees the entry the one before it wrote, so exactly one ends
// up in it. When a live session other than w.Session holds the user,
// replace decides: true takes the entry over (the caller then kicks prev),
// false leaves it and returns ErrTaken. prev is the live session replaced,
// ok false when there was none.
func (p *Presence) Claim(ctx context.Context, user string, w Where, replace bool) (prev Where, ok bool, err error) {
	if user == "" {
		return Where{}, false, errors.New("cluster: empty user id")
	}
	key := presenceKey(user)
	val, _ := json.Marshal(w)
	for attempt := 0; ; attempt++ {
		var rev uint64
		prev, ok = Where{}, false
		e, err := p.kv.Get(ctx, key)
		switch {
		case err == nil:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &prev) == nil && p.live(prev) && prev.Session != w.Session {
				ok = true
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return Where{}, false, fmt.Errorf("cluster: presence: %w", err)
		}
		if ok && !replace {
			return prev, true, ErrTaken
		}
		if rev == 0 {
			_, err = p.kv.Create(ctx, key, val)
		} else {
			_, err = p.kv.Update(ctx, key, val, rev)
		}
		if err == nil {
			return prev, ok, nil
		}
		if !isConflict(err) || attempt >= 16 {
			return Where{}, false, fmt.Errorf("cluster: set presence: %w", err)
		}
	}
}

// Move points user's entry at session's new gate after a resume, if the
// entry still names session: a newer login elsewhere is never overwritten.
func (p *Presence) Move(ctx context.Context, user string, w Where) error {
	key := presenceKey(user)
	val, _ := json.Marshal(w)
	for attempt := 0; ; attempt++ {
		e, err := p.kv.Get(ctx, key)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil // logged out, or purged with a dead gate
			}
			return fmt.Errorf("cluster: presence: %w", err)
		}
		var cur Where
		if json.Unmarshal(e.Value(), &cur) != nil || cur.Session != w.Session {
			return nil
		}
		if _, err = p.kv.Update(ctx, key, val, e.Revision()); err == nil {
			return nil
		}
		if !isConflict(err) || attempt >= 16 {
			return fmt.Errorf("cluster: move presence: %w", err)
		}
	}
}

// isConflict reports a compare-and-set that lost to another writer.
func isConflict(err error) bool {
	return isWrongSequence(err) || errors.Is(err, jetstream.ErrKeyExists)
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
	keys, err := p.bus.KVKeys(ctx, p.kv)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, key := range keys {
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
