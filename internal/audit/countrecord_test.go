package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

func TestCountRecordRoundTrip(t *testing.T) {
	c := CountRecord{Version: CountFormatVersion, Stage: StageMirror, Instance: "0123456789abcdef", Gen: 7, Topic: "events",
		Window: 1_700_000_040_000, Count: 12, Unranged: 1,
		Ranges: []OffsetRange{{0, 5, 9}, {0, 11, 12}, {3, 0, 3}}}
	b, err := EncodeCount(&c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCount(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("got %+v, want %+v", got, c)
	}
	if got.Distinct() != 11 || got.Key() != "mirror/0123456789abcdef/7/events/1700000040000" {
		t.Fatalf("distinct %d, key %s", got.Distinct(), got.Key())
	}
}

// Each record refused says why, and wraps errBadCount.
func TestDecodeCountRefuses(t *testing.T) {
	good := `"v":1,"stage":"sink","instance":"i","gen":1,"topic":"t","window_ms":60000`
	for name, v := range map[string]string{
		"not json":           `{`,
		"version 2":          `{"v":2,"stage":"sink","instance":"i","topic":"t","window_ms":0,"count":1}`,
		"no stage":           `{"v":1,"instance":"i","topic":"t","window_ms":0,"count":1}`,
		"stage topic":        `{"v":1,"stage":"topic","instance":"i","topic":"t","window_ms":0,"count":1}`,
		"no topic":           `{"v":1,"stage":"sink","instance":"i","window_ms":0,"count":1}`,
		"window not aligned": `{"v":1,"stage":"sink","instance":"i","topic":"t","window_ms":1,"count":1}`,
		"negative count":     `{` + good + `,"count":-1}`,
		"unranged > count":   `{` + good + `,"count":1,"unranged":2}`,
		"ranges > count":     `{` + good + `,"count":2,"ranges":[{"p":0,"first":0,"last":2}]}`,
		"ranges + unranged":  `{` + good + `,"count":3,"unranged":1,"ranges":[{"p":0,"first":0,"last":2}]}`,
		"backwards range":    `{` + good + `,"count":9,"ranges":[{"p":0,"first":5,"last":2}]}`,
		"negative partition": `{` + good + `,"count":9,"ranges":[{"p":-1,"first":0,"last":2}]}`,
		"overlapping ranges": `{` + good + `,"count":9,"ranges":[{"p":0,"first":0,"last":2},{"p":0,"first":2,"last":3}]}`,
		"adjacent ranges":    `{` + good + `,"count":9,"ranges":[{"p":0,"first":0,"last":2},{"p":0,"first":3,"last":3}]}`,
		"unsorted partition": `{` + good + `,"count":9,"ranges":[{"p":1,"first":0,"last":2},{"p":0,"first":5,"last":6}]}`,
		"huge range":         `{` + good + `,"count":9,"ranges":[{"p":0,"first":0,"last":9223372036854775807}]}`,
		"too large":          `{` + good + `,"count":1,"x":"` + string(bytes.Repeat([]byte("a"), maxCountRecordBytes)) + `"}`,
	} {
		if c, err := DecodeCount([]byte(v)); !errors.Is(err, errBadCount) {
			t.Errorf("%s: %+v, %v", name, c, err)
		}
	}
	if _, err := DecodeCount([]byte(`{` + good + `,"count":4,"unranged":1,"ranges":[{"p":0,"first":0,"last":2}],"future":true}`)); err != nil {
		t.Errorf("an unknown field: %v", err)
	}
}

// FuzzDecodeCount: DecodeCount never panics, and what it accepts encodes
// and decodes to the same record, whose ranges hold at most Count records.
func FuzzDecodeCount(f *testing.F) {
	f.Add([]byte(`{"v":1,"stage":"collect","instance":"ab","gen":1,"topic":"t","window_ms":60000,"count":3,"ranges":[{"p":0,"first":0,"last":2}]}`))
	f.Add([]byte(`{"v":1,"stage":"mirror","instance":"ab","gen":2,"topic":"t","window_ms":-60000,"count":5,"unranged":1,"ranges":[{"p":0,"first":0,"last":0},{"p":0,"first":2,"last":3}]}`))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCount(b)
		if err != nil {
			return
		}
		if c.Distinct()+c.Unranged > c.Count {
			t.Fatalf("accepted %+v with more offsets than its count", c)
		}
		again, err := EncodeCount(&c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeCount(again)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("%+v re-encoded as %s: %+v, %v", c, again, c2, err)
		}
	})
}

