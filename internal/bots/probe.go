package bots

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"time"
)

// machineProbe is what two of the server's basic operations cost on this
// machine just before a run: a system call that does nothing (getpid), and
// a 300-byte write to a loopback TCP socket that another goroutine reads —
// what each push costs the gate in the kernel. Each is the fastest of a
// few batches: a batch another process interrupted says nothing of the
// machine. On a VM both vary from day to day with the host (on the
// development VM a system call took ~1 µs, ten times bare metal's), and
// every figure of a run with them: runs are comparable only on days whose
// probes agree.
type machineProbe struct {
	SyscallNS       float64 `json:"syscall_ns"`
	LoopbackWriteNS float64 `json:"loopback_write_ns"`
}

// Probe sizes: each figure is the fastest of probeBatches batches, so a
// batch that another process interrupted does not count; the whole probe
// takes a fraction of a second.
const (
	probeBatches  = 5
	probeSyscalls = 40_000 // a batch
	probeWrites   = 4_000  // a batch
	probeWrite    = 300
)

// probeMachine measures a machineProbe.
func probeMachine() (*machineProbe, error) {
	p := &machineProbe{SyscallNS: math.Inf(1), LoopbackWriteNS: math.Inf(1)}
	for range probeBatches {
		t0 := time.Now()
		for range probeSyscalls {
			_ = os.Getpid() // a system call each time: Go does not cache it
		}
		p.SyscallNS = min(p.SyscallNS, float64(time.Since(t0).Nanoseconds())/probeSyscalls)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	defer ln.Close()
	read := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			read <- err
			return
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		if want := int64(probeBatches * probeWrites * probeWrite); err == nil && n != want {
			err = fmt.Errorf("read %d bytes of %d", n, want)
		}
		read <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	msg := make([]byte, probeWrite)
	for range probeBatches {
		t0 := time.Now()
		for range probeWrites {
			if _, err := c.Write(msg); err != nil {
				c.Close()
				return nil, fmt.Errorf("probe: write: %w", err)
			}
		}
		p.LoopbackWriteNS = min(p.LoopbackWriteNS, float64(time.Since(t0).Nanoseconds())/probeWrites)
	}
	if err := c.Close(); err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	if err := <-read; err != nil && !errors.Is(err, net.ErrClosed) {
		return nil, fmt.Errorf("probe: read: %w", err)
	}
	return p, nil
}
