package gate

import (
	"errors"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// pushRing keeps the most recent pushes of a session, bounded by count and
// bytes (entrySize), in two allocations the garbage collector neither
// scans nor follows: the entries (no pointers) and one buffer holding their
// routes, ids, origins and payloads. A slice per payload and a string per
// route were, at 256 pushes kept for each of 10,000 sessions, over a
// million objects to mark on every cycle; the mark phase took 0.6–0.9 s on
// two cores, and the requests that allocated during it waited on it
// (docs/benchmarks.md § bots, session 8). Only a payload several sessions
// share (replayPayloads) stays a slice of its own, in shared.
//
// The session's mu guards it.
type pushRing struct {
	ents []ringEntry // ents[head:] are kept, oldest first
	head int
	// data holds the kept entries' bytes in order; an entry's off is its
	// stream offset there.
	data wrapBuf
	// shared are the shared payloads of the kept entries that have one,
	// in the entries' order (shared[sharedHead:]).
	shared     []sharedRef
	sharedHead int

	bytes int // what the kept entries count against the session's bound
	// overflowed: a push could not be kept while the client was not
	// connected; the session can no longer be resumed whole.
	overflowed bool
	lastGap    uint64 // the last push_seq skipped for a lost channel message
	// acked is the last push_seq the client has shown it read (its PONG to
	// a PING queued after it): those pushes never need replaying, and go
	// once ackedKeep old.
	acked uint64
}

// ringEntry is one kept push: its numbers, and where its strings and
// payload are in the ring's data. An entry with a shared payload has its
// strings in data and its payload in the ring's shared.
type ringEntry struct {
	seq, count              uint64
	at                      int64 // unix ns when kept
	off                     int
	route, id, origin, body uint32 // lengths; body is 0 for a shared payload
	isShared                bool
}

type sharedRef struct {
	payload []byte
	ref     *sharedPayload
}

// entryOverhead is what a kept push costs besides its bytes: its entry,
// and as much again for the slice, which append grows to at most twice the
// entries it holds.
const entryOverhead = 2 * int(unsafe.Sizeof(ringEntry{}))

func (r *pushRing) len() int { return len(r.ents) - r.head }

// entrySize is what a push counts against its session's bound: its slot,
// its strings and its payload (all of a shared one).
func entrySize(e *pushEntry) int {
	n := entryOverhead + len(e.Route) + len(e.ID) + len(e.Origin)
	if e.shared != nil {
		return n + cap(e.Payload)
	}
	return n + len(e.Payload)
}

// add appends e. When full it drops its oldest entries as far as floor:
// a connected session's client has most likely read them all (floor: the
// maximum), a resuming one has read up to its last_push, a detached one
// may have read none (floor 0). Past the floor it reports overflow, since
// dropping would lose a push the client never saw. gate counts what every
// ring of the gate holds: slots, buffers, and a shared payload once.
func (r *pushRing) add(e pushEntry, maxItems, maxBytes int, floor uint64, gate *atomic.Int64) (overflow bool) {
	now := time.Now().UnixNano()
	r.dropAcked(now, gate)
	body := len(e.Payload)
	if e.shared != nil {
		body = 0
	}
	size := entrySize(&e)
	disconnected := floor == 0
	for r.len() > 0 && (r.len()+1 > maxItems || r.bytes+size > maxBytes) {
		if r.ents[r.head].seq > floor {
			return true
		}
		r.dropOldest(gate)
	}
	if size > maxBytes && disconnected {
		return true
	}
	n := len(e.Route) + len(e.ID) + len(e.Origin) + body
	start := r.data.end // everything dropped
	if r.len() > 0 {
		start = r.ents[r.head].off
	}
	off, grow, _ := r.data.reserve(n, start, maxBytes, nil)
	gate.Add(int64(grow))
	x := ringEntry{
		seq: e.Seq, count: e.Count, at: now, off: off,
		route: uint32(len(e.Route)), id: uint32(len(e.ID)), origin: uint32(len(e.Origin)), body: uint32(body),
		isShared: e.shared != nil,
	}
	off = r.data.putString(off, e.Route)
	off = r.data.putString(off, e.ID)
	off = r.data.putString(off, e.Origin)
	if e.shared == nil {
		r.data.put(off, e.Payload)
	} else {
		if r.sharedHead > 0 && len(r.shared) == cap(r.shared) {
			// The dropped front is reused, as for ents.
			n := copy(r.shared, r.shared[r.sharedHead:])
			clear(r.shared[n:])
			r.shared, r.sharedHead = r.shared[:n], 0
		}
		r.shared = append(r.shared, sharedRef{e.Payload, e.shared})
	}
	if r.head > 0 && len(r.ents) == cap(r.ents) {
		r.ents = r.ents[:copy(r.ents, r.ents[r.head:])]
		r.head = 0
	}
	r.ents = append(r.ents, x)
	r.bytes += size
	gate.Add(int64(e.hold()))
	return false
}

// ackedKeep is how long a push the client has acknowledged stays kept: a
// hand-over looks among the kept pushes for channel messages already
// delivered (has, and the new gate's seen), and its copies come at most
// handoverTimeout late.
const ackedKeep = handoverTimeout

// ack records that the client has read every push up to seq, and drops
// those kept longer than ackedKeep.
func (r *pushRing) ack(seq uint64, gate *atomic.Int64) {
	r.acked = max(r.acked, seq)
	r.dropAcked(time.Now().UnixNano(), gate)
}

// dropAcked drops the oldest entries while they are acknowledged and
// older than ackedKeep. With ResumeAckBytes, a connected client that
// answers PINGs (every conforming one) so keeps a few seconds of pushes,
// not its share of the gate's budget: at 15,000 Niu Niu bots that share
// was ~35 KB a session, 600 MB of heap in all, into which every push was
// copied (docs/benchmarks.md § bots, session 31).
func (r *pushRing) dropAcked(now int64, gate *atomic.Int64) {
	for r.len() > 0 && r.ents[r.head].seq <= r.acked && now-r.ents[r.head].at > int64(ackedKeep) {
		r.dropOldest(gate)
	}
}

func (r *pushRing) dropOldest(gate *atomic.Int64) {
	x := &r.ents[r.head]
	size := entryOverhead + int(x.route+x.id+x.origin+x.body)
	e := pushEntry{}
	if x.isShared {
		s := &r.shared[r.sharedHead]
		e.Payload, e.shared = s.payload, s.ref
		size += cap(s.payload)
		*s = sharedRef{}
		r.sharedHead++
	}
	r.bytes -= size
	gate.Add(-int64(e.release()))
	r.head++
	if r.head == len(r.ents) {
		r.ents, r.head = r.ents[:0], 0
	}
}

// clear drops every entry, as the session ends or leaves the gate.
func (r *pushRing) clear(gate *atomic.Int64) {
	for r.len() > 0 {
		r.dropOldest(gate)
	}
	gate.Add(-int64(r.data.size()))
	*r = pushRing{overflowed: r.overflowed, lastGap: r.lastGap, acked: r.acked}
}

// str returns length n of data from stream offset off as a string.
func (r *pushRing) str(off int, n uint32) string {
	return string(r.data.bytes(off, int(n)))
}

// has reports whether the channel message id is among the kept pushes.
func (r *pushRing) has(id string) bool {
	for i := len(r.ents) - 1; i >= r.head; i-- {
		x := &r.ents[i]
		if int(x.id) == len(id) && string(r.data.bytes(x.off+int(x.route), len(id))) == id {
			return true
		}
	}
	return false
}

// gapAt records that push seq was lost.
func (r *pushRing) gapAt(seq uint64) { r.lastGap = seq }

// entries returns copies of the kept pushes: payloads of their own, which
// stay as they are whatever the ring does next; a shared payload stays
// shared.
func (r *pushRing) entries() []pushEntry { return r.entriesFrom(0) }

// entriesFrom is entries from the k-th (counted from the oldest) on.
func (r *pushRing) entriesFrom(k int) []pushEntry {
	out := make([]pushEntry, 0, r.len()-k)
	sh := r.sharedHead
	for i, x := range r.ents[r.head:] {
		var ref sharedRef
		if x.isShared {
			ref = r.shared[sh]
			sh++
		}
		if i < k {
			continue
		}
		off := x.off
		e := pushEntry{Seq: x.seq, Count: x.count, Route: r.str(off, x.route)}
		off += int(x.route)
		e.ID = r.str(off, x.id)
		off += int(x.id)
		e.Origin = r.str(off, x.origin)
		off += int(x.origin)
		if x.isShared {
			e.Payload, e.shared = ref.payload, ref.ref
		} else {
			e.Payload = make([]byte, x.body)
			copy(e.Payload, r.data.bytes(off, int(x.body)))
		}
		out = append(out, e)
	}
	return out
}

// after returns the entries with Seq > last, or an error saying why some
// of those cannot be replayed.
func (r *pushRing) after(last, current uint64) ([]pushEntry, error) {
	switch {
	case last > current:
		return nil, errors.New("last_push " + strconv.FormatUint(last, 10) + " is beyond the last push this session sent (" + strconv.FormatUint(current, 10) + ")")
	case r.overflowed:
		return nil, errors.New("pushes missed beyond what the server kept while disconnected")
	case r.lastGap > last:
		return nil, errors.New("a push after last_push was lost (the gate fell behind a channel)")
	case last == current:
		return nil, nil
	case r.len() == 0 || r.ents[r.head].seq > last+1:
		return nil, errors.New("pushes missed beyond what the server kept")
	}
	// Found by number, not by arithmetic: a lost channel message takes a
	// number and leaves no entry (gapAt), so seqs kept before last may skip.
	kept := r.ents[r.head:]
	return r.entriesFrom(sort.Search(len(kept), func(i int) bool { return kept[i].seq > last })), nil
}
