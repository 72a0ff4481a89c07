package checker

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// clean is a history with nothing wrong, touching every input:
//
//	t/0: a b c (producer 1), then an aborted transaction's p1 p2 and its
//	     marker at 5 (markers are never returned), then d (producer 1)
//	t/1: x y (producer 2), the unknown-outcome u, q1 of a transaction in
//	     doubt that committed, then q2 at t/0@7
//
// The unknown w and the in-doubt transaction r1, r2 (which aborted) never
// made it.
func clean() History {
	acks := []Ack{
		{Topic: "t", Partition: 0, Offset: 0, Key: "k", Value: "a", ProducerID: 1, Sequence: 0},
		{Topic: "t", Partition: 0, Offset: 1, Key: "k", Value: "b", ProducerID: 1, Sequence: 1},
		{Topic: "t", Partition: 0, Offset: 2, Key: "k", Value: "c", ProducerID: 1, Sequence: 2},
		{Topic: "t", Partition: 0, Offset: 6, Key: "k", Value: "d", ProducerID: 1, Sequence: 3},
		{Topic: "t", Partition: 1, Offset: 0, Key: "k", Value: "x", ProducerID: 2, Sequence: 0},
		{Topic: "t", Partition: 1, Offset: 1, Key: "k", Value: "y", ProducerID: 2, Sequence: 1},
	}
	rec := func(p int32, o int64, v string) Record {
		return Record{Topic: "t", Partition: p, Offset: o, Key: "k", Value: v}
	}
	uncommitted := []Record{
		rec(0, 0, "a"), rec(0, 1, "b"), rec(0, 2, "c"), rec(0, 3, "p1"), rec(0, 4, "p2"), rec(0, 6, "d"), rec(0, 7, "q2"),
		rec(1, 0, "x"), rec(1, 1, "y"), rec(1, 2, "u"), rec(1, 3, "q1"),
	}
	committed := slices.DeleteFunc(slices.Clone(uncommitted), func(r Record) bool { return strings.HasPrefix(r.Value, "p") })
	return History{
		Acked:       acks,
		Uncommitted: uncommitted,
		Committed:   committed,
		Aborted: []Txn{
			{Values: []string{"p1", "p2"}},
			{Values: []string{"q1", "q2"}, InDoubt: true},
			{Values: []string{"r1", "r2"}, InDoubt: true},
		},
		Unknown: []string{"u", "w"},
		Observed: []Observation{
			{Topic: "t", Partition: 0, Offset: 0, Value: "a", ReadCommitted: true},
			{Topic: "t", Partition: 0, Offset: 0, Value: "a", ReadCommitted: true}, // seen twice: counts once
			{Topic: "t", Partition: 0, Offset: 3, Value: "p1"},                     // read_uncommitted may
			{Topic: "t", Partition: 1, Offset: 3, Value: "q1", ReadCommitted: true},
		},
	}
}

// counts is Result without its violations.
func counts(r Result) Result {
	r.Violations = nil
	return r
}

// edit applies f to a clean history.
func edit(f func(h *History)) History {
	h := clean()
	f(&h)
	return h
}

// at returns the index of the record at p@o in recs.
func at(recs []Record, p int32, o int64) int {
	return slices.IndexFunc(recs, func(r Record) bool { return r.Partition == p && r.Offset == o })
}

func without(recs []Record, value string) []Record {
	return slices.DeleteFunc(slices.Clone(recs), func(r Record) bool { return r.Value == value })
}

