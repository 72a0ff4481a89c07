package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTxnSmoke: commit one transaction, abort another, restart, and read
// back with both isolation levels, with the KIP-98 protocol
// (transaction.version 1) and KIP-890 part 2 (2, the default).
func TestTxnSmoke(t *testing.T) {
	for _, tv := range []string{"1", "2"} {
		t.Run("transaction.version="+tv, func(t *testing.T) { testTxnSmoke(t, map[string]string{"transaction.version": tv}) })
	}
}

func testTxnSmoke(t *testing.T, static map[string]string) {
	dir := t.TempDir()
	tb := start(t, dir, "", static)
	createTopic(t, tb.admin(), "tx", 2, nil)
	p := tb.client(kgo.TransactionalID("smoke"), kgo.DefaultProduceTopic("tx"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	ctx := ctxT(t)
	for round, commit := range []bool{true, false, true} {
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if err := p.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("r%d-%d", round, i))).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end %d: %v", round, err)
		}
	}
	// KIP-890 part 2 bumps the epoch at every EndTxn: 3 after 3; KIP-98 keeps 0.
	wantEpoch := int16(0)
	if static["transaction.version"] == "2" {
		wantEpoch = 3
	}
	ds, err := tb.admin().DescribeTransactions(ctx, "smoke")
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := ds["smoke"]; !ok || d.Err != nil || d.ProducerEpoch != wantEpoch || d.State != "CompleteCommit" {
		t.Errorf("describe transaction: %+v, want epoch %d, CompleteCommit", d, wantEpoch)
	}
	check := func(tb *testBroker) {
		for _, c := range []struct {
			iso     kgo.IsolationLevel
			want    int
			aborted bool
		}{{kgo.ReadCommitted(), 20, false}, {kgo.ReadUncommitted(), 30, true}} {
			cl := tb.client(kgo.ConsumeTopics("tx"), kgo.FetchIsolationLevel(c.iso), kgo.FetchMaxWait(200*time.Millisecond))
			c2, cancel := context.WithTimeout(ctx, 2*time.Second)
			var got []string
			sawAborted := false
			for c2.Err() == nil {
				fs := cl.PollFetches(c2)
				fs.EachRecord(func(r *kgo.Record) {
					got = append(got, string(r.Value))
					sawAborted = sawAborted || strings.HasPrefix(string(r.Value), "r1-")
				})
			}
			cancel()
			cl.Close()
			if len(got) != c.want || sawAborted != c.aborted {
				t.Errorf("isolation %v: %d records (aborted ones: %v), want %d (%v)", c.iso, len(got), sawAborted, c.want, c.aborted)
			}
		}
	}
	check(tb)
	tb.stop()
	tb = start(t, dir, "", static)
	check(tb)
}
