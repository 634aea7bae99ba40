//go:build !linux

package cli

// TransparentHugePages is "" off Linux: the setting is Linux's.
func TransparentHugePages() string { return "" }