// addSpan against a map of offsets, on random insertions.
func TestAddSpanRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		var spans []span
		want := map[int64]bool{}
		for i := 0; i < 50; i++ {
			first := r.Int64N(100)
			last := first + r.Int64N(4)
			spans = addSpan(spans, first, last)
			for o := first; o <= last; o++ {
				want[o] = true
			}
		}
		var n int64
		for i, s := range spans {
			if s.last < s.first || (i > 0 && spans[i-1].last+1 >= s.first) {
				t.Fatalf("spans not sorted apart: %v", spans)
			}
			for o := s.first; o <= s.last; o++ {
				if !want[o] {
					t.Fatalf("%d in %v, never added", o, spans)
				}
			}
			n += s.last - s.first + 1
		}
		if n != int64(len(want)) {
			t.Fatalf("%d offsets in %v, want %d", n, spans, len(want))
		}
	}
}

func rec(stage, inst string, gen uint64, topic string, window int64, count int64, ranges ...OffsetRange) CountRecord {
	return CountRecord{Version: 1, Stage: stage, Instance: inst, Gen: gen, Topic: topic, Window: window, Count: count, Ranges: ranges}
}

// The merge keeps a key's newest version, adds instances, and counts an
// offset counted twice (by a restarted mirror, or twice by one) once.
func TestMergeDedupes(t *testing.T) {
	const w = 60_000
	recs := []CountRecord{
		rec(StageMirror, "a", 1, "t", w, 5, OffsetRange{0, 0, 4}),
		rec(StageMirror, "a", 1, "t", w, 10, OffsetRange{0, 0, 9}), // newer version of the same key
		rec(StageMirror, "b", 1, "t", w, 8, OffsetRange{0, 5, 12}), // a restart from offset 5
		rec(StageMirror, "b", 2, "t", w, 3, OffsetRange{0, 12, 12}, OffsetRange{1, 0, 1}),
		rec(StageCollect, "c", 1, "t", w, 15, OffsetRange{0, 0, 12}, OffsetRange{1, 0, 1}),
	}
	recs = append(recs, CountRecord{Version: 1, Stage: StageSink, Instance: "s", Gen: 1, Topic: "t", Window: w, Count: 4, Unranged: 4})
	m := mergeCounts(recs)
	if got := m[stageKey{StageMirror, "t", w}]; got != (StageCount{Count: 15, Raw: 21, Instances: 2}) {
		t.Errorf("mirror: %+v", got)
	}
	if got := m[stageKey{StageCollect, "t", w}]; got != (StageCount{Count: 15, Raw: 15, Instances: 1}) {
		t.Errorf("collect: %+v", got)
	}
	if got := m[stageKey{StageSink, "t", w}]; got != (StageCount{Count: 4, Raw: 4, Instances: 1}) {
		t.Errorf("sink: %+v", got)
	}
	r := compare(m, time.UnixMilli(0), time.UnixMilli(w).Add(time.Hour), time.Minute)
	if len(r.Windows) != 1 || r.Missing != 11 || r.Extra != 0 || len(r.Windows[0].Missing) != 1 ||
		r.Windows[0].Missing[0] != (Gap{Stage: StageSink, After: StageMirror, Records: 11}) {
		t.Fatalf("%+v", r)
	}
	if !reflect.DeepEqual(r.Stages, []string{StageCollect, StageMirror, StageSink}) {
		t.Errorf("stages %v", r.Stages)
	}
}

