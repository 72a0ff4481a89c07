package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// A plan entry may name, as kafka-reassign-partitions does, the log dir of
// each replica on its broker ("log_dirs": ["any", "/disk2/sluice", ...], in
// the order of "replicas"). The dirs are sent with AlterReplicaLogDirs to
// each broker before the reassignment (a replica not there yet is created
// in its dir: the broker remembers it and answers REPLICA_NOT_AVAILABLE)
// and again once it is done (for a broker restarted meanwhile); then the
// command waits until no replica of the plan is still being copied between
// dirs (DescribeLogDirs' future replicas).

// anyLogDir leaves a replica's log dir to its broker.
const anyLogDir = "any"

// checkLogDirs checks an entry's log_dirs against its replicas.
func checkLogDirs(e PlanEntry) error {
	if len(e.LogDirs) == 0 {
		return nil
	}
	if len(e.LogDirs) != len(e.Replicas) {
		return fmt.Errorf("%d log_dirs for %d replicas (one per replica, \"any\" to leave it to the broker)", len(e.LogDirs), len(e.Replicas))
	}
	for _, d := range e.LogDirs {
		if d != anyLogDir && !filepath.IsAbs(d) {
			return fmt.Errorf("log dir %q: want an absolute path or \"any\"", d)
		}
	}
	return nil
}

// logDirRequests groups the plan's named log dirs by broker.
func logDirRequests(plan Plan) map[int32]kadm.AlterReplicaLogDirsReq {
	out := map[int32]kadm.AlterReplicaLogDirsReq{}
	for _, e := range plan.Partitions {
		for i, d := range e.LogDirs {
			if d == anyLogDir {
				continue
			}
			req, ok := out[e.Replicas[i]]
			if !ok {
				req = kadm.AlterReplicaLogDirsReq{}
				out[e.Replicas[i]] = req
			}
			req.Add(d, kadm.TopicsSet{e.Topic: {e.Partition: {}}})
		}
	}
	return out
}

// sendLogDirs sends the plan's log dirs to their brokers. REPLICA_NOT_AVAILABLE
// (the replica is not on that broker yet) is not an error.
func sendLogDirs(ctx context.Context, adm *kadm.Client, plan Plan) (int, error) {
	var failed []string
	sent := 0
	reqs := logDirRequests(plan)
	ids := make([]int32, 0, len(reqs))
	for id := range reqs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		res, err := adm.AlterBrokerReplicaLogDirs(ctx, id, reqs[id])
		if err != nil {
			return sent, fmt.Errorf("log dirs on broker %d: %w", id, err)
		}
		res.Each(func(r kadm.AlterReplicaLogDirsResponse) {
			sent++
			if r.Err != nil && !errors.Is(r.Err, kerr.ReplicaNotAvailable) {
				failed = append(failed, fmt.Sprintf("%s-%d to %s on broker %d: %v", r.Topic, r.Partition, r.Dir, id, r.Err))
			}
		})
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return sent, fmt.Errorf("log dirs refused: %s", strings.Join(failed, "; "))
	}
	return sent, nil
}

// placement is a replica in a log dir.
type placement struct {
	broker    int32
	topic     string
	partition int32
	dir       string
}

// finishLogDirs sends the log dirs again and waits until no replica of the
// plan is still copied between log dirs, printing the bytes copied.
func finishLogDirs(ctx context.Context, w io.Writer, adm *kadm.Client, plan Plan) error {
	reqs := logDirRequests(plan)
	if len(reqs) == 0 {
		return nil
	}
	if _, err := sendLogDirs(ctx, adm, plan); err != nil {
		return err
	}
	set := kadm.TopicsSet{}
	for _, e := range plan.Partitions {
		set.Add(e.Topic, e.Partition)
	}
	var wanted []placement
	for _, e := range plan.Partitions {
		for i, d := range e.LogDirs {
			if d != anyLogDir {
				wanted = append(wanted, placement{e.Replicas[i], e.Topic, e.Partition, filepath.Clean(d)})
			}
		}
	}
	last := ""
	for {
		dirs, err := adm.DescribeAllLogDirs(ctx, set)
		if err != nil {
			return fmt.Errorf("log dirs: %w", err)
		}
		moving, copied := 0, int64(0)
		placed := map[placement]bool{}
		dirs.Each(func(d kadm.DescribedLogDir) {
			d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
				if p.IsFuture {
					moving++
					copied += p.Size
					return
				}
				placed[placement{d.Broker, p.Topic, p.Partition, filepath.Clean(d.Dir)}] = true
			})
		})
		// No future replica is not enough: a broker that has not started
		// a move yet lists none either. Every replica the plan names a dir
		// for must be listed there.
		for _, want := range wanted {
			if !placed[want] {
				moving++
			}
		}
		if moving == 0 {
			fmt.Fprintln(w, "Every replica is in the log dir the plan names.")
			return nil
		}
		line := fmt.Sprintf("Moving between log dirs: %s, %s copied", clientopts.Count(moving, "replica", "replicas"), mib(copied))
		if line != last {
			fmt.Fprintln(w, line)
			last = line
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(progressInterval):
		}
	}
}
