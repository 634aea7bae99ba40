package cli

import (
	"fmt"
	"io"
)

// hugePagesHint tells the operator when the server's heap will be on 4 KiB
// pages: the machine's transparent huge page mode is "never", or it is
// "madvise" (the Go runtime asks for huge pages for none of its heap) and
// the node was not told to ask for them itself (on: --huge-pages). On a
// virtual machine whose TLB misses are dear, such a heap made pushes run
// late under load: at 15,000 Niu Niu bots on two cores, 8,049–17,516
// countdowns late against 222–335 under "always" (docs/benchmarks.md
// § bots, session 29). Under "always", or "madvise" with the node asking,
// or off Linux (mode ""), it says nothing.
func hugePagesHint(w io.Writer, mode string, on bool) {
	var fix string
	switch {
	case mode == "never":
		fix = "echo always > /sys/kernel/mm/transparent_hugepage/enabled (as root)"
	case mode == "madvise" && !on:
		fix = "echo always > /sys/kernel/mm/transparent_hugepage/enabled (as root), or --huge-pages"
	default:
		return
	}
	fmt.Fprintf(w, "note:  transparent huge pages are %q here, so the server's heap is on 4 KiB pages;\n", mode)
	fmt.Fprintf(w, "       on a busy virtual machine that can make its pushes run late under load.\n")
	fmt.Fprintf(w, "       For a production server: %s\n", fix)
	fmt.Fprintf(w, "       (docs/operations.md § Transparent huge pages)\n")
}
