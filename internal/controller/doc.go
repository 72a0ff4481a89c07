// Package controller makes the cluster's decisions on the metadata: where
// replicas go (placement), who leads each partition (election), who is in
// sync (AlterPartition), which brokers are alive (registration, heartbeats,
// fencing after broker.session.timeout.ms) and how a broker leaves
// (controlled shutdown). It runs on the active controller (the metadata
// quorum's Raft leader) and reaches brokers only through metadata records;
// brokers act on the image those records build.
//
// The decisions are pure functions (Place, ElectLeader) so they are tested
// without a quorum; the Controller type applies them to the metadata
// store.
package controller
