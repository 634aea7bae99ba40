#!/usr/bin/env bash
# make lint: gofmt, staticcheck (its default checks include unused) and
# errcheck (with the exclusions in scripts/errcheck-excludes.txt), at the
# versions pinned here, and go vet for darwin and windows. The tools are
# installed with `go install` into a cache directory on first use;
# `lint.sh --install` only installs them.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2
ERRCHECK=github.com/kisielk/errcheck@v1.30.0
TOOLS=${HEARTH_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth-tools}

# tool MODULE@VERSION prints the path of the installed binary, installing it
# first if this version is not there yet.
tool() {
  local dir="$TOOLS/${1//\//_}" name
  name=$(basename "${1%@*}")
  if [ ! -x "$dir/$name" ]; then
    echo "lint: installing $1" >&2
    GOBIN="$dir" "$GO" install "$1" >&2
  fi
  echo "$dir/$name"
}

staticcheck=$(tool "$STATICCHECK")
errcheck=$(tool "$ERRCHECK")
if [ "${1:-}" = --install ]; then
  exit 0
fi

status=0
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt: not formatted (run gofmt -w):"
  echo "$unformatted"
  status=1
fi
echo "staticcheck ./..."
"$staticcheck" ./... || status=1
echo "errcheck ./..."
"$errcheck" -exclude scripts/errcheck-excludes.txt ./... || status=1
# The gate and the client have Linux-only files (epoll); the rest must
# still build, and vet, where those are left out.
for os in darwin windows; do
  echo "GOOS=$os go vet ./..."
  GOOS=$os "$GO" vet ./... || status=1
done
if [ $status -ne 0 ]; then
  echo "lint: findings above"
fi
exit $status
