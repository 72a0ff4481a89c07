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

fuzz-short:
	@for t in $$($(GO) test -list '^Fuzz' ./internal/record | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/record || exit 1; done
	@for t in $$($(GO) test -list '^Fuzz' ./internal/log | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/log || exit 1; done
	@for t in $$($(GO) test -list '^Fuzz' ./internal/server | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/server || exit 1; done
	@for t in $$($(GO) test -list '^Fuzz' ./internal/txn | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/txn || exit 1; done

# Longer fuzzing, not part of `make test`.
fuzz:
	$(MAKE) fuzz-short FUZZTIME=$(LONGFUZZTIME)

# More crash rounds than `make test` runs.
crash:
	CRASH_ROUNDS=100 $(GO) test -run TestCrash -timeout 60m -v ./internal/crashtest
