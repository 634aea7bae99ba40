//go:build !linux

package client

import (
	"context"
	"errors"
	"time"
)

var errNoPoller = errors.New("hearth client: a Poller needs Linux (epoll)")

// pollLoop does not exist here: NewPoller fails.
type pollLoop struct{}

func newPollLoop(time.Duration) (*pollLoop, error)                    { return nil, errNoPoller }
func (*pollLoop) stop()                                               {}
func (*pollLoop) add(*Client, *conn) bool                             { return false }
func isPolled(transport) bool                                         { return false }
func dialPolled(context.Context, string, *Options) (transport, error) { return nil, errNoPoller }
