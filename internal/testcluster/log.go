package testcluster

import (
	"io"
	"strings"
	"sync"
)

// LogTail keeps the last lines written to it (a process's stderr), and
// counts them. It is safe for concurrent use: mu guards every field.
type LogTail struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  []byte // a line not ended yet
	count int
}

// NewLogTail keeps the last n lines.
func NewLogTail(n int) *LogTail { return &LogTail{max: n} }

func (l *LogTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.part = append(l.part, p...)
	for {
		i := strings.IndexByte(string(l.part), '\n')
		if i < 0 {
			break
		}
		l.count++
		l.lines = append(l.lines, string(l.part[:i]))
		if len(l.lines) > l.max {
			l.lines = l.lines[1:]
		}
		l.part = l.part[i+1:]
	}
	if len(l.part) > 64<<10 {
		l.part = l.part[:0] // one absurdly long line: drop it rather than grow
	}
	return len(p), nil
}

// Count is the number of lines written.
func (l *LogTail) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// String is the lines kept, indented, or "(nothing)".
func (l *LogTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 && len(l.part) == 0 {
		return "  (nothing)"
	}
	lines := l.lines
	if len(l.part) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(l.part))
	}
	return "  " + strings.Join(lines, "\n  ")
}

// teeLog is a process's stderr with ProcConfig.LogFile: the tail, and the
// file with its errors dropped (see LogFile).
type teeLog struct {
	tail *LogTail
	file io.Writer
}

func (t *teeLog) Write(p []byte) (int, error) {
	_, _ = t.file.Write(p)
	return t.tail.Write(p)
}
