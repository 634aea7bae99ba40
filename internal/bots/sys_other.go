//go:build !linux

package bots

import "time"

// selfCPU is unknown off Linux.
func selfCPU() time.Duration { return 0 }

// raiseFDLimit reports no limit where it cannot read it.
func raiseFDLimit() (uint64, error) { return 1 << 20, nil }

// loadAverage is unknown off Linux.
func loadAverage() string { return "" }
