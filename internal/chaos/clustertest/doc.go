// Package clustertest is the cluster chaos test (TestChaos, in the test
// files): three `sluice serve` processes on 127.0.0.11-13, every connection
// between them and from clients through a fault-injecting proxy
// (internal/chaos/proxy), idempotent acks=all producers and live consumers
// writing and reading a topic of 3 partitions with replication factor 3 and
// min.insync.replicas=2, while a seeded nemesis (internal/chaos/nemesis)
// kill -9s and restarts, SIGSTOPs, isolates, one-way partitions and delays
// nodes, the active controller and partition leaders among them. Meanwhile
// an operator keeps reassigning the topic's partitions
// (AlterPartitionReassignments, KIP-455; operator_test.go): with three
// brokers nothing can move to a new one, so it cycles each partition in
// turn from 3 replicas to 2 (dropping one picked by the seed, sometimes the
// leader) and back to 3 (the dropped broker copying the log again,
// sometimes first in the list so that the preferred leader changes),
// sometimes cancelling a reassignment in flight, and one stuck for 15 s;
// its requests fail while the controller is unreachable, which it logs and
// retries, never failing the test.
//
// With CHAOS_DRAIN=1 a fourth node joins, broker-only
// (process.roles=broker: the quorum stays the three voters, the case of
// capacity added to a cluster), and a drain operator takes the cycling
// operator's place (drain_test.go): it drains one broker after another
// (picked by the seed, never the one the last drain emptied), moving
// every replica of the topic off it onto the broker that held none with
// AlterPartitionReassignments (the replicas' order kept, so that a leader
// not drained keeps leading; a drained leader's partition gets a
// remaining in-sync replica first, its new preferred leader), until the
// active controller's Metadata shows the drained broker in no partition's
// replicas, ISR or leadership, within 45 s; some drains it cancels in
// flight. The topic keeps replication factor 3 and min.insync.replicas=2
// throughout.
//
// After the last fault the test heals everything, stops the operator and
// restores every partition to 3 replicas with no reassignment under way
// (cancelling what is, growing back what is short, within 90 s), waits
// for every partition to have a leader and a full ISR (as the active
// controller sees it: another node's metadata may lag), reads every
// partition back from offset 0, then stops each node cleanly in turn and
// reads again from the leaders left, then makes each replica that never
// led during that rotation the leader in turn (a reassignment putting it
// first, a preferred leader election) and reads its partition from it, so
// that every replica's log on every node is compared, not only the last
// leader's. It judges the run with internal/chaos/checker;
// internal/chaos/availability measures how much of it the cluster took
// writes.
//
// Layout of one node i (1 to 3, and 4 with CHAOS_DRAIN=1), all on
// loopback:
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
// fault (only by a node that is down or stopped). Node 4, broker-only, has
// no controller listener, so no controller proxy (127.0.0.34 stays
// unused): it reaches the voters through their controller proxies, and
// the active controller sends it the metadata log on its Kafka listener,
// through its Kafka proxy on 127.0.0.24, so that the nemesis's network
// faults cut it off as they do the others.
//
// Running it:
//
//	go test ./internal/chaos/clustertest              # short: CHAOS_ROUNDS=4
//	make chaos                                        # CHAOS_ROUNDS=40, then CHAOS_DRAIN=1 with 20
//	CHAOS_SEED=123 CHAOS_ROUNDS=10 go test -v -run TestChaos ./internal/chaos/clustertest
//	CHAOS_DRAIN=1 CHAOS_ROUNDS=6 go test -v -run TestChaos ./internal/chaos/clustertest
//
// Environment: CHAOS_ROUNDS (faults, default 4), CHAOS_SEED (the seed of the
// nemesis's faults and the operator's choices, default from the clock; every
// run prints it; timing still varies what the operator finds to do),
// CHAOS_REASSIGN (1, the default, runs the operator; 0 leaves the replicas
// alone), CHAOS_DRAIN (1 runs four nodes and the drain operator; 0, the
// default, three nodes and the cycling operator), CHAOS_REPORT (a file the
// one-line JSON summary is appended to; "reassignments" in it counts the
// partition reassignments the operator started, completed and cancelled,
// and with CHAOS_DRAIN=1 "drains" counts the drains started, completed,
// cancelled, timed out and interrupted by the end of the faults, and
// lists the brokers drained), CHAOS_LOGDIR (where the nodes' output and data dirs go, kept;
// by default a temporary dir kept only when the test fails),
// CHAOS_CLIENT_LOG (the clients' log level in the event log: error, warn
// (default), info or debug). -short skips the test.
package clustertest
