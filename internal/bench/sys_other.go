//go:build !linux

package bench

import (
	"errors"
	"time"
)

var errNoProc = errors.New("reading another process's CPU and memory needs Linux /proc; use --addr with --admin-url")

func raiseFDLimit(need uint64) (uint64, error) { return need, nil }

func fdHardLimit() uint64 { return 0 }

func procRSS(int) (int64, error) { return 0, errNoProc }

func procCPU(int) (time.Duration, error) { return 0, errNoProc }

func selfCPU() time.Duration { return 0 }

func ReadMachine() MachineTimes { return MachineTimes{} }

func gcOnSignal() {}

func signalGC(int) error { return errNoProc }

func listenerPID(int) int { return 0 }
