// Package nbio reads and writes non-blocking sockets without handing the
// goroutine's P to the scheduler for the system call.
//
// syscall.Read and syscall.Write tell the runtime they may block
// (entersyscall): that wakes the scheduler's monitor (sysmon) if it sleeps,
// and sysmon may take the P from a call that spans two of its ticks
// (20 µs or more) and wake another thread to run it. A socket set
// O_NONBLOCK never blocks, so a raw call, which keeps the P, loses
// nothing; the runtime preempts the goroutine as for any other code once
// it is back. Measured alone at 10,000 bots on a machine slow at system
// calls, it changed neither the system calls nor the context switches a
// round (docs/benchmarks.md § bots, session 43): the gate's poller, which
// blocked a thread in epoll_wait, was what handed Ps between threads.
//
// Use it only on descriptors set O_NONBLOCK (every socket the net package
// makes, through syscall.RawConn): a call that blocks would hold its P
// for as long.
package nbio
