//go:build unix && !linux

package nbio

import "syscall"

// Read is read(2); off Linux it goes through the scheduler's system call
// path.
func Read(fd int, p []byte) (int, error) { return syscall.Read(fd, p) }

// Write is write(2); off Linux it goes through the scheduler's system
// call path.
func Write(fd int, p []byte) (int, error) { return syscall.Write(fd, p) }
