// Package checker judges the history of a chaos test run against what a
// Kafka cluster with acks=all and idempotent producers promises: every
// acknowledged record is in the log exactly once, at the offset the produce
// response gave (an offset never changes meaning), in the order its producer
// sent it; read_committed never shows an aborted record; and nothing a
// consumer read during the run is later truncated away.
//
// Check is a pure function of a History: the chaos test gathers the history
// (produce outcomes, what live consumers saw, and the log read back from
// offset 0 after healing) and the checker has no clock, IO or goroutines, so
// a violation found in a long run can be replayed from the saved history.
//
// Records are identified by value: the test must give every record it
// produces a value of its own (a producer number and a counter, say). A
// history in which the test itself broke that rule is a programmer error and
// panics.
package checker

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// MaxViolations bounds the violations a Result lists, so that a run gone
// badly wrong (a partition truncated: every record lost) reports in a
// readable size; Result.TotalViolations counts them all.
const MaxViolations = 1000

// maxListed bounds the values or locations one violation names.
const maxListed = 10

// Ack is a record whose produce the cluster acknowledged (acks=all). For a
// transactional record, only once its transaction's commit was
// acknowledged too.
type Ack struct {
	Topic     string
	Partition int32
	// Offset is the offset in the produce response: base offset of the
	// batch plus the record's index in it.
	Offset int64
	Key    string
	Value  string
	// ProducerID names the producer in the test (the test's own number:
	// Kafka's producer id changes when a client resets it, the promise of
	// order does not).
	ProducerID int64
	// Sequence is the order in which the producer sent its records, across
	// partitions; within a partition the log must keep it.
	Sequence int64
}

// Header is a record header.
type Header struct {
	Key   string
	Value string
}

// Record is a record read back from the log after healing.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       string
	Value     string
	// Headers are carried into reports; the checker identifies records by
	// Value.
	Headers []Header
}

// Observation is a record a live consumer read while faults were happening.
type Observation struct {
	Topic     string
	Partition int32
	Offset    int64
	Value     string
	// ReadCommitted says the consumer read with isolation.level
	// read_committed: it must never have seen an aborted record.
	ReadCommitted bool
}

// Txn is a transaction that was not acknowledged as committed.
type Txn struct {
	// Values are every value the transaction produced.
	Values []string
	// InDoubt says the commit was sent but not acknowledged: the
	// transaction may have committed (then all its values are in
	// read_committed, once each) or aborted (then none is). Otherwise it
	// aborted, and read_committed must show none of them.
	InDoubt bool
}

// History is everything a chaos run saw. Every value produced is in exactly
// one of Acked, Aborted and Unknown.
type History struct {
	Acked []Ack
	// Uncommitted is the log read from offset 0 with read_uncommitted
	// after healing, up to the high watermark of every partition. Records
	// may come in any order; the same record twice (a consumer that
	// re-read) counts once.
	Uncommitted []Record
	// Committed is the same read with read_committed.
	Committed []Record
	// Aborted are the transactions whose commit was not acknowledged.
	Aborted []Txn
	// Unknown are values whose produce failed or timed out: each may be in
	// the log at most once.
	Unknown []string
	// Observed are the records live consumers read during the run.
	Observed []Observation
}

// Kind is a class of violation.
type Kind int

const (
	// Lost: an acknowledged record is not in the log.
	Lost Kind = iota + 1
	// Duplicated: a value is in the log more than once.
	Duplicated
	// Misplaced: an acknowledged record is not at its acknowledged offset,
	// or an offset holds different records in different reads.
	Misplaced
	// Reordered: a producer's acknowledged records are in the log of a
	// partition out of the order it sent them.
	Reordered
	// AbortedSeen: a read_committed consumer got a record of an aborted
	// transaction.
	AbortedSeen
	// TornTxn: a transaction is in read_committed in part (some values,
	// not others), or a read_committed consumer saw it committed and the
	// final log lacks it.
	TornTxn
	// PhantomRead: a live consumer read a record that the final log does
	// not hold at that offset: read uncommitted data that was lost. With
	// acks=all and reads up to the high watermark this must never happen.
	PhantomRead
	// Unexpected: the log holds a value nobody produced.
	Unexpected
)

