# hearth — the two commands: `make serve` runs a whole cluster in one
# process; `make test` runs the linters, then every test (race detector
# on) and every fuzz target for FUZZTIME each. `make lint` runs gofmt,
# staticcheck and errcheck at pinned versions (scripts/lint.sh installs
# them).

GO       ?= go
FUZZTIME ?= 10s

.PHONY: serve test unit fuzz lint bench build generate

serve:
	$(GO) run ./cmd/hearth serve

test: lint unit fuzz

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

lint:
	GO=$(GO) bash scripts/lint.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./wire ./internal/cluster ./internal/gate

build:
	$(GO) build -o hearth ./cmd/hearth

generate:
	$(GO) generate ./pb
