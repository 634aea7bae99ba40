//go:build !linux

package gate

import "log/slog"

// readPoller exists on Linux only (epoll); elsewhere every session keeps a
// goroutine blocked on its connection.
type readPoller struct{}

func newReadPoller(*slog.Logger) (*readPoller, error) { return nil, nil }

func (*readPoller) close() {}

func (s *Session) polled() bool               { return false }
func (s *Session) wake()                      {}
func (s *Session) servePolled(*readSlot) bool { return true } // never called: polled is false
func (s *Session) resumeReads(*readSlot)      {}
