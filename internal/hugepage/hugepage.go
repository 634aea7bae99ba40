// Package hugepage moves a process's memory onto 2 MiB pages where the
// machine would leave it on 4 KiB ones.
//
// The Go runtime asks for huge pages for none of its heap, and most Linux
// machines run transparent huge pages in "madvise" mode, in which only
// memory that asks gets them. A game server's heap — gigabytes of
// sessions' replay buffers at 15,000 players — then spans hundreds of
// thousands of 4 KiB pages, written at random as pushes go out, and on a
// virtual machine every miss of the TLB walks two page tables.
//
// A Collapser asks the kernel (MADV_COLLAPSE, Linux 6.1+) to move each
// 2 MiB range of the process's anonymous memory that is already nearly all
// resident onto one huge page. Ranges mostly unused are left alone: a huge
// page there would hold memory the process never touched, or that the Go
// runtime has handed back. It does not mark memory for huge pages
// (MADV_HUGEPAGE): the kernel's khugepaged would then fill such ranges in
// too, which is how Go 1.21.0's use of it grew some programs' memory
// several times over.
//
// Moving memory is not free: the kernel copies each range, and page
// faults of the process wait while it does. At 15,000 Niu Niu bots on two
// cores it cut the late countdowns from 11,808 to 702–829 in an hour when
// the machine's TLB misses were dear, and raised them from ~1,270 to
// 1,630–3,966 in one when they were not (docs/benchmarks.md § bots,
// session 30), so a node runs it only when asked (Config.HugePages).
package hugepage

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
)

// modeFile holds the machine's transparent huge page mode, e.g.
// "always [madvise] never".
const modeFile = "/sys/kernel/mm/transparent_hugepage/enabled"

// Size is a huge page's size: 2 MiB on the machines this serves.
const Size = 2 << 20

// smallPage is the size of a base page.
const smallPage = 4 << 10

// denseEnough is how many of a range's 512 small pages must be resident for
// the range to be collapsed: a huge page then adds at most 1/16 to it.
const denseEnough = Size / smallPage * 15 / 16

// maxScan bounds the mappings a pass looks into: one larger is a sparse
// reservation (the race detector's shadow, say), costly to walk and with
// little to gain.
const maxScan = 64 << 30

// A Collapser keeps a process's dense anonymous memory on huge pages. Its
// zero value is ready to Run.
type Collapser struct {
	// Interval is how often it checks the process's memory. Zero: 1s.
	Interval time.Duration
	// Growth is how much anonymous memory on small pages must appear
	// after a pass for the next pass to start. Zero: 16 MiB.
	Growth int64
	// Log receives a line per pass that moved memory. Zero: no logging.
	Log *slog.Logger

	passes atomic.Int64 // passes run (Run's goroutine writes it)
}

// Passes is how many passes it has run.
func (c *Collapser) Passes() int64 { return c.passes.Load() }

// Run checks the process's memory every Interval until ctx ends, and makes
// a pass whenever its anonymous memory on small pages has grown by Growth
// since the last one; when the last pass left ranges the kernel could not
// move then, after a delay that doubles while they stay (1 to 64
// intervals); and every 64 intervals, for ranges filled in since a pass
// without that much growth.
func (c *Collapser) Run(ctx context.Context) {
	every, growth := c.Interval, c.Growth
	if every <= 0 {
		every = time.Second
	}
	if growth <= 0 {
		growth = 16 << 20
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var after int64 // small-page anonymous memory after the last pass
	retry, backoff := 0, 1
	idle := 0 // intervals since the last pass
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		u, err := ReadUsage()
		if err != nil {
			return // no /proc: nothing to read, nothing to do
		}
		idle++
		due := u.Small() >= after+growth || idle >= 64
		if retry > 0 {
			retry--
			due = due || retry == 0
		}
		if !due {
			continue
		}
		start := time.Now()
		n, failed, err := Pass()
		c.passes.Add(1)
		idle = 0
		if err != nil {
			if c.Log != nil {
				c.Log.Warn("memory stays on small pages", "err", err)
			}
			return
		}
		if failed > 0 {
			retry, backoff = backoff, min(2*backoff, 64)
		} else {
			retry, backoff = 0, 1
		}
		v, _ := ReadUsage()
		after = v.Small()
		if c.Log != nil && v.Huge > u.Huge {
			c.Log.Debug("memory moved onto huge pages", "ranges", n, "failed", failed, "huge_bytes", v.Huge,
				"small_bytes", v.Small(), "took", time.Since(start))
		}
	}
}