func (k Kind) String() string {
	switch k {
	case Lost:
		return "lost"
	case Duplicated:
		return "duplicated"
	case Misplaced:
		return "misplaced"
	case Reordered:
		return "reordered"
	case AbortedSeen:
		return "aborted record seen by read_committed"
	case TornTxn:
		return "torn transaction"
	case PhantomRead:
		return "read uncommitted data that was lost"
	case Unexpected:
		return "unexpected record"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Views of the log a violation is found in.
const (
	ViewUncommitted = "read_uncommitted"
	ViewCommitted   = "read_committed"
	ViewLive        = "live consumer"
)

// Violation is one broken promise: what, where, expected versus found.
type Violation struct {
	Kind Kind
	// View is where it was found: ViewUncommitted, ViewCommitted or
	// ViewLive.
	View      string
	Topic     string
	Partition int32
	// Offset is where it was found, or where it was expected when the
	// record is nowhere; -1 when no one offset applies.
	Offset   int64
	Value    string
	Expected string
	Found    string
}

func (v Violation) String() string {
	where := fmt.Sprintf("%s/%d", v.Topic, v.Partition)
	if v.Offset >= 0 {
		where += fmt.Sprintf("@%d", v.Offset)
	}
	return fmt.Sprintf("%s: %s value %q (%s): expected %s; found %s", v.Kind, where, v.Value, v.View, v.Expected, v.Found)
}

// Result is the verdict on a History. Every count but Acked and Found is
// the number of violations of its kind.
type Result struct {
	// Acked is the number of acknowledged records checked.
	Acked int
	// Found is how many of them are in both reads exactly once, at their
	// acknowledged offset.
	Found        int
	Lost         int
	Duplicated   int
	Misplaced    int
	Reordered    int
	AbortedSeen  int
	TornTxns     int
	PhantomReads int
	Unexpected   int
	// Violations are the first MaxViolations found, in the order the
	// checks run.
	Violations []Violation
	// TotalViolations counts every violation, listed or not.
	TotalViolations int
}

// OK says no promise was broken.
func (r Result) OK() bool { return r.TotalViolations == 0 }

func (r Result) String() string {
	return fmt.Sprintf("%d acked, %d found, %d lost, %d duplicated, %d misplaced, %d reordered, %d aborted seen, %s, %s, %d unexpected: %s",
		r.Acked, r.Found, r.Lost, r.Duplicated, r.Misplaced, r.Reordered, r.AbortedSeen,
		plural(r.TornTxns, "torn transaction"), plural(r.PhantomReads, "phantom read"), r.Unexpected, plural(r.TotalViolations, "violation"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func (r *Result) add(v Violation) {
	switch v.Kind {
	case Lost:
		r.Lost++
	case Duplicated:
		r.Duplicated++
	case Misplaced:
		r.Misplaced++
	case Reordered:
		r.Reordered++
	case AbortedSeen:
		r.AbortedSeen++
	case TornTxn:
		r.TornTxns++
	case PhantomRead:
		r.PhantomReads++
	case Unexpected:
		r.Unexpected++
	default:
		panic(fmt.Sprintf("BUG: checker: violation of unknown kind %d", int(v.Kind)))
	}
	r.TotalViolations++
	if len(r.Violations) < MaxViolations {
		r.Violations = append(r.Violations, v)
	}
}

// loc is a place in the log.
type loc struct {
	topic     string
	partition int32
	offset    int64
}

func (l loc) String() string { return fmt.Sprintf("%s/%d@%d", l.topic, l.partition, l.offset) }

func compareLoc(a, b loc) int {
	return cmp.Or(strings.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition), cmp.Compare(a.offset, b.offset))
}

// view is one read of the log, indexed both ways.
type view struct {
	name     string
	at       map[loc]Record
	where    map[string][]loc // value -> its locations, sorted
	locs     []loc            // every location, sorted
	conflict []Violation      // one offset read with two values
}

func newView(name string, recs []Record) *view {
	v := &view{name: name, at: make(map[loc]Record, len(recs)), where: map[string][]loc{}}
	for _, r := range recs {
		l := loc{r.Topic, r.Partition, r.Offset}
		if prev, ok := v.at[l]; ok {
			if prev.Value != r.Value || prev.Key != r.Key {
				v.conflict = append(v.conflict, Violation{Kind: Misplaced, View: name, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: r.Value,
					Expected: "one record per offset", Found: fmt.Sprintf("this read returned both %s and %s at this offset", describe(prev), describe(r))})
			}
			continue
		}
		v.at[l] = r
		v.locs = append(v.locs, l)
		v.where[r.Value] = append(v.where[r.Value], l)
	}
	slices.SortFunc(v.locs, compareLoc)
	for _, ls := range v.where {
		slices.SortFunc(ls, compareLoc)
	}
	return v
}

// holding describes what the view holds at l.
func (v *view) holding(l loc) string {
	if r, ok := v.at[l]; ok {
		return fmt.Sprintf("%s holds %s", l, describe(r))
	}
	return fmt.Sprintf("%s holds nothing", l)
}

func describe(r Record) string {
	s := fmt.Sprintf("value %q key %q", r.Value, r.Key)
	if len(r.Headers) > 0 {
		hs := make([]string, len(r.Headers))
		for i, h := range r.Headers {
			hs[i] = fmt.Sprintf("%s=%q", h.Key, h.Value)
		}
		s += " headers " + strings.Join(hs, ",")
	}
	return s
}

func listLocs(ls []loc) string {
	parts := make([]string, 0, min(len(ls), maxListed)+1)
	for i, l := range ls {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("and %d more", len(ls)-maxListed))
			break
		}
		parts = append(parts, l.String())
	}
	return strings.Join(parts, ", ")
}

func listValues(vs []string) string {
	parts := make([]string, 0, min(len(vs), maxListed)+1)
	for i, v := range vs {
		if i == maxListed {
			parts = append(parts, fmt.Sprintf("and %d more", len(vs)-maxListed))
			break
		}
		parts = append(parts, fmt.Sprintf("%q", v))
	}
	return strings.Join(parts, ", ")
}

// Check runs every check on h. It panics if h breaks its own rules (a value
// acknowledged twice, or both acknowledged and aborted): that is the test's
// mistake, not the cluster's.
func Check(h History) Result {
	c := newCheck(h)
	c.conflicts()
	c.duplicates()
	c.checkAcked()
	c.viewsAgree()
	c.order()
	c.transactions()
	c.observations()
	c.unexpected()
	return c.res
}

// check is one run of Check: the history indexed.
type check struct {
	h         History
	u, c      *view
	acked     map[string]*Ack
	ackedAt   map[loc]bool
	txnOf     map[string]int // value -> index in h.Aborted
	unknown   map[string]bool
	badAck    map[string]bool // acked values already reported lost, misplaced or duplicated
	dupValues map[string]bool
	torn      map[int]bool // transactions (index in h.Aborted) reported torn
	res       Result
}

func newCheck(h History) *check {
	c := &check{
		h:         h,
		u:         newView(ViewUncommitted, h.Uncommitted),
		c:         newView(ViewCommitted, h.Committed),
		acked:     make(map[string]*Ack, len(h.Acked)),
		ackedAt:   make(map[loc]bool, len(h.Acked)),
		txnOf:     map[string]int{},
		unknown:   make(map[string]bool, len(h.Unknown)),
		badAck:    map[string]bool{},
		dupValues: map[string]bool{},
		torn:      map[int]bool{},
	}
	c.res.Acked = len(h.Acked)
	for i := range h.Acked {
		a := &h.Acked[i]
		if prev, ok := c.acked[a.Value]; ok {
			panic(fmt.Sprintf("BUG: checker: value %q acknowledged twice (at %s/%d@%d and %s/%d@%d): the test must produce each value once",
				a.Value, prev.Topic, prev.Partition, prev.Offset, a.Topic, a.Partition, a.Offset))
		}
		c.acked[a.Value] = a
		c.ackedAt[loc{a.Topic, a.Partition, a.Offset}] = true
	}
	for i, t := range h.Aborted {
		for _, v := range t.Values {
			if _, ok := c.acked[v]; ok {
				panic(fmt.Sprintf("BUG: checker: value %q both acknowledged and in an unacknowledged transaction", v))
			}
			if _, ok := c.txnOf[v]; ok {
				panic(fmt.Sprintf("BUG: checker: value %q in two transactions", v))
			}
			c.txnOf[v] = i
		}
	}
	for _, v := range h.Unknown {
		if _, ok := c.acked[v]; ok {
			panic(fmt.Sprintf("BUG: checker: value %q both acknowledged and failed", v))
		}
		if _, ok := c.txnOf[v]; ok {
			panic(fmt.Sprintf("BUG: checker: value %q both failed and in an unacknowledged transaction", v))
		}
		c.unknown[v] = true
	}
	return c
}

// conflicts reports offsets a single read returned two records for.
func (c *check) conflicts() {
	for _, v := range []*view{c.u, c.c} {
		for _, x := range v.conflict {
			c.res.add(x)
		}
	}
}

// duplicates reports each value found at more than one offset, once: in
// read_uncommitted, or in read_committed if only there.
func (c *check) duplicates() {
	for _, v := range []*view{c.u, c.c} {
		for _, l := range v.locs {
			r := v.at[l]
			ls := v.where[r.Value]
			if len(ls) < 2 || ls[0] != l || c.dupValues[r.Value] {
				continue
			}
			c.dupValues[r.Value] = true
			what := "a value produced once"
			switch {
			case c.acked[r.Value] != nil:
				a := c.acked[r.Value]
				what = fmt.Sprintf("once, at %s (acknowledged)", loc{a.Topic, a.Partition, a.Offset})
				c.badAck[r.Value] = true
			case c.unknown[r.Value]:
				what = "at most once (its produce failed or timed out: retries must not duplicate it)"
			}
			c.res.add(Violation{Kind: Duplicated, View: v.name, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: r.Value,
				Expected: what, Found: fmt.Sprintf("%d copies, at %s", len(ls), listLocs(ls))})
		}
	}
}

// checkAcked checks each acknowledged record in read_uncommitted, then in
// read_committed: there, once, at its acknowledged offset, with its key.
func (c *check) checkAcked() {
	acks := slices.Clone(c.h.Acked)
	slices.SortFunc(acks, func(a, b Ack) int {
		return cmp.Or(compareLoc(loc{a.Topic, a.Partition, a.Offset}, loc{b.Topic, b.Partition, b.Offset}), strings.Compare(a.Value, b.Value))
	})
	for _, a := range acks {
		l := loc{a.Topic, a.Partition, a.Offset}
		ok := c.ackedIn(c.u, a, l) && c.ackedIn(c.c, a, l)
		if !ok {
			c.badAck[a.Value] = true
		}
		if ok && !c.badAck[a.Value] {
			c.res.Found++
		}
	}
}

// ackedIn checks a in v and reports what is wrong; false if anything is.
func (c *check) ackedIn(v *view, a Ack, l loc) bool {
	expected := fmt.Sprintf("value %q key %q at %s (acknowledged)", a.Value, a.Key, l)
	ls := v.where[a.Value]
	r, there := v.at[l]
	switch {
	case len(ls) == 0:
		found := "the value nowhere in the log; " + v.holding(l)
		if v == c.c {
			found = "the value in read_uncommitted at its offset but not in read_committed; " + v.holding(l)
		}
		c.res.add(Violation{Kind: Lost, View: v.name, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: a.Value, Expected: expected, Found: found})
		return false
	case !there || r.Value != a.Value:
		c.res.add(Violation{Kind: Misplaced, View: v.name, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: a.Value, Expected: expected,
			Found: fmt.Sprintf("the value at %s; %s", listLocs(ls), v.holding(l))})
		return false
	case r.Key != a.Key:
		c.res.add(Violation{Kind: Misplaced, View: v.name, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: a.Value, Expected: expected,
			Found: v.holding(l)})
		return false
	}
	return true
}

// viewsAgree checks that read_committed shows no offset differently from
// read_uncommitted (offsets of acknowledged records are acked's).
func (c *check) viewsAgree() {
	for _, l := range c.c.locs {
		if c.ackedAt[l] {
			continue
		}
		cr := c.c.at[l]
		ur, ok := c.u.at[l]
		if ok && ur.Value == cr.Value && ur.Key == cr.Key {
			continue
		}
		c.res.add(Violation{Kind: Misplaced, View: ViewCommitted, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: cr.Value,
			Expected: "the record read_uncommitted has at this offset", Found: fmt.Sprintf("%s there in read_committed; in read_uncommitted %s", describe(cr), c.u.holding(l))})
	}
}

// order checks that each producer's acknowledged records are in each
// partition's log in the order of their sequence numbers: adjacent pairs
// only, so that one record out of place is one violation.
func (c *check) order() {
	type stream struct {
		producer  int64
		topic     string
		partition int32
	}
	type placed struct {
		seq   int64
		value string
		at    loc
	}
	streams := map[stream][]placed{}
	for _, a := range c.h.Acked {
		ls := c.u.where[a.Value]
		i := slices.IndexFunc(ls, func(l loc) bool { return l.topic == a.Topic && l.partition == a.Partition })
		if i < 0 {
			continue // lost or in another partition: reported already
		}
		s := stream{a.ProducerID, a.Topic, a.Partition}
		streams[s] = append(streams[s], placed{a.Sequence, a.Value, ls[i]})
	}
	keys := make([]stream, 0, len(streams))
	for s := range streams {
		keys = append(keys, s)
	}
	slices.SortFunc(keys, func(a, b stream) int {
		return cmp.Or(cmp.Compare(a.producer, b.producer), strings.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	for _, s := range keys {
		ps := streams[s]
		slices.SortFunc(ps, func(a, b placed) int { return cmp.Compare(a.seq, b.seq) })
		for i := 1; i < len(ps); i++ {
			prev, cur := ps[i-1], ps[i]
			if cur.at.offset > prev.at.offset {
				continue
			}
			c.res.add(Violation{Kind: Reordered, View: ViewUncommitted, Topic: s.topic, Partition: s.partition, Offset: cur.at.offset, Value: cur.value,
				Expected: fmt.Sprintf("producer %d's sequence %d after its sequence %d (%q at offset %d)", s.producer, cur.seq, prev.seq, prev.value, prev.at.offset),
				Found:    fmt.Sprintf("sequence %d at offset %d, not after offset %d", cur.seq, cur.at.offset, prev.at.offset)})
		}
	}
}

// transactions checks read_committed against the transactions not
// acknowledged as committed: none of an aborted one, all or none of one in
// doubt.
func (c *check) transactions() {
	for i, t := range c.h.Aborted {
		if !t.InDoubt {
			for _, v := range t.Values {
				for _, l := range c.c.where[v] {
					c.res.add(Violation{Kind: AbortedSeen, View: ViewCommitted, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: v,
						Expected: "no record of an aborted transaction", Found: "this aborted record in read_committed"})
				}
			}
			continue
		}
		var in, out []string
		for _, v := range t.Values {
			if len(c.c.where[v]) > 0 {
				in = append(in, v)
			} else {
				out = append(out, v)
			}
		}
		if len(in) == 0 || len(out) == 0 {
			continue
		}
		c.torn[i] = true
		l := c.c.where[in[0]][0]
		c.res.add(Violation{Kind: TornTxn, View: ViewCommitted, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: in[0],
			Expected: fmt.Sprintf("all or none of the %d values of a transaction whose outcome is unknown", len(t.Values)),
			Found:    fmt.Sprintf("%d in read_committed, %d not: missing %s", len(in), len(out), listValues(out))})
	}
}

// observations checks what live consumers read during the run against the
// final log: the same record at the same offset, no aborted record for
// read_committed, and a transaction seen committed is committed in full.
func (c *check) observations() {
	obs := slices.Clone(c.h.Observed)
	slices.SortFunc(obs, func(a, b Observation) int {
		return cmp.Or(compareLoc(loc{a.Topic, a.Partition, a.Offset}, loc{b.Topic, b.Partition, b.Offset}), strings.Compare(a.Value, b.Value))
	})
	obs = slices.CompactFunc(obs, func(a, b Observation) bool {
		return a.Topic == b.Topic && a.Partition == b.Partition && a.Offset == b.Offset && a.Value == b.Value && a.ReadCommitted == b.ReadCommitted
	})
	phantom := map[loc]map[string]bool{}
	abortedSeen := map[string]bool{}
	for _, o := range obs {
		l := loc{o.Topic, o.Partition, o.Offset}
		if r, ok := c.u.at[l]; (!ok || r.Value != o.Value) && !phantom[l][o.Value] {
			if phantom[l] == nil {
				phantom[l] = map[string]bool{}
			}
			phantom[l][o.Value] = true
			found := c.u.holding(l)
			if ls := c.u.where[o.Value]; len(ls) > 0 {
				found += fmt.Sprintf("; the value is at %s", listLocs(ls))
			}
			c.res.add(Violation{Kind: PhantomRead, View: ViewLive, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: o.Value,
				Expected: fmt.Sprintf("the final log to hold %q at %s, where a consumer read it during the run", o.Value, l), Found: found})
		}
		if !o.ReadCommitted {
			continue
		}
		i, inTxn := c.txnOf[o.Value]
		if !inTxn {
			continue
		}
		t := c.h.Aborted[i]
		if !t.InDoubt {
			if !abortedSeen[o.Value] {
				abortedSeen[o.Value] = true
				c.res.add(Violation{Kind: AbortedSeen, View: ViewLive, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: o.Value,
					Expected: "no record of an aborted transaction for a read_committed consumer", Found: "a read_committed consumer read this aborted record during the run"})
			}
			continue
		}
		if c.torn[i] {
			continue // reported from the final log already
		}
		var missing []string
		for _, v := range t.Values {
			if len(c.c.where[v]) == 0 {
				missing = append(missing, v)
			}
		}
		if len(missing) == 0 {
			continue
		}
		c.torn[i] = true
		c.res.add(Violation{Kind: TornTxn, View: ViewLive, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: o.Value,
			Expected: fmt.Sprintf("all %d values of the transaction in read_committed: a read_committed consumer read this one during the run, so it committed", len(t.Values)),
			Found:    fmt.Sprintf("%d missing from the final read_committed: %s", len(missing), listValues(missing))})
	}
}

// unexpected reports values in the log that the history says nobody
// produced: corruption, or a record from elsewhere.
func (c *check) unexpected() {
	seen := map[string]bool{}
	for _, v := range []*view{c.u, c.c} {
		for _, l := range v.locs {
			r := v.at[l]
			if seen[r.Value] || c.acked[r.Value] != nil || c.unknown[r.Value] {
				continue
			}
			if _, ok := c.txnOf[r.Value]; ok {
				continue
			}
			seen[r.Value] = true
			c.res.add(Violation{Kind: Unexpected, View: v.name, Topic: l.topic, Partition: l.partition, Offset: l.offset, Value: r.Value,
				Expected: "only values the test produced", Found: describe(r) + ", which no producer of the test sent"})
		}
	}
}
