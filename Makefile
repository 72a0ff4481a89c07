# Sluice. `make test` is what CI runs (see .ci/run).
GO ?= go
# FUZZTIME bounds each fuzz target in `make test`; `make fuzz` runs longer.
FUZZTIME ?= 10s
LONGFUZZTIME ?= 5m

.PHONY: test unit interop franz-go fuzz-short fuzz crash build vet

build:
	$(GO) build -o bin/sluice ./cmd/sluice

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal)" || (gofmt -l cmd internal; echo "gofmt needed"; exit 1)

# Every test: unit and integration tests (race detector on), the crash
# test, the cross-client interop script, and each fuzz target briefly.
test: vet unit interop franz-go fuzz-short

unit:
	$(GO) test -race -timeout 20m ./...

interop:
	./scripts/interop.sh

franz-go:
	./scripts/franz-suite.sh

# Packages with fuzz targets (every decoder of network or disk bytes).
FUZZPKGS ?= record log server txn partition metadata broker

fuzz-short:
	@for p in $(FUZZPKGS); do \
		for t in $$($(GO) test -list '^Fuzz' ./internal/$$p | grep ^Fuzz); do \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/$$p || exit 1; done; done

# Longer fuzzing, not part of `make test`.
fuzz:
	$(MAKE) fuzz-short FUZZTIME=$(LONGFUZZTIME)

# More crash rounds than `make test` runs.
crash:
	CRASH_ROUNDS=100 $(GO) test -run TestCrash -timeout 60m -v ./internal/crashtest
