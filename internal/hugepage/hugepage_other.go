//go:build !linux

package hugepage

import "errors"

// Mode is "" off Linux: transparent huge pages are Linux's.
func Mode() string { return "" }

var errNotLinux = errors.New("huge pages are moved only on Linux")

// ReadUsage fails off Linux.
func ReadUsage() (Usage, error) { return Usage{}, errNotLinux }

// Pass does nothing off Linux.
func Pass() (asked, failed int, err error) { return 0, 0, errNotLinux }

// Region fails off Linux.
func Region(b []byte) (rss, huge int64, err error) { return 0, 0, errNotLinux }
