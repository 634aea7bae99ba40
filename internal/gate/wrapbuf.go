package gate

import "sort"

// wrapBuf is the byte buffer behind a pushRing or a respCache: records
// appended at the end, dropped oldest first, each record contiguous. A
// record is addressed by its offset in everything ever appended (its
// stream offset), which never changes.
//
// It is a queue of chunks, each covering the stream offsets that follow
// the one before. A record goes at the end of the last chunk, or, when it
// does not fit there, at the start of a new one (the last chunk's tail is
// skipped). A chunk whose records have all been dropped is kept for a next
// new chunk, so a buffer at its bound appends without allocating, and
// nothing is ever copied: a buffer that grew by doubling (before) copied
// and zeroed twice what it finally held — at 20,000 sessions filling their
// buffers, a third of the tables node's garbage, and a collection every
// ~15 s whose mark assists stalled the node's pushes (docs/benchmarks.md
// § bots, session 20).
//
// The chunks are pointer-free (the garbage collector marks them without
// scanning them); only the chunk list holds pointers, a few per session.
//
// Its owner's lock guards it.
type wrapBuf struct {
	chunks []wrapChunk // chunks[head:] are in use, oldest first
	head   int
	spares [][]byte // chunks no longer in use, kept for the next ones
	end    int      // the stream offset after the newest record
	in     int      // the bytes of the chunks in use
	spare  int      // the bytes of spares
}

// wrapChunk is a chunk and the stream offset of its first byte.
type wrapChunk struct {
	start int
	b     []byte // len == cap
}

// chunkSize is the usual size of a chunk for a buffer bounded by bound: an
// eighth of it, so that the skipped tails and the partly dropped oldest
// chunk waste little, between 512 bytes and 8 KiB (the number of chunks,
// each an object to mark, stays small); a record larger than that gets a
// chunk of its own size.
func chunkSize(bound int) int {
	return min(max(bound/8, 512), 8<<10)
}

// size is the buffer's capacity: what its owner counts against the gate.
func (w *wrapBuf) size() int { return w.in + w.spare }

// find returns the chunk in use that holds stream offset off.
func (w *wrapBuf) find(off int) *wrapChunk {
	cs := w.chunks[w.head:]
	if last := &cs[len(cs)-1]; off >= last.start {
		return last // the common case: the record just reserved
	}
	i := sort.Search(len(cs), func(i int) bool { return cs[i].start > off }) - 1
	return &cs[i]
}

// bytes returns the n bytes of the record at stream offset off, in place.
func (w *wrapBuf) bytes(off, n int) []byte {
	if n == 0 {
		return nil
	}
	c := w.find(off)
	p := off - c.start
	return c.b[p : p+n]
}

// reserve makes room for a record of n bytes and returns its stream
// offset; the caller writes it with put. Records before start are
// dropped, and the chunks that held only those are released (release).
// It returns how much the buffer's capacity changed. When the record needs
// a new chunk that allow refuses (it reports the growth), the record is
// not placed and ok is false; grow still counts what was released.
func (w *wrapBuf) reserve(n, start, bound int, allow func(grow int) bool) (off, grow int, ok bool) {
	before := w.size()
	w.release(start, bound)
	if n == 0 {
		return w.end, w.size() - before, true
	}
	if len(w.chunks) > w.head {
		last := &w.chunks[len(w.chunks)-1]
		if w.end-last.start+n <= len(last.b) {
			off = w.end
			w.end += n
			return off, w.size() - before, true
		}
	}
	// A first chunk holds exactly its record (a session sent one push
	// keeps no more); each next one is as large as all before it, up to
	// the usual size: a buffer grows as a doubling one did, without the
	// copies.
	size := max(n, min(chunkSize(bound), w.in))
	var b []byte
	if k := len(w.spares) - 1; k >= 0 && len(w.spares[k]) >= n {
		b = w.spares[k]
		w.spares[k] = nil
		w.spares = w.spares[:k]
		w.spare -= len(b)
	} else {
		if allow != nil && !allow(w.size()-before+size) {
			return 0, w.size() - before, false
		}
		b = make([]byte, size)
	}
	off = w.end
	if len(w.chunks) > w.head {
		last := &w.chunks[len(w.chunks)-1]
		off = last.start + len(last.b) // the last chunk's tail is skipped
	}
	if w.head > 0 && len(w.chunks) == cap(w.chunks) {
		// The released front is reused, not carried along.
		n := copy(w.chunks, w.chunks[w.head:])
		clear(w.chunks[n:])
		w.chunks, w.head = w.chunks[:n], 0
	}
	w.chunks = append(w.chunks, wrapChunk{start: off, b: b})
	w.in += len(b)
	w.end = off + n
	return off, w.size() - before, true
}

// release drops the chunks in use that end at or before start, keeping
// the newest chunk (the next record may fit in it). A released chunk of
// about the buffer's usual size (half to twice it) is kept as a spare
// while the buffer stays within 1.25 × its bound (and a chunk); others —
// the small first chunks, a large record's own — and spares past a fallen
// bound are let go. "About": the usual size follows the bound, and a
// connected session's bound (its share of the gate's budget) moves by a
// few bytes whenever a session comes or goes; an exact match let nearly
// every chunk go, and a new one was made for the next.
func (w *wrapBuf) release(start, bound int) {
	usual := chunkSize(bound)
	limit := bound + bound/4 + usual
	for w.head < len(w.chunks)-1 {
		c := &w.chunks[w.head]
		if c.start+len(c.b) > start {
			break
		}
		w.in -= len(c.b)
		if len(c.b) >= usual/2 && len(c.b) <= 2*usual && w.size()+len(c.b) <= limit {
			w.spares = append(w.spares, c.b)
			w.spare += len(c.b)
		}
		*c = wrapChunk{}
		w.head++
	}
	if start == w.end && w.head < len(w.chunks) {
		// Empty: its one chunk starts again at the end.
		w.chunks[w.head].start = w.end
	}
	for k := len(w.spares) - 1; k >= 0 && w.size() > limit; k-- {
		w.spare -= len(w.spares[k])
		w.spares[k] = nil
		w.spares = w.spares[:k]
	}
}

// put writes b at stream offset off and returns the offset after it.
func (w *wrapBuf) put(off int, b []byte) int {
	if len(b) == 0 {
		return off
	}
	c := w.find(off)
	copy(c.b[off-c.start:], b)
	return off + len(b)
}

// putString is put for a string.
func (w *wrapBuf) putString(off int, s string) int {
	if s == "" {
		return off
	}
	c := w.find(off)
	copy(c.b[off-c.start:], s)
	return off + len(s)
}
