// Package testcluster starts hearth nodes as separate processes — a
// binary's `serve`, or a wrapper around it — on a shared NATS server or on
// the first node's embedded NATS, waits until they serve, and stops, kills
// and reads the logs of them. The end-to-end tests (internal/e2e) and the
// benches (internal/bench) start their clusters with it.
package testcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// ErrKilled is wrapped by Stop when a process did not exit within its
// grace and had to be killed.
var ErrKilled = errors.New("did not exit in time; killed")

// ProcConfig is one process to start.
type ProcConfig struct {
	// Binary is the program to run.
	Binary string
	// Args are all its arguments: `serve` and its flags, or a wrapper such
	// as `bench server -- …`. It must print serve's listener lines.
	Args []string
	// ID names the process in errors. Zero: Binary's base name.
	ID string
	// Env is added to this process's environment. Nil: none.
	Env []string
	// LogLines is how many of its last stderr lines are kept. Zero: 1000.
	LogLines int
	// LogFile, if set, also gets all of its stderr, as it comes. Its
	// write errors are dropped: a full disk must not stop the pipe from
	// draining, which would block the process. The caller closes it once
	// the process has exited (Stop, Kill or ExitErr returned). Nil: none.
	LogFile io.Writer
	// ReadyTimeout is how long it has to print its listeners. Zero: 60s.
	ReadyTimeout time.Duration
}

// Proc is one running node process. Its fields are set before StartProc
// returns and never change; its methods are safe for concurrent use.
type Proc struct {
	ID    string
	TCP   string   // tcp://host:port, "" without a TCP listener
	WS    string   // ws://host:port/ws, "" without a WebSocket listener
	Admin string   // http://host:port, "" without an admin listener
	NATS  string   // nats://… of its embedded NATS when it listens, else ""
	Log   *LogTail // its stderr

	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has exited
	waitErr error         // written before exited is closed
}

// embeddedNATS finds the URL in serve's "nats   embedded, listening on URL,
// data in DIR" line.
var embeddedNATS = regexp.MustCompile(`listening on ((?:nats|tls)://[^\s,]+)`)

// StartProc runs a process and returns once it has printed its listener
// lines (serve prints them when it is ready), or with an error that ends
// with its log when it exits, ctx ends or ReadyTimeout passes first. The
// caller stops it (Stop or Kill); the kernel kills it if this process
// dies first.
func StartProc(ctx context.Context, cfg ProcConfig) (*Proc, error) {
	if cfg.ID == "" {
		cfg.ID = filepath.Base(cfg.Binary)
	}
	if cfg.LogLines == 0 {
		cfg.LogLines = 1000
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	cmd := exec.Command(cfg.Binary, cfg.Args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.SysProcAttr = sysProcAttr()
	p := &Proc{ID: cfg.ID, Log: NewLogTail(cfg.LogLines), cmd: cmd, exited: make(chan struct{})}
	cmd.Stderr = p.Log
	if cfg.LogFile != nil {
		cmd.Stderr = &teeLog{tail: p.Log, file: cfg.LogFile}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s %s): %w", cfg.ID, cfg.Binary, strings.Join(cfg.Args, " "), err)
	}
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()

	ready := make(chan error, 1)
	go func() {
		ready <- p.readListeners(stdout)
		_, _ = io.Copy(io.Discard, stdout) // keep the pipe drained
	}()
	timeout := time.NewTimer(cfg.ReadyTimeout)
	defer timeout.Stop()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout.C:
		err = fmt.Errorf("not serving after %s", cfg.ReadyTimeout)
	}
	if err != nil {
		_ = p.Kill()
		return nil, fmt.Errorf("node %s: %w; its log:\n%s", cfg.ID, err, p.Log)
	}
	return p, nil
}

// readListeners reads serve's listener lines up to the last one ("nats").
func (p *Proc) readListeners(stdout io.Reader) error {
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "tcp":
			p.TCP = f[1]
		case "ws":
			p.WS = f[1]
		case "admin":
			p.Admin = f[1]
		case "nats":
			if m := embeddedNATS.FindStringSubmatch(sc.Text()); m != nil {
				p.NATS = m[1]
			}
			if p.Admin == "" {
				return errors.New("printed no admin listener")
			}
			return nil
		}
	}
	<-p.exited
	return fmt.Errorf("exited before serving (%v)", p.waitErr)
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// ExitErr is how the process ended (as exec.Cmd.Wait says); valid once
// Exited is closed.
func (p *Proc) ExitErr() error {
	<-p.exited
	return p.waitErr
}

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM (serve drains and exits) and waits up to grace for the
// process to exit, then kills it and returns an error wrapping ErrKilled.
// A process that has exited already is left alone.
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("node %s: SIGTERM, then %s: %w", p.ID, grace, ErrKilled)
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Proc) Kill() error {
	if !p.Running() {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", p.ID, err)
	}
	<-p.exited
	return nil
}

// RunWithBinary is a TestMain body: it builds the main package pkg into a
// temporary directory, sets *bin to the binary's path, runs m (a
// *testing.M) and removes the directory. TestMain exits with what it
// returns.
func RunWithBinary(m interface{ Run() int }, pkg string, bin *string) int {
	dir, err := os.MkdirTemp("", "hearth-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := 1
	*bin = filepath.Join(dir, filepath.Base(pkg))
	if err := Build(pkg, *bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return code
}

// Build compiles the main package pkg (a path go build understands) to the
// file out.
func Build(pkg, out string) error {
	b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
