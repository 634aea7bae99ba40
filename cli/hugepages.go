package cli

import (
	"fmt"
	"io"
	"strings"
)

// hugePagesFile holds the machine's transparent huge page mode, e.g.
// "always [madvise] never".
const hugePagesFile = "/sys/kernel/mm/transparent_hugepage/enabled"

// parseHugePages picks the selected mode, the bracketed word, out of
// hugePagesFile's text: "" when there is none.
func parseHugePages(s string) string {
	for f := range strings.FieldsSeq(s) {
		if len(f) > 2 && f[0] == '[' && f[len(f)-1] == ']' {
			return f[1 : len(f)-1]
		}
	}
	return ""
}

// hugePagesHint tells the operator of a machine whose transparent huge
// page mode is not "always" what it costs and how to change it. The Go
// runtime asks for huge pages for none of its heap, so under any other
// mode a server's heap — gigabytes of sessions' replay buffers at 15,000
// players — is on 4 KiB pages, and on a virtual machine every miss of the
// TLB walks two page tables. At 15,000 Niu Niu bots on two cores that made
// 8,049–17,516 countdowns late against 222–335 with "always"
// (docs/benchmarks.md § bots, session 29). Off Linux, or where the file
// cannot be read (mode ""), it says nothing.
func hugePagesHint(w io.Writer, mode string) {
	if mode == "" || mode == "always" {
		return
	}
	fmt.Fprintf(w, "note:  transparent huge pages are %q here, so the server's heap is on 4 KiB pages and under load\n", mode)
	fmt.Fprintf(w, "       its pushes run late; for a production server: echo always > %s\n", hugePagesFile)
	fmt.Fprintf(w, "       (as root; docs/operations.md § Transparent huge pages)\n")
}