func TestCheck(t *testing.T) {
	const acked = 6
	for _, tc := range []struct {
		name string
		h    History
		want Result
		// says are substrings the violations' texts must hold, in order.
		says []string
	}{
		{
			name: "clean",
			h:    clean(),
			want: Result{Acked: acked, Found: acked},
		},
		{
			name: "clean: in-doubt transaction aborted, records re-read, an aborted record read by a live read_uncommitted consumer",
			h: edit(func(h *History) {
				h.Uncommitted = append(h.Uncommitted, h.Uncommitted[0], h.Uncommitted[3])
				h.Committed = without(without(h.Committed, "q1"), "q2")
				h.Observed = h.Observed[:3]
			}),
			want: Result{Acked: acked, Found: acked},
		},
		{
			name: "lost",
			h: edit(func(h *History) {
				h.Uncommitted = without(h.Uncommitted, "b")
				h.Committed = without(h.Committed, "b")
			}),
			want: Result{Acked: acked, Found: acked - 1, Lost: 1, TotalViolations: 1},
			says: []string{`lost: t/0@1 value "b" (read_uncommitted): expected value "b" key "k" at t/0@1 (acknowledged); found the value nowhere in the log; t/0@1 holds nothing`},
		},
		{
			name: "lost from read_committed only",
			h:    edit(func(h *History) { h.Committed = without(h.Committed, "y") }),
			want: Result{Acked: acked, Found: acked - 1, Lost: 1, TotalViolations: 1},
			says: []string{`lost: t/1@1 value "y" (read_committed)`, "in read_uncommitted at its offset but not in read_committed"},
		},
		{
			name: "duplicated acked record",
			h: edit(func(h *History) {
				dup := Record{Topic: "t", Partition: 0, Offset: 8, Key: "k", Value: "b"}
				h.Uncommitted = append(h.Uncommitted, dup)
				h.Committed = append(h.Committed, dup)
			}),
			want: Result{Acked: acked, Found: acked - 1, Duplicated: 1, TotalViolations: 1},
			says: []string{`duplicated: t/0@1 value "b" (read_uncommitted): expected once, at t/0@1 (acknowledged); found 2 copies, at t/0@1, t/0@8`},
		},
		{
			name: "duplicated failed produce",
			h: edit(func(h *History) {
				dup := Record{Topic: "t", Partition: 1, Offset: 4, Key: "k", Value: "u"}
				h.Uncommitted = append(h.Uncommitted, dup)
				h.Committed = append(h.Committed, dup)
			}),
			want: Result{Acked: acked, Found: acked, Duplicated: 1, TotalViolations: 1},
			says: []string{"duplicated: t/1@2", "at most once", "t/1@2, t/1@4"},
		},
		{
			name: "acked offset wrong (offset changed meaning)",
			h: edit(func(h *History) {
				h.Acked[4].Offset = 5 // x acknowledged at t/1@5, read at t/1@0
			}),
			want: Result{Acked: acked, Found: acked - 1, Misplaced: 1, TotalViolations: 1},
			says: []string{`misplaced: t/1@5 value "x" (read_uncommitted): expected value "x" key "k" at t/1@5 (acknowledged); found the value at t/1@0; t/1@5 holds nothing`},
		},
		{
			name: "two records swapped",
			h: edit(func(h *History) {
				for _, recs := range [][]Record{h.Uncommitted, h.Committed} {
					b, c := at(recs, 0, 1), at(recs, 0, 2)
					recs[b].Value, recs[c].Value = "c", "b"
				}
			}),
			want: Result{Acked: acked, Found: acked - 2, Misplaced: 2, Reordered: 1, TotalViolations: 3},
			says: []string{
				`misplaced: t/0@1 value "b"`, `t/0@1 holds value "c"`,
				`misplaced: t/0@2 value "c"`, `t/0@2 holds value "b"`,
				`reordered: t/0@1 value "c"`, "producer 1's sequence 2 after its sequence 1",
			},
		},
		{
			name: "key changed",
			h: edit(func(h *History) {
				h.Uncommitted[at(h.Uncommitted, 0, 6)].Key = "other"
			}),
			want: Result{Acked: acked, Found: acked - 1, Misplaced: 1, TotalViolations: 1},
			says: []string{`misplaced: t/0@6 value "d" (read_uncommitted): expected value "d" key "k" at t/0@6 (acknowledged); found t/0@6 holds value "d" key "other"`},
		},
		{
			name: "reordered",
			h: edit(func(h *History) {
				h.Acked[1].Sequence, h.Acked[2].Sequence = 2, 1 // producer 1 sent c before b
			}),
			want: Result{Acked: acked, Found: acked, Reordered: 1, TotalViolations: 1},
			says: []string{`reordered: t/0@1 value "b" (read_uncommitted): expected producer 1's sequence 2 after its sequence 1 ("c" at offset 2); found sequence 2 at offset 1, not after offset 2`},
		},
		{
			name: "aborted record in read_committed",
			h: edit(func(h *History) {
				h.Committed = append(h.Committed, h.Uncommitted[at(h.Uncommitted, 0, 4)])
			}),
			want: Result{Acked: acked, Found: acked, AbortedSeen: 1, TotalViolations: 1},
			says: []string{`aborted record seen by read_committed: t/0@4 value "p2" (read_committed)`},
		},
		{
			name: "aborted record read by a live read_committed consumer",
			h: edit(func(h *History) {
				h.Observed = append(h.Observed, Observation{Topic: "t", Partition: 0, Offset: 3, Value: "p1", ReadCommitted: true})
			}),
			want: Result{Acked: acked, Found: acked, AbortedSeen: 1, TotalViolations: 1},
			says: []string{`aborted record seen by read_committed: t/0@3 value "p1" (live consumer)`},
		},
		{
			name: "in-doubt transaction in part",
			h:    edit(func(h *History) { h.Committed = without(h.Committed, "q2") }),
			want: Result{Acked: acked, Found: acked, TornTxns: 1, TotalViolations: 1},
			says: []string{`torn transaction: t/1@3 value "q1" (read_committed): expected all or none of the 2 values`, `missing "q2"`},
		},
		{
			name: "in-doubt transaction seen committed, then gone",
			h: edit(func(h *History) {
				h.Committed = without(without(h.Committed, "q1"), "q2")
			}),
			want: Result{Acked: acked, Found: acked, TornTxns: 1, TotalViolations: 1},
			says: []string{`torn transaction: t/1@3 value "q1" (live consumer)`, `2 missing from the final read_committed: "q1", "q2"`},
		},
		{
			name: "read uncommitted data that was lost",
			h: edit(func(h *History) {
				h.Observed = append(h.Observed,
					Observation{Topic: "t", Partition: 1, Offset: 4, Value: "truncated"},
					Observation{Topic: "t", Partition: 0, Offset: 1, Value: "c", ReadCommitted: true}, // c is at 2
				)
			}),
			want: Result{Acked: acked, Found: acked, PhantomReads: 2, TotalViolations: 2},
			says: []string{
				`read uncommitted data that was lost: t/0@1 value "c" (live consumer): expected the final log to hold "c" at t/0@1, where a consumer read it during the run; found t/0@1 holds value "b" key "k"; the value is at t/0@2`,
				`read uncommitted data that was lost: t/1@4 value "truncated"`, "t/1@4 holds nothing",
			},
		},
		{
			name: "a value nobody produced",
			h: edit(func(h *History) {
				z := Record{Topic: "t", Partition: 1, Offset: 4, Key: "k", Value: "zz", Headers: []Header{{Key: "h", Value: "1"}}}
				h.Uncommitted = append(h.Uncommitted, z)
				h.Committed = append(h.Committed, z)
			}),
			want: Result{Acked: acked, Found: acked, Unexpected: 1, TotalViolations: 1},
			says: []string{`unexpected record: t/1@4 value "zz" (read_uncommitted)`, `headers h="1"`},
		},
		{
			name: "one read returns two records at one offset",
			h: edit(func(h *History) {
				h.Uncommitted = append(h.Uncommitted, Record{Topic: "t", Partition: 1, Offset: 2, Key: "k", Value: "w"})
			}),
			want: Result{Acked: acked, Found: acked, Misplaced: 1, TotalViolations: 1},
			says: []string{`misplaced: t/1@2 value "w" (read_uncommitted): expected one record per offset; found this read returned both value "u" key "k" and value "w" key "k"`},
		},
		{
			name: "read_committed and read_uncommitted disagree",
			h: edit(func(h *History) {
				h.Committed[at(h.Committed, 1, 2)].Value = "w"
			}),
			want: Result{Acked: acked, Found: acked, Misplaced: 1, TotalViolations: 1},
			says: []string{`misplaced: t/1@2 value "w" (read_committed): expected the record read_uncommitted has at this offset; found value "w" key "k" there in read_committed; in read_uncommitted t/1@2 holds value "u"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check(tc.h)
			if !reflect.DeepEqual(counts(got), tc.want) {
				t.Errorf("counts:\n got %v\nwant %v", counts(got), tc.want)
			}
			if got.OK() != (tc.want.TotalViolations == 0) {
				t.Errorf("OK() = %v with %d violations", got.OK(), got.TotalViolations)
			}
			if len(got.Violations) != got.TotalViolations {
				t.Errorf("%d violations listed, %d counted", len(got.Violations), got.TotalViolations)
			}
			var texts []string
			for _, v := range got.Violations {
				texts = append(texts, v.String())
			}
			all := strings.Join(texts, "\n")
			rest := all
			for _, s := range tc.says {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Errorf("violations do not say (in this order) %q:\n%s", s, all)
					break
				}
				rest = rest[i+len(s):]
			}
			if testing.Verbose() && all != "" {
				t.Logf("%v\n%s", got, all)
			}
		})
	}
}

func TestViolationsAreBounded(t *testing.T) {
	var h History
	const n = MaxViolations + 500
	for i := range n {
		h.Acked = append(h.Acked, Ack{Topic: "t", Offset: int64(i), Value: string(rune('a'+i%26)) + strings.Repeat("!", i/26), ProducerID: 1, Sequence: int64(i)})
	}
	got := Check(h)
	if got.Lost != n || got.TotalViolations != n || len(got.Violations) != MaxViolations || got.Found != 0 {
		t.Fatalf("everything lost: %v with %d listed; want %d lost, %d listed", got, len(got.Violations), n, MaxViolations)
	}
}

func TestHistoryMistakesPanic(t *testing.T) {
	for name, h := range map[string]History{
		"acked twice":             {Acked: []Ack{{Value: "a"}, {Value: "a", Offset: 1}}},
		"acked and aborted":       {Acked: []Ack{{Value: "a"}}, Aborted: []Txn{{Values: []string{"a"}}}},
		"acked and unknown":       {Acked: []Ack{{Value: "a"}}, Unknown: []string{"a"}},
		"in two transactions":     {Aborted: []Txn{{Values: []string{"a"}}, {Values: []string{"a"}}}},
		"aborted and unknown too": {Aborted: []Txn{{Values: []string{"a"}}}, Unknown: []string{"a"}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.HasPrefix(s, "BUG: checker: ") {
					t.Fatalf("recovered %v; want a BUG panic", r)
				}
			}()
			Check(h)
		})
	}
}
