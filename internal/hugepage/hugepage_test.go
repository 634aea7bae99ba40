package hugepage

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseMode(t *testing.T) {
	for in, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never\n": "always",
		"always madvise [never]\n": "never",
		"always madvise never\n":   "",
		"[]\n":                     "",
		"":                         "",
	} {
		require.Equal(t, want, parseMode([]byte(in)), "%q", in)
	}
}

func TestParseUsage(t *testing.T) {
	u := parseUsage([]byte(`55d0c0a6e000-7ffd5b5f4000 ---p 00000000 00:00 0                          [rollup]
Rss:             1851136 kB
Anonymous:       1800000 kB
AnonHugePages:   1769472 kB
Swap:                  0 kB
`))
	require.Equal(t, Usage{Anon: 1800000 << 10, Huge: 1769472 << 10}, u)
	require.EqualValues(t, (1800000-1769472)<<10, u.Small())
}

const smapsText = `00400000-0066a000 r-xp 00000000 fe:00 1234                               /usr/bin/hearth
Rss:                2000 kB
AnonHugePages:         0 kB
VmFlags: rd ex mr mw me
c000000000-c040000000 rw-p 00000000 00:00 0 
Rss:              900000 kB
AnonHugePages:    100000 kB
VmFlags: rd wr mr mw me ac
c040000000-c040100000 rw-p 00000000 00:00 0 
Rss:                1024 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me ac
7f0000000000-7f0040000000 rw-p 00000000 00:00 0                          [anon: Go: heap]
Rss:              600000 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me ac nh
7f0040000000-7f0080000000 rw-p 00000000 00:00 0                          [anon: Go: heap]
Rss:              600000 kB
AnonHugePages:    598016 kB
VmFlags: rd wr mr mw me ac
7f0080000000-7f00c0000000 rw-s 00000000 00:01 77                         /dev/shm/x
Rss:              600000 kB
AnonHugePages:         0 kB
7f00c0000000-7f0100000000 r--p 00000000 00:00 0 
Rss:              600000 kB
AnonHugePages:         0 kB
10000000000-20000000000 rw-p 00000000 00:00 0 
Rss:              600000 kB
AnonHugePages:         0 kB
7ffd5b5d3000-7ffd5b5f4000 rw-p 00000000 00:00 0                          [stack]
Rss:                 132 kB
AnonHugePages:         0 kB
`

// Only private anonymous writable mappings with a huge page's worth on
// small pages, not marked nh and not sparse reservations, are looked into.
func TestMappings(t *testing.T) {
	var got []mapping
	var picked []uintptr
	parseMappings([]byte(smapsText), func(m *mapping) {
		got = append(got, *m)
		if m.candidate() {
			picked = append(picked, m.lo)
		}
	})
	require.Len(t, got, 9)
	require.Equal(t, mapping{lo: 0xc000000000, hi: 0xc040000000, writable: true, anonymous: true,
		rss: 900000 << 10, huge: 100000 << 10}, got[1])
	require.True(t, got[3].noHuge)
	require.True(t, got[3].anonymous, "a named anonymous mapping is anonymous")
	require.False(t, got[5].writable, "a shared mapping is not private")
	require.False(t, got[5].anonymous)
	require.False(t, got[8].anonymous, "the stack")
	require.Equal(t, []uintptr{0xc000000000}, picked,
		"the text, a mapping under a huge page, one marked nh, one nearly all on huge pages, a shared one, a read-only one, a 1 TiB reservation and the stack are left alone")
}

// A range is collapsed when 15/16 of its small pages are resident, and
// adjacent ones together, up to max.
func TestDense(t *testing.T) {
	per := Size / smallPage
	vec := make([]byte, 10*per+7) // a partial last range is not looked at
	for i := range vec {
		vec[i] = 1
	}
	vec[0] = 0                             // range 0: 511 resident
	for i := range per - denseEnough + 1 { // range 1: one short of dense
		vec[per+i] = 0
	}
	clear(vec[2*per : 3*per]) // range 2: none
	for i := range 3 * per / 4 {
		vec[3*per+i] = 2 // range 3: other bits than residency do not count
	}
	// ranges 4–9 dense, and the partial one after
	type run struct{ i, k int }
	var got []run
	dense(vec, 4, func(i, k int) { got = append(got, run{i, k}) })
	require.Equal(t, []run{{0, 1}, {4, 4}, {8, 2}}, got)
	got = nil
	dense(vec[:3*per], 4, func(i, k int) { got = append(got, run{i, k}) })
	require.Equal(t, []run{{0, 1}}, got)
	got = nil
	dense(vec[4*per:6*per], 4, func(i, k int) { got = append(got, run{i, k}) })
	require.Equal(t, []run{{0, 2}}, got, "a run that ends the vector")
}

// The parsers take whatever the kernel writes: any text gives mappings
// with lo < hi and sizes that are whole kilobytes, and never a panic.
func FuzzParseSmaps(f *testing.F) {
	f.Add([]byte(smapsText))
	f.Add([]byte("Anonymous: 12 kB\nAnonHugePages: 8 kB\n"))
	f.Add([]byte("1-0 rw-p 0 0 0\n"))
	f.Add([]byte("0-1000 rw-p 00000000 00:00 0 [anon:x\nRss: -4 kB\nVmFlags: nh\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseMappings(b, func(m *mapping) {
			if m.lo >= m.hi {
				t.Fatalf("mapping %#x-%#x", m.lo, m.hi)
			}
			if m.rss%1024 != 0 || m.huge%1024 != 0 {
				t.Fatalf("sizes %d, %d not in kilobytes", m.rss, m.huge)
			}
		})
		u := parseUsage(b)
		if u.Anon%1024 != 0 || u.Huge%1024 != 0 {
			t.Fatalf("usage %+v not in kilobytes", u)
		}
		_ = parseMode(b)
	})
}
