// Package clustertest is the cluster chaos test (TestChaos, in the test
// files): three `sluice serve` processes on 127.0.0.11-13, every connection
// between them and from clients through a fault-injecting proxy
// (internal/chaos/proxy), idempotent acks=all producers and live consumers
// writing and reading a topic of 3 partitions with replication factor 3 and
// min.insync.replicas=2, while a seeded nemesis (internal/chaos/nemesis)
// kill -9s and restarts, SIGSTOPs, isolates, one-way partitions and delays
// nodes, the active controller and partition leaders among them. After the
// last fault it heals everything, waits for every partition to have a
// leader and a full ISR, reads every partition back from offset 0, then
// stops each node cleanly in turn and reads again from the leaders left
// (so that every replica's log is compared, not only the last leader's),
// and judges the run with internal/chaos/checker;
// internal/chaos/availability measures how much of it the cluster took
// writes.
//
// Layout of one node i (1 to 3), all on loopback:
//
//	node i                   127.0.0.(10+i): Kafka, controller and HTTP listeners;
//	                         its outgoing connections bound to this address
//	Kafka proxy of node i    127.0.0.(20+i): node i's --advertised-address
//	controller proxy of i    127.0.0.(30+i): named for node i in the others'
//	                         --controller-quorum-voters
//	clients                  127.0.0.1, through the Kafka proxies
//
// so every connection between nodes crosses a proxy, which tells the nodes
// apart by source address, and clients are never cut off by a network
// fault (only by a node that is down or stopped).
//
// Running it:
//
//	go test ./internal/chaos/clustertest              # short: CHAOS_ROUNDS=4
//	make chaos                                        # CHAOS_ROUNDS=40
//	CHAOS_SEED=123 CHAOS_ROUNDS=10 go test -v -run TestChaos ./internal/chaos/clustertest
//
// Environment: CHAOS_ROUNDS (faults, default 4), CHAOS_SEED (the nemesis's
// seed, default from the clock; every run prints it), CHAOS_REPORT (a file
// the one-line JSON summary is appended to), CHAOS_LOGDIR (where the nodes'
// output and data dirs go, kept; by default a temporary dir kept only when
// the test fails), CHAOS_CLIENT_LOG (the clients' log level in the event
// log: error, warn (default), info or debug). -short skips the test.
package clustertest
