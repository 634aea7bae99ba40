package hugepage

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mode is the machine's transparent huge page mode: "always", "madvise"
// or "never"; "" when it cannot be read.
func Mode() string {
	b, err := os.ReadFile(modeFile)
	if err != nil {
		return ""
	}
	return parseMode(b)
}

// ReadUsage reads the process's anonymous memory.
func ReadUsage() (Usage, error) {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return Usage{}, err
	}
	return parseUsage(b), nil
}

// window is how much of a mapping one mincore call covers: 64 MiB, a
// 16 KiB vector.
const window = 64 << 20

// maxRun is the most huge pages' worth one MADV_COLLAPSE asks for. Each
// call first drains every CPU's page lists, which waits for each CPU to
// run the kernel's worker — on a busy machine, milliseconds — so adjacent
// dense ranges go in one call; the bound keeps a call's hold on the
// process's address space (page faults wait on it) short.
const maxRun = 8

// Pass asks the kernel to move each dense 2 MiB range of the process's
// anonymous memory onto a huge page. It returns how many ranges it asked
// for (ranges already on one included: the kernel finds those at once) and
// how many of those the kernel could not move now: no huge page was free,
// or some of the range's pages were busy. A kernel without MADV_COLLAPSE
// (before 6.1) makes it return an error.
func Pass() (asked, failed int, err error) {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, 0, err
	}
	vec := make([]byte, window/smallPage)
	done, refused := 0, 0
	parseMappings(b, func(m *mapping) {
		if !m.candidate() {
			return
		}
		lo := (m.lo + Size - 1) &^ (Size - 1)
		hi := m.hi &^ (Size - 1)
		skip := false // the kernel refused this mapping
		for a := lo; a < hi && !skip; a += window {
			size := min(window, hi-a)
			v := vec[:size/smallPage]
			// The mapping may have been unmapped since smaps was read:
			// ENOMEM then, and the pass goes on with the next.
			if _, _, e := unix.Syscall(unix.SYS_MINCORE, a, size, uintptr(unsafe.Pointer(&v[0]))); e != 0 {
				return
			}
			dense(v, maxRun, func(i, k int) {
				if skip {
					return
				}
				_, _, e := unix.Syscall(unix.SYS_MADVISE, a+uintptr(i)*Size, uintptr(k)*Size, unix.MADV_COLLAPSE)
				asked += k
				switch e {
				case 0:
					done++
				case unix.EINVAL:
					// An advice this kernel does not know, or a mapping it
					// will not put on huge pages.
					refused++
					skip = true
				default:
					failed += k // EAGAIN or ENOMEM: worth another try later
				}
			})
		}
	})
	if done == 0 && refused > 0 {
		return asked, failed, errNoCollapse
	}
	return asked, failed, nil
}

// errNoCollapse: every range asked for was refused.
var errNoCollapse = errors.New("the kernel refused to move memory onto huge pages (MADV_COLLAPSE needs Linux 6.1)")

// Region reports how much of the mapping that holds b's first byte is
// resident, and how much of that is on huge pages.
func Region(b []byte) (rss, huge int64, err error) {
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, 0, err
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	found := false
	parseMappings(smaps, func(m *mapping) {
		if m.lo <= addr && addr < m.hi {
			rss, huge, found = m.rss, m.huge, true
		}
	})
	if !found {
		return 0, 0, errors.New("no mapping holds the memory")
	}
	return rss, huge, nil
}

// MapSmall maps n huge pages' worth of memory aligned to a huge page, as a
// mapping of its own, with every small page touched and, whatever the
// machine's mode, none of it on a huge page: memory a Pass moves. Tests
// use it to watch one happen.
func MapSmall(n int) (b []byte, unmap func() error, err error) {
	raw, err := unix.Mmap(-1, 0, (n+1)*Size+smallPage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, err
	}
	unmap = func() error { return unix.Munmap(raw) }
	// At least a page is left over on either side, and becomes a guard, so
	// that the kernel does not merge the mapping with a neighbour and smaps
	// counts it alone.
	base := uintptr(unsafe.Pointer(&raw[0]))
	skip := int((base+smallPage+Size-1)&^(Size-1) - base)
	b = raw[skip : skip+n*Size]
	err = errors.Join(unix.Mprotect(raw[:skip], unix.PROT_NONE), unix.Mprotect(raw[skip+n*Size:], unix.PROT_NONE))
	always := Mode() == "always"
	if err == nil && always {
		// Faults would get huge pages at once: touch under nh, then lift it.
		err = unix.Madvise(b, unix.MADV_NOHUGEPAGE)
	}
	if err != nil {
		return nil, nil, errors.Join(err, unmap())
	}
	for i := 0; i < len(b); i += smallPage {
		b[i] = 1
	}
	if always {
		if err := unix.Madvise(b, unix.MADV_HUGEPAGE); err != nil {
			return nil, nil, errors.Join(err, unmap())
		}
	}
	return b, unmap, nil
}
