package gate

// wrapBuf is the byte buffer behind a pushRing or a respCache: records
// appended at the end, dropped oldest first, each record contiguous, in one
// allocation that wraps around. A record is addressed by its offset in
// everything ever appended (its stream offset), which never changes; its
// place in buf is that offset's distance from base, modulo len(buf).
//
// Nothing is copied as records come and go: only when the buffer must
// grow, or shrink because its bound did, are the live records copied, in
// order, to the start of a new one. A buffer that slid its contents to the
// front instead (as before) copied everything it held every few appends
// once it ran near its bound — at 20,000 sessions the gates' largest single
// cost after the socket writes (docs/benchmarks.md § bots, session 9).
//
// Its owner's lock guards it.
type wrapBuf struct {
	buf  []byte // len(buf) == cap(buf)
	base int    // the stream offset that falls on buf[0]
	end  int    // the stream offset after the newest record
}

// at is where stream offset off falls in buf.
func (w *wrapBuf) at(off int) int { return (off - w.base) % len(w.buf) }

// bytes returns the n bytes of the record at stream offset off, in place.
func (w *wrapBuf) bytes(off, n int) []byte {
	if n == 0 {
		return nil
	}
	p := w.at(off)
	return w.buf[p : p+n]
}

// size is the buffer's capacity: what its owner counts against the gate.
func (w *wrapBuf) size() int { return len(w.buf) }

// next reports where a record of n bytes would go, and whether it fits
// without reallocation. start is the stream offset of the oldest record
// kept (end when none): everything before it may be overwritten.
func (w *wrapBuf) next(n, start int) (off int, fits bool) {
	c := len(w.buf)
	if c == 0 {
		return w.end, false
	}
	if start == w.end {
		w.base = w.end // empty: start again at buf[0]
	}
	off = w.end
	if p := w.at(off); p+n > c {
		off += c - p // a record never wraps: skip to buf[0]
	}
	return off, off+n-start <= c
}

// grown is the capacity a reallocation gives a buffer of capacity c that
// must hold need bytes: a first buffer exactly that (a session sent one
// push keeps no more), then twice that, up to limit. Each growth copies
// the whole contents, so it doubles: at 20,000 sessions growing by a
// quarter, buffers filling up copied more than the pushes that filled them.
func grown(c, need, limit int) int {
	if c == 0 {
		return need
	}
	return max(min(max(2*need, 64), limit), need)
}

// reserve makes room for a record of n bytes and returns its stream
// offset; the caller writes it with put. Records before start are
// dropped. bound is what the owner keeps at most: the buffer grows to at
// most 1.25 × bound (or n) — and by less than one record more when the
// live records include the end of the buffer a record skipped. When bound
// falls, the buffer is reallocated smaller once it is half as large again
// as that: a session's bound (its share of the gate's) falls a little with
// each session that arrives, and a buffer that shrank at once would be
// copied at every push. It returns how much the buffer's capacity changed,
// and does nothing but report the growth, with ok false, when allow
// refuses it.
func (w *wrapBuf) reserve(n, start, bound int, allow func(grow int) bool) (off, grow int, ok bool) {
	if n == 0 {
		return w.end, 0, true
	}
	limit := max(bound+bound/4, n)
	if off, fits := w.next(n, start); fits && len(w.buf) <= limit+limit/2 {
		w.end = off + n
		return off, 0, true
	}
	live := w.end - start
	c := grown(len(w.buf), live+n, limit)
	grow = c - len(w.buf)
	if grow > 0 && allow != nil && !allow(grow) {
		return 0, grow, false
	}
	buf := make([]byte, c)
	if live > 0 {
		// The live records, in stream order: up to two pieces.
		p := w.at(start)
		k := copy(buf, w.buf[p:min(p+live, len(w.buf))])
		copy(buf[k:live], w.buf)
	}
	w.buf, w.base = buf, start
	off = w.end
	w.end = off + n
	return off, grow, true
}

// put writes b at stream offset off and returns the offset after it.
func (w *wrapBuf) put(off int, b []byte) int {
	if len(b) == 0 {
		return off
	}
	copy(w.buf[w.at(off):], b)
	return off + len(b)
}

// putString is put for a string.
func (w *wrapBuf) putString(off int, s string) int {
	if s == "" {
		return off
	}
	copy(w.buf[w.at(off):], s)
	return off + len(s)
}
