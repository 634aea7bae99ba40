// Package nbio reads and writes non-blocking sockets without handing the
// goroutine's P to the scheduler for the system call.
//
// syscall.Read and syscall.Write tell the runtime they may block
// (entersyscall): sysmon then takes the P from a call that spans two of
// its ticks (20 µs or more) and wakes another thread to run it, and the
// caller, back from the kernel, must win a P again. A socket set
// O_NONBLOCK never blocks, but on a machine slow at system calls (page
// table isolation without PCID, ~1 µs a call, ~10 µs a loopback write) a
// write often spans two ticks: a server of 10,000 players saw its sysmon
// wake 3,600 times a second and hand Ps between threads with futex calls
// for writes that were never going to block. A raw call keeps the P; the
// runtime preempts the goroutine as for any other code once it is back.
//
// Use it only on descriptors set O_NONBLOCK (every socket the net package
// makes, through syscall.RawConn): a call that blocks would hold its P
// for as long.
package nbio
