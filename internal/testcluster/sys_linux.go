package testcluster

import "syscall"

// sysProcAttr makes the kernel kill a node process if the process that
// started it dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
