package e2e

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestGroupBench measures, in one run against an in-process broker
// (group.initial.rebalance.delay.ms=0), each figure BENCHMARKS.md's
// "Consumer groups" section quotes, SLUICE_BENCH_ROUNDS times (default 3):
//   - join to stable: N kgo members (classic protocol, cooperative-sticky,
//     heartbeat 100 ms) created at once on a new group of a 60-partition
//     topic, from the first kgo.NewClient until every member has been given
//     partitions and together they hold each partition exactly once, and
//     DescribeGroups says the group is Stable with N members;
//   - offset commits per second: one kadm client committing one partition's
//     offset in a loop for 5 s, each commit answered after its fsync;
//   - coordinator load: 100,000 committed offsets (100 groups x 10 topics x
//     100 partitions), broker stopped and reopened on the same data, time
//     from reopening until an OffsetFetch of every group answers without
//     COORDINATOR_LOAD_IN_PROGRESS.
//
// Not part of `make test`:
//
//	SLUICE_BENCH_GROUPS=1 go test -run TestGroupBench -v -timeout 30m ./internal/e2e
func TestGroupBench(t *testing.T) {
	if os.Getenv("SLUICE_BENCH_GROUPS") == "" {
		t.Skip("set SLUICE_BENCH_GROUPS=1 to run")
	}
	rounds := 3
	if n, err := fmt.Sscan(os.Getenv("SLUICE_BENCH_ROUNDS"), &rounds); n != 1 || err != nil || rounds < 1 {
		rounds = 3
	}
	dir := t.TempDir()
	tb := start(t, dir, "", groupConfigs)
	adm := tb.admin()

	// Join to stable.
	const joinPartitions = 60
	createTopic(t, adm, "join", joinPartitions, nil)
	// One untimed member first, so the first timed round is not also the
	// first client to fetch the topic's metadata.
	warm := tb.member(t, newWatch(), "join-warmup", "join")
	warm.w.until(t, "the warm-up member's assignment", func() bool { return len(warm.partitions()) == joinPartitions })
	warm.close()
	for _, n := range []int{1, 10, 50} {
		var ds []time.Duration
		for r := 0; r < rounds; r++ {
			w := newWatch()
			group := fmt.Sprintf("join-%d-%d", n, r)
			members := make([]*groupMember, 0, n)
			t0 := time.Now()
			for i := 0; i < n; i++ {
				members = append(members, tb.member(t, w, group, "join", kgo.Balancers(kgo.CooperativeStickyBalancer())))
			}
			w.until(t, fmt.Sprintf("%d members to split", n), func() bool { return split(members, joinPartitions) })
			for {
				described, err := adm.DescribeGroups(ctxT(t), group)
				if err != nil {
					t.Fatal(err)
				}
				if d := described[group]; d.State == "Stable" && len(d.Members) == n {
					break
				}
				time.Sleep(time.Millisecond)
			}
			ds = append(ds, time.Since(t0))
			for _, m := range members {
				m.close()
			}
		}
		t.Logf("join to stable, %d members: median %v of %v", n, median(ds).Round(time.Millisecond), ds)
	}

	// Offset commits per second.
	createTopic(t, adm, "commits", 1, nil)
	for r := 0; r < rounds; r++ {
		const window = 5 * time.Second
		n := 0
		t0 := time.Now()
		for time.Since(t0) < window {
			var offs kadm.Offsets
			offs.Add(kadm.Offset{Topic: "commits", Partition: 0, At: int64(n), LeaderEpoch: -1})
			resp, err := adm.CommitOffsets(ctxT(t), "committer", offs)
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				t.Fatalf("commit: %v", err)
			}
			n++
		}
		t.Logf("offset commits: %d in %v = %.0f/s", n, time.Since(t0).Round(time.Millisecond), float64(n)/time.Since(t0).Seconds())
	}

	// Coordinator load of 100,000 committed offsets.
	const topics, parts, groups = 10, 100, 100
	for i := 0; i < topics; i++ {
		createTopic(t, adm, fmt.Sprintf("load-%d", i), parts, nil)
	}
	t0 := time.Now()
	for g := 0; g < groups; g++ {
		var offs kadm.Offsets
		for i := 0; i < topics; i++ {
			for p := int32(0); p < parts; p++ {
				offs.Add(kadm.Offset{Topic: fmt.Sprintf("load-%d", i), Partition: p, At: int64(g*1000 + int(p)), LeaderEpoch: -1})
			}
		}
		resp, err := adm.CommitOffsets(ctxT(t), fmt.Sprintf("load-g%d", g), offs)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	t.Logf("committed %d offsets in %v", topics*parts*groups, time.Since(t0).Round(time.Millisecond))
	addr := tb.addr
	var opens, loads []time.Duration
	for r := 0; r < rounds; r++ {
		tb.stop()
		t0 := time.Now()
		tb = start(t, dir, addr, groupConfigs)
		opened := time.Since(t0)
		cl := tb.client()
		pending := map[string]bool{}
		for g := 0; g < groups; g++ {
			pending[fmt.Sprintf("load-g%d", g)] = true
		}
		tries := 0
		for len(pending) > 0 {
			for g := range pending {
				req := kmsg.NewPtrOffsetFetchRequest()
				req.Group = g
				rg := kmsg.NewOffsetFetchRequestGroup()
				rg.Group = g
				req.Groups = append(req.Groups, rg)
				resp, err := cl.Broker(1).Request(ctxT(t), req)
				if err != nil {
					t.Fatalf("offset fetch: %v", err)
				}
				fr := resp.(*kmsg.OffsetFetchResponse)
				tries++
				code, topicsResp := fr.ErrorCode, fr.Topics
				if len(fr.Groups) == 1 { // v8+
					code = fr.Groups[0].ErrorCode
					topicsResp = nil
					for _, gt := range fr.Groups[0].Topics {
						tp := kmsg.NewOffsetFetchResponseTopic()
						tp.Topic = gt.Topic
						for _, gp := range gt.Partitions {
							tp.Partitions = append(tp.Partitions, kmsg.OffsetFetchResponseTopicPartition{Partition: gp.Partition, Offset: gp.Offset, ErrorCode: gp.ErrorCode})
						}
						topicsResp = append(topicsResp, tp)
					}
				}
				switch err := kerr.ErrorForCode(code); err {
				case nil:
					n := 0
					for _, tp := range topicsResp {
						for _, p := range tp.Partitions {
							if p.ErrorCode == kerr.CoordinatorLoadInProgress.Code {
								n = -1 << 30
							}
							n++
						}
					}
					if n == topics*parts {
						delete(pending, g)
					} else if n >= 0 {
						t.Fatalf("group %s: %d offsets after restart, want %d", g, n, topics*parts)
					}
				case kerr.CoordinatorLoadInProgress:
				default:
					t.Fatalf("group %s: %v", g, err)
				}
			}
		}
		loaded := time.Since(t0)
		opens = append(opens, opened)
		loads = append(loads, loaded)
		t.Logf("restart %d: broker open %v, every group's OffsetFetch answered %v after opening began (%d fetches)", r, opened.Round(time.Millisecond), loaded.Round(time.Millisecond), tries)
		cl.Close()
	}
	t.Logf("coordinator load of %d offsets: median open %v, median until loaded %v", topics*parts*groups, median(opens).Round(time.Millisecond), median(loads).Round(time.Millisecond))
}