// Usage is a process's anonymous memory, as /proc/self/smaps_rollup
// counts it.
type Usage struct {
	Anon int64 // resident anonymous memory
	Huge int64 // the part of Anon on huge pages
}

// Small is the part of the anonymous memory on small pages.
func (u Usage) Small() int64 { return u.Anon - u.Huge }

// parseUsage reads Usage from smaps_rollup's text.
func parseUsage(b []byte) Usage {
	var u Usage
	for line := range bytes.Lines(b) {
		switch name, n := sizeLine(bytes.Fields(line)); name {
		case "Anonymous:":
			u.Anon = n
		case "AnonHugePages:":
			u.Huge = n
		}
	}
	return u
}

// sizeLine reads a "Name: N kB" line of smaps: the name with its colon and
// N in bytes, or "" for another line.
func sizeLine(f [][]byte) (name string, n int64) {
	if len(f) < 2 {
		return "", 0
	}
	kb, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return "", 0
	}
	return string(f[0]), kb << 10
}

// mapping is one of a process's mappings, as /proc/self/smaps lists it.
type mapping struct {
	lo, hi    uintptr
	writable  bool
	anonymous bool  // no file: unnamed, named by its owner ("[anon: Go: heap]"), or brk's "[heap]"
	rss, huge int64 // resident, and on huge pages
	noHuge    bool  // marked never to be on huge pages (VmFlags nh)
}

// candidate reports whether a pass looks into m: private anonymous
// writable memory of which at least a huge page's worth is resident on
// small pages, in a mapping not so large it is a sparse reservation.
func (m *mapping) candidate() bool {
	size := m.hi - m.lo
	return m.anonymous && m.writable && !m.noHuge && size >= Size && size <= maxScan && m.rss-m.huge >= Size
}

// parseMappings calls fn for each mapping of smaps' text.
func parseMappings(b []byte, fn func(m *mapping)) {
	var m mapping
	open := false
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := parseRange(f[0]); ok && len(f) >= 5 {
			if open {
				fn(&m)
			}
			m = mapping{lo: lo, hi: hi, writable: len(f[1]) >= 2 && f[1][1] == 'w' && f[1][len(f[1])-1] == 'p'}
			m.anonymous = len(f) == 5 || bytes.HasPrefix(f[5], []byte("[anon:")) || string(f[5]) == "[heap]"
			open = true
			continue
		}
		if string(f[0]) == "VmFlags:" {
			for _, fl := range f[1:] {
				m.noHuge = m.noHuge || string(fl) == "nh"
			}
			continue
		}
		switch name, n := sizeLine(f); name {
		case "Rss:":
			m.rss = n
		case "AnonHugePages:":
			m.huge = n
		}
	}
	if open {
		fn(&m)
	}
}

// parseRange parses smaps' "lo-hi" address range.
func parseRange(f []byte) (lo, hi uintptr, ok bool) {
	i := bytes.IndexByte(f, '-')
	if i <= 0 {
		return 0, 0, false
	}
	l, err1 := strconv.ParseUint(string(f[:i]), 16, 64)
	h, err2 := strconv.ParseUint(string(f[i+1:]), 16, 64)
	if err1 != nil || err2 != nil || h <= l {
		return 0, 0, false
	}
	return uintptr(l), uintptr(h), true
}

// dense reports, for a mincore vector of whole huge pages, the runs of
// adjacent ranges dense enough to collapse: k ranges from the i-th, at
// most max in a run.
func dense(vec []byte, max int, fn func(i, k int)) {
	per := Size / smallPage
	ranges := len(vec) / per
	run := 0 // dense ranges just before the i-th
	for i := 0; i <= ranges; i++ {
		n := 0
		if i < ranges {
			for _, v := range vec[i*per : (i+1)*per] {
				n += int(v & 1)
			}
		}
		ok := n >= denseEnough
		if run > 0 && (!ok || run == max) {
			fn(i-run, run)
			run = 0
		}
		if ok {
			run++
		}
	}
}

// parseMode picks the selected mode, the bracketed word, out of
// modeFile's text: "" when there is none.
func parseMode(b []byte) string {
	for _, f := range bytes.Fields(b) {
		if len(f) > 2 && f[0] == '[' && f[len(f)-1] == ']' {
			return string(f[1 : len(f)-1])
		}
	}
	return ""
}
