# Sluice. `make test` is what CI runs (see .ci/run).
GO ?= go
# FUZZTIME bounds each fuzz target in `make test`: a count of executions
# (about 5-10 s each here), not a duration, because go1.26's fuzz coordinator
# can fail a duration-bounded run with "context deadline exceeded" on a
# loaded machine (golang/go#75804, fixed in go1.27). `make fuzz` runs longer.
FUZZTIME ?= 50000x
LONGFUZZTIME ?= 5m

.PHONY: test unit interop registry-interop franz-go interop-cluster franz-go-cluster kafka-go fuzz-short fuzz crash chaos build vet

build:
	$(GO) build -o bin/sluice ./cmd/sluice

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal)" || (gofmt -l cmd internal; echo "gofmt needed"; exit 1)

# Every test: unit and integration tests (race detector on), the crash
# test, the cross-client interop scripts (Kafka clients; schema registry
# clients), and each fuzz target briefly.
test: vet unit interop registry-interop franz-go interop-cluster franz-go-cluster kafka-go fuzz-short

unit:
	$(GO) test -race -timeout 20m ./...

interop:
	./scripts/interop.sh

# The schema registry with clients nobody here wrote: kafkajs with
# @kafkajs/confluent-schema-registry (Avro, JSON Schema, Confluent's wire
# format through the broker), confluent-kafka's SchemaRegistryClient.
registry-interop:
	./scripts/registry-interop.sh

franz-go:
	./scripts/franz-suite.sh

# The same clients against a 3-node cluster (replication factor 3).
interop-cluster:
	CLUSTER_NODES=3 ./scripts/interop.sh

franz-go-cluster:
	CLUSTER_NODES=3 ./scripts/franz-suite.sh

# segmentio/kafka-go's own admin tests (reassignments, elections, partition
# adds, configs) and Client tests, against 3 nodes so that reassignments and
# elections move replicas between brokers.
kafka-go:
	CLUSTER_NODES=3 ./scripts/kafkago-suite.sh

# Packages with fuzz targets (every decoder of network or disk bytes).
FUZZPKGS ?= record log server txn partition metadata broker group backup schemareg collect audit mirror sink/format

fuzz-short:
	@for p in $(FUZZPKGS); do \
		for t in $$($(GO) test -list '^Fuzz' ./internal/$$p | grep ^Fuzz); do \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./internal/$$p || exit 1; done; done

# Longer fuzzing, not part of `make test`.
fuzz:
	$(MAKE) fuzz-short FUZZTIME=$(LONGFUZZTIME)

# More crash rounds than `make test` runs: SIGKILLs of `sluice serve` (at
# random, at segment rolls, inside clean shutdowns and log cleaner passes,
# next to the minute's recovery checkpoint, with transactions open), and
# power cuts (only what was fsynced survives) of the in-process broker.
POWERLOSS_ROUNDS ?= 60
crash:
	CRASH_ROUNDS=100 CRASH_ROLL_ROUNDS=100 CRASH_CHECKPOINT_ROUNDS=4 CRASH_COMPACT_ROUNDS=100 CRASH_TXN_OPEN_ROUNDS=60 \
		$(GO) test -run TestCrash -timeout 60m -v ./internal/crashtest
	POWERLOSS_ROUNDS=$(POWERLOSS_ROUNDS) $(GO) test -run TestPowerLoss -timeout 60m -v ./internal/powerloss

# The cluster chaos test, longer than `make test` runs it: CHAOS_ROUNDS
# faults (kill -9, SIGSTOP, isolation, one-way partitions, delays) on a
# 3-node cluster under idempotent acks=all producers, then the checker;
# then CHAOS_DRAIN_ROUNDS faults on 4 nodes while brokers are drained
# (CHAOS_DRAIN=1).
# CHAOS_SEED=N replays a run's faults; CHAOS_REPORT=file gets its summary.
CHAOS_ROUNDS ?= 40
CHAOS_DRAIN_ROUNDS ?= 20
chaos:
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(GO) test -run TestChaos -count=1 -timeout 60m -v ./internal/chaos/clustertest
	CHAOS_DRAIN=1 CHAOS_ROUNDS=$(CHAOS_DRAIN_ROUNDS) $(GO) test -run TestChaos -count=1 -timeout 60m -v ./internal/chaos/clustertest
