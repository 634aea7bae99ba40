package wire

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"testing"
)

// checker is the small subset of testify's require that these tests use.
// testify is not usable here without changing go.mod/go.sum (testify v1.12
// needs go.yaml.in/yaml/v3), and wire's tests must not depend on that; the
// call sites read the same as with testify.
type checker struct{}

var require checker

func fail(t testing.TB, what string, msg []any) {
	t.Helper()
	if len(msg) > 0 {
		if f, ok := msg[0].(string); ok {
			what += "\n" + fmt.Sprintf(f, msg[1:]...)
		} else {
			what += "\n" + fmt.Sprint(msg...)
		}
	}
	t.Fatal(what)
}

func (checker) Equal(t testing.TB, want, got any, msg ...any) {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		fail(t, fmt.Sprintf("not equal:\nwant %#v\ngot  %#v", want, got), msg)
	}
}

func (checker) NoError(t testing.TB, err error, msg ...any) {
	t.Helper()
	if err != nil {
		fail(t, fmt.Sprintf("unexpected error: %v", err), msg)
	}
}

func (checker) Error(t testing.TB, err error, msg ...any) {
	t.Helper()
	if err == nil {
		fail(t, "expected an error", msg)
	}
}

// Same checks that two pointers (or errors holding pointers) are identical.
func (checker) Same(t testing.TB, want, got any, msg ...any) {
	t.Helper()
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	if !wv.IsValid() || !gv.IsValid() || wv.Kind() != reflect.Pointer || gv.Kind() != reflect.Pointer ||
		wv.Type() != gv.Type() || wv.Pointer() != gv.Pointer() {
		fail(t, fmt.Sprintf("not the same:\nwant %T %v\ngot  %T %v", want, want, got, got), msg)
	}
}

func (checker) Len(t testing.TB, v any, n int, msg ...any) {
	t.Helper()
	if l := reflect.ValueOf(v).Len(); l != n {
		fail(t, fmt.Sprintf("length %d, want %d", l, n), msg)
	}
}

func (checker) Zero(t testing.TB, v any, msg ...any) {
	t.Helper()
	if v != nil && !reflect.ValueOf(v).IsZero() {
		fail(t, fmt.Sprintf("not zero: %v", v), msg)
	}
}

func (checker) True(t testing.TB, v bool, msg ...any) {
	t.Helper()
	if !v {
		fail(t, "not true", msg)
	}
}

func (checker) False(t testing.TB, v bool, msg ...any) {
	t.Helper()
	if v {
		fail(t, "not false", msg)
	}
}

func (checker) Nil(t testing.TB, v any, msg ...any) {
	t.Helper()
	if v != nil && !reflect.ValueOf(v).IsNil() {
		fail(t, fmt.Sprintf("not nil: %v", v), msg)
	}
}

func (checker) Less(t testing.TB, a, b int, msg ...any) {
	t.Helper()
	if a >= b {
		fail(t, fmt.Sprintf("%d is not less than %d", a, b), msg)
	}
}

func (checker) Regexp(t testing.TB, re *regexp.Regexp, s string, msg ...any) {
	t.Helper()
	if !re.MatchString(s) {
		fail(t, fmt.Sprintf("%q does not match %s", s, re), msg)
	}
}

func (checker) ErrorIs(t testing.TB, err, target error, msg ...any) {
	t.Helper()
	if !errors.Is(err, target) {
		fail(t, fmt.Sprintf("error %v is not %v", err, target), msg)
	}
}

func (checker) NotErrorIs(t testing.TB, err, target error, msg ...any) {
	t.Helper()
	if errors.Is(err, target) {
		fail(t, fmt.Sprintf("error %v is %v", err, target), msg)
	}
}

func (checker) ErrorAs(t testing.TB, err error, target any, msg ...any) {
	t.Helper()
	if !errors.As(err, target) {
		fail(t, fmt.Sprintf("error %v is not a %T", err, target), msg)
	}
}
