package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCompactionOfTransactions: a transactional producer writes committed
// and aborted values to a compacted topic with small segments, between
// plain values of an idempotent producer, while another transaction stays
// open. Cleaning leaves everything from the last stable offset on as it
// was; once all transactions ended, cleaning removes the aborted records,
// and read_committed and read_uncommitted consumers both see just the
// latest committed values.
func TestCompactionOfTransactions(t *testing.T) {
	tb := start(t, t.TempDir(), "", map[string]string{"log.cleaner.threads": "0"})
	createTopic(t, tb.admin(), "ctxn", 1, map[string]*string{
		"cleanup.policy":      ptr("compact"),
		"segment.bytes":       ptr("4096"),
		"delete.retention.ms": ptr("100"),
	})
	ctx := ctxT(t)
	txp := tb.client(kgo.TransactionalID("ctxn-p"), kgo.DefaultProduceTopic("ctxn"), kgo.ProducerLinger(0))
	plain := tb.client(kgo.DefaultProduceTopic("ctxn"), kgo.ProducerLinger(0))
	state := map[int64]string{} // offset -> "plain", "commit", "abort", "open"
	values := map[int64][2]string{}
	rng := rand.New(rand.NewSource(1))
	produce := func(cl *kgo.Client, n int, prefix string) []int64 {
		t.Helper()
		var offs []int64
		for i := 0; i < n; i++ {
			r := &kgo.Record{Key: []byte(fmt.Sprintf("key-%02d", rng.Intn(10))), Value: []byte(fmt.Sprintf("%s-%d-%d", prefix, i, rng.Int()))}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			values[r.Offset] = [2]string{string(r.Key), string(r.Value)}
			offs = append(offs, r.Offset)
		}
		return offs
	}
	txn := func(cl *kgo.Client, n int, commit bool, round int) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		offs := produce(cl, n, fmt.Sprintf("txn%d", round))
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
		for _, o := range offs {
			state[o] = map[bool]string{true: "commit", false: "abort"}[commit]
		}
	}
	for round := 0; round < 30; round++ {
		for _, o := range produce(plain, 1+rng.Intn(3), "plain") {
			state[o] = "plain"
		}
		txn(txp, 2+rng.Intn(5), round%3 == 1 || round%5 == 0, round)
	}
	// A transaction of another producer stays open while more is written.
	open := tb.client(kgo.TransactionalID("ctxn-open"), kgo.DefaultProduceTopic("ctxn"), kgo.ProducerLinger(0))
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	openOffs := produce(open, 5, "open")
	for _, o := range openOffs {
		state[o] = "open"
	}
	for round := 30; round < 40; round++ {
		txn(txp, 2+rng.Intn(5), round%2 == 0, round)
	}
	filler := func() {
		// Plain values of one key, enough to roll segments past the rest.
		for i := 0; i < 12; i++ {
			r := &kgo.Record{Key: []byte("filler"), Value: bytes.Repeat([]byte{'f'}, 1000)}
			if err := plain.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			values[r.Offset] = [2]string{"filler", string(r.Value)}
			state[r.Offset] = "plain"
		}
	}
	filler()

	p, ok := tb.b.Partition("ctxn", 0)
	if !ok {
		t.Fatal("no partition")
	}
	lso := p.LastStableOffset()
	if lso != openOffs[0] {
		t.Fatalf("last stable offset %d, want the open transaction's first offset %d", lso, openOffs[0])
	}
	tail, err := p.Log().ReadBatches(lso, 1<<24)
	if err != nil {
		t.Fatal(err)
	}
	tail = bytes.Clone(tail)
	if err := tb.b.CleanNow(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := p.Log().ReadBatches(lso, 1<<24); !bytes.Equal(after, tail) {
		t.Fatal("cleaning changed the log at or past the last stable offset")
	}
	if end := p.Log().FirstDirtyOffset(); end > lso || end == 0 {
		t.Fatalf("cleaned up to %d, last stable offset %d", end, lso)
	}

	// All transactions end: everything cleans.
	if err := open.EndTransaction(ctx, kgo.TransactionEndTry(false)); err != nil {
		t.Fatal(err)
	}
	for _, o := range openOffs {
		state[o] = "abort"
	}
	txn(txp, 3, false, 40)
	txn(txp, 3, true, 41)
	filler()
	end := p.HighWatermark()
	for i := 0; i < 2; i++ {
		time.Sleep(150 * time.Millisecond) // past delete.retention.ms
		if err := tb.b.CleanNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	for o := int64(0); o < end; o++ {
		if st := state[o]; st == "plain" || st == "commit" {
			want[values[o][0]] = values[o][1]
		}
	}
	for _, iso := range []kgo.IsolationLevel{kgo.ReadCommitted(), kgo.ReadUncommitted()} {
		cl := tb.client(kgo.ConsumeTopics("ctxn"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond), kgo.FetchMaxBytes(2048))
		got := map[string]string{}
		c2, cancel := context.WithTimeout(ctx, 10*time.Second)
		for last := int64(-1); last < end-1; {
			fs := cl.PollFetches(c2)
			if c2.Err() != nil {
				t.Fatalf("%v: read to %d of %d: %v", iso, last, end, c2.Err())
			}
			if err := fs.Err(); err != nil {
				t.Fatal(err)
			}
			for _, r := range fs.Records() {
				if v, ok := values[r.Offset]; !ok || v[0] != string(r.Key) || v[1] != string(r.Value) {
					t.Fatalf("%v: offset %d holds %q=%q", iso, r.Offset, r.Key, r.Value)
				}
				if st := state[r.Offset]; st != "plain" && st != "commit" {
					t.Fatalf("%v: got the %s record at %d (%s=%s)", iso, st, r.Offset, r.Key, r.Value)
				}
				got[string(r.Key)] = string(r.Value)
				last = r.Offset
			}
		}
		cancel()
		cl.Close()
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%v: %s=%q, want %q", iso, k, strings.TrimSpace(got[k][:min(len(got[k]), 40)]), v[:min(len(v), 40)])
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%v: %d keys, want %d", iso, len(got), len(want))
		}
	}
}
