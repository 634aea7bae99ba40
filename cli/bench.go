package cli

import (
	"context"
	"fmt"
)

func bench(ctx context.Context, args []string, opts Options) int {
	fmt.Fprintln(opts.Stderr, "hearth bench: not built yet")
	return 2
}