// compare: a stage silent in a window of a topic it counts is 0 there
// (missing all); an open window is not judged; a stage that never counted
// a topic is not compared for it; more is extra.
func TestCompare(t *testing.T) {
	const w = 60_000
	now := time.UnixMilli(10 * w)
	counts := map[stageKey]StageCount{
		{StageCollect, "a", w}:     {Count: 10, Raw: 10},
		{StageTopic, "a", w}:       {Count: 10, Raw: 10},
		{StageMirror, "a", w}:      {Count: 10, Raw: 12},
		{StageCollect, "a", 2 * w}: {Count: 5, Raw: 5},
		{StageTopic, "a", 2 * w}:   {Count: 6, Raw: 6},
		{StageCollect, "a", 9 * w}: {Count: 5, Raw: 5}, // open
		{StageCollect, "b", w}:     {Count: 3, Raw: 3},
		{StageTopic, "b", w}:       {Count: 3, Raw: 3},
	}
	r := compare(counts, time.UnixMilli(0), now, time.Minute)
	if len(r.Windows) != 4 {
		t.Fatalf("%+v", r.Windows)
	}
	byKey := map[windowKey]WindowCounts{}
	for _, x := range r.Windows {
		byKey[windowKey{x.Topic, x.Window.UnixMilli()}] = x
	}
	if x := byKey[windowKey{"a", w}]; x.Open || len(x.Missing)+len(x.Extra) != 0 {
		t.Errorf("a@1: %+v", x)
	}
	x := byKey[windowKey{"a", 2 * w}]
	if !reflect.DeepEqual(x.Extra, []Gap{{StageTopic, StageCollect, 1}}) || !reflect.DeepEqual(x.Missing, []Gap{{StageMirror, StageTopic, 6}}) {
		t.Errorf("a@2: %+v", x)
	}
	if x := byKey[windowKey{"a", 9 * w}]; !x.Open || x.Missing != nil || x.Stages[StageMirror] != (StageCount{}) {
		t.Errorf("a@9: %+v", x)
	}
	if x := byKey[windowKey{"b", w}]; len(x.Stages) != 2 || x.Missing != nil {
		t.Errorf("b@1: %+v", x)
	}
	if r.Missing != 6 || r.Extra != 1 {
		t.Errorf("missing %d, extra %d", r.Missing, r.Extra)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatal(err)
	}
}

func TestWindowOf(t *testing.T) {
	for _, c := range []struct{ ms, want int64 }{{0, 0}, {59_999, 0}, {60_000, 60_000}, {-1, -60_000}, {-60_000, -60_000}} {
		if got := windowOf(time.UnixMilli(c.ms)); got != c.want {
			t.Errorf("windowOf(%d) = %d, want %d", c.ms, got, c.want)
		}
	}
}

// A stage silent all along is compared only when expected.
func TestExpectStages(t *testing.T) {
	const w = 60_000
	counts := map[stageKey]StageCount{{StageCollect, "a", w}: {Count: 10, Raw: 10}, {StageTopic, "a", w}: {Count: 10, Raw: 10}}
	if r := compare(counts, time.UnixMilli(0), time.UnixMilli(10*w), time.Minute); r.Missing != 0 {
		t.Fatalf("%+v", r)
	}
	expectStages(counts, []string{StageMirror, StageTopic})
	r := compare(counts, time.UnixMilli(0), time.UnixMilli(10*w), time.Minute)
	if r.Missing != 10 || !reflect.DeepEqual(r.Windows[0].Missing, []Gap{{StageMirror, StageTopic, 10}}) || counts[stageKey{StageTopic, "a", w}].Count != 10 {
		t.Fatalf("%+v", r)
	}
}
