package cli

import "os"

// TransparentHugePages is this machine's transparent huge page mode:
// "always", "madvise" or "never"; "" when it cannot be read.
func TransparentHugePages() string {
	b, err := os.ReadFile(hugePagesFile)
	if err != nil {
		return ""
	}
	return parseHugePages(string(b))
}
