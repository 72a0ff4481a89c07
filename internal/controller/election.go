package controller

import "slices"

// ElectLeader picks a partition's leader as Kafka's controller does
// (PartitionChangeBuilder): the first replica, in assignment order, that is
// in the ISR and usable (registered, not fenced, not shutting down). The
// assignment order makes the first replica the preferred leader, so leaders
// spread as placement intended whenever it is eligible.
//
// With no such replica and unclean set (unclean.leader.election.enable),
// the first usable replica outside the ISR is chosen and unclean is
// reported: records the ISR had that it lacks are lost, which is why
// Kafka and Sluice leave it off by default. Otherwise the partition has no
// leader (-1) until an ISR member comes back.
func ElectLeader(replicas, isr []int32, usable func(int32) bool, unclean bool) (leader int32, wasUnclean bool) {
	for _, r := range replicas {
		if slices.Contains(isr, r) && usable(r) {
			return r, false
		}
	}
	if unclean {
		for _, r := range replicas {
			if usable(r) {
				return r, true
			}
		}
	}
	return -1, false
}
