package nbio

import "errors"

// errUnsupported is every call's error on Windows, where a socket is a
// handle the net package drives with overlapped I/O: callers fall back to
// the connection's own Read and Write.
var errUnsupported = errors.New("nbio: not supported on windows")

// Read always fails on Windows; see errUnsupported.
func Read(int, []byte) (int, error) { return 0, errUnsupported }

// Write always fails on Windows; see errUnsupported.
func Write(int, []byte) (int, error) { return 0, errUnsupported }
