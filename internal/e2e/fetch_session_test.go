package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/httpapi"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

// fetchSpy wraps the API handler and records every fetch request and the
// session fields of its response.
type fetchSpy struct {
	server.Handler
	mu    sync.Mutex
	seen  []fetchSeen
	names map[[16]byte]string // topic ids of the requests seen, filled by the test
}

type fetchSeen struct {
	reqID, reqEpoch   int32
	reqParts          map[string][]int32 // by topic name (or id as text)
	forgotten         map[string][]int32
	respID            int32
	respErr           int16
	respParts         map[string][]int32
	respRecords       map[string]int // partitions sent records, by topic
	version           int16
	answeredAfterWait time.Duration
}

func topicKey(name string, id [16]byte) string {
	if name != "" {
		return name
	}
	return fmt.Sprintf("%x", id)
}

func (s *fetchSpy) Handle(ctx context.Context, req *server.Request, reply func(server.Reply)) {
	r, ok := req.Msg.(*kmsg.FetchRequest)
	if !ok {
		s.Handler.Handle(ctx, req, reply)
		return
	}
	f := fetchSeen{reqID: r.SessionID, reqEpoch: r.SessionEpoch, version: req.Version,
		reqParts: map[string][]int32{}, forgotten: map[string][]int32{}, respParts: map[string][]int32{}, respRecords: map[string]int{}}
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			f.reqParts[topicKey(t.Topic, t.TopicID)] = append(f.reqParts[topicKey(t.Topic, t.TopicID)], p.Partition)
		}
	}
	for _, t := range r.ForgottenTopics {
		f.forgotten[topicKey(t.Topic, t.TopicID)] = append(f.forgotten[topicKey(t.Topic, t.TopicID)], t.Partitions...)
	}
	start := time.Now()
	s.Handler.Handle(ctx, req, func(rep server.Reply) {
		if resp, ok := rep.Msg.(*kmsg.FetchResponse); ok {
			f.respID, f.respErr = resp.SessionID, resp.ErrorCode
			for _, t := range resp.Topics {
				k := topicKey(t.Topic, t.TopicID)
				for _, p := range t.Partitions {
					f.respParts[k] = append(f.respParts[k], p.Partition)
					if len(p.RecordBatches) > 0 {
						f.respRecords[k]++
					}
				}
			}
			f.answeredAfterWait = time.Since(start)
			s.mu.Lock()
			s.seen = append(s.seen, f)
			s.mu.Unlock()
		}
		reply(rep)
	})
}

func (s *fetchSpy) snapshot() []fetchSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fetchSeen(nil), s.seen...)
}

// startSpied is start with a fetchSpy around the handler.
func startSpied(t *testing.T, static map[string]string) (*testBroker, *fetchSpy) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	m := httpapi.NewMetricsWithOptions(httpapi.MetricsOptions{PartitionLevel: true}) // the tests read partition series
	dir := t.TempDir()
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: dir, Host: host, Port: int32(port), Static: static,
		Logger: logger(t), RetentionCheckInterval: time.Hour, OnFsync: m.Fsync})
	if err != nil {
		ln.Close()
		t.Fatalf("open broker: %v", err)
	}
	m.SetBroker(b)
	tb := &testBroker{t: t, metrics: m, dir: dir, addr: ln.Addr().String(), b: b, done: make(chan struct{})}
	h := api.New(b, logger(t))
	h.SetObserver(m)
	spy := &fetchSpy{Handler: h}
	tb.srv = server.New(spy, logger(t))
	go func() {
		defer close(tb.done)
		tb.srv.Serve(ln)
	}()
	t.Cleanup(tb.stop)
	return tb, spy
}

func produceParts(t *testing.T, cl *kgo.Client, topic string, partitions int32, perPartition int, tag string) {
	t.Helper()
	var rs []*kgo.Record
	for p := int32(0); p < partitions; p++ {
		for i := 0; i < perPartition; i++ {
			rs = append(rs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(fmt.Sprintf("%s-%d-%d", tag, p, i))})
		}
	}
	if err := cl.ProduceSync(ctxT(t), rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeUntil polls until want records (checked exactly once and in
// offset order per partition) have come, counting by topic.
func consumeUntil(t *testing.T, cl *kgo.Client, want int, next map[string]map[int32]int64) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[string]int{}
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before timeout (%v)", n, want, got)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		for _, r := range fs.Records() {
			if next[r.Topic] == nil {
				next[r.Topic] = map[int32]int64{}
			}
			if exp := next[r.Topic][r.Partition]; r.Offset != exp {
				t.Fatalf("%s/%d: got offset %d, want %d", r.Topic, r.Partition, r.Offset, exp)
			}
			next[r.Topic][r.Partition] = r.Offset + 1
			got[r.Topic]++
			n++
		}
	}
	if n != want {
		t.Fatalf("consumed %d records, want %d", n, want)
	}
	return got
}

func topicIDs(t *testing.T, tb *testBroker) map[string]string {
	out := map[string]string{}
	for name, topic := range tb.b.Image().Topics {
		out[fmt.Sprintf("%x", [16]byte(topic.ID))] = name
	}
	return out
}

// TestFetchSessionsKgo checks that kgo consumes through an incremental
// fetch session across many partitions, a subscription that grows and
// shrinks, and long polls.
func TestFetchSessionsKgo(t *testing.T) {
	tb, spy := startSpied(t, nil)
	adm := tb.admin()
	createTopic(t, adm, "sess-a", 16, nil)
	createTopic(t, adm, "sess-b", 4, nil)
	prod := tb.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceParts(t, prod, "sess-a", 16, 40, "a1")

	cl := tb.client(kgo.ConsumeTopics("sess-a"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(3*time.Second), kgo.FetchMaxPartitionBytes(2048))
	next := map[string]map[int32]int64{}
	consumeUntil(t, cl, 16*40, next)

	// More, in several rounds, each consumed incrementally.
	for round := 0; round < 3; round++ {
		produceParts(t, prod, "sess-a", 16, 10, fmt.Sprintf("a2-%d", round))
		consumeUntil(t, cl, 16*10, next)
	}

	seen := spy.snapshot()
	var sessionID int32
	incremental, incrementalWithData := 0, 0
	for _, f := range seen {
		if f.respErr != 0 {
			t.Fatalf("fetch answered top-level error %v", kerr.ErrorForCode(f.respErr))
		}
		if f.reqEpoch == 0 && f.respID != 0 {
			sessionID = f.respID
		}
		if f.reqEpoch > 0 {
			if f.reqID != sessionID || f.respID != sessionID {
				t.Fatalf("incremental fetch of session %d answered %d, want %d", f.reqID, f.respID, sessionID)
			}
			incremental++
			if len(f.respRecords) > 0 {
				incrementalWithData++
			}
		}
	}
	if sessionID == 0 || incremental == 0 || incrementalWithData == 0 {
		t.Fatalf("kgo did not use a fetch session: session %d, %d incremental fetches (%d with data) of %d", sessionID, incremental, incrementalWithData, len(seen))
	}
	// Long poll: caught up, the next incremental fetch waits and is
	// woken by a produce, well before max wait.
	before := len(spy.snapshot())
	go func() {
		time.Sleep(500 * time.Millisecond)
		produceParts(t, prod, "sess-a", 1, 5, "lp")
	}()
	start := time.Now()
	consumeUntil(t, cl, 5, next)
	if el := time.Since(start); el < 400*time.Millisecond || el > 2800*time.Millisecond {
		t.Fatalf("long poll delivered after %v", el)
	}
	waited := false
	for _, f := range spy.snapshot()[before:] {
		if f.reqEpoch > 0 && f.respID != 0 && len(f.respRecords) > 0 && f.answeredAfterWait > 200*time.Millisecond {
			waited = true
		}
	}
	if !waited {
		t.Fatalf("no incremental fetch was held and answered with records")
	}

	// Grow the subscription: sess-b's partitions are added to the session.
	produceParts(t, prod, "sess-b", 4, 25, "b1")
	before = len(spy.snapshot())
	cl.AddConsumeTopics("sess-b")
	got := consumeUntil(t, cl, 100, next)
	if got["sess-b"] != 100 {
		t.Fatalf("got %v from sess-b", got)
	}
	ids := topicIDs(t, tb)
	added := false
	for _, f := range spy.snapshot()[before:] {
		for k := range f.reqParts {
			if ids[k] == "sess-b" && f.reqEpoch > 0 && f.respID != 0 {
				added = true
			}
		}
	}
	if !added {
		t.Fatalf("sess-b was not added to a session incrementally")
	}

	// Pause half of sess-a: kgo forgets those partitions in its session
	// (ForgottenTopics); the rest keep coming.
	before = len(spy.snapshot())
	cl.PauseFetchPartitions(map[string][]int32{"sess-a": {0, 1, 2, 3, 4, 5, 6, 7}})
	pausedAt := maps.Clone(next["sess-a"])
	produceParts(t, prod, "sess-a", 16, 2, "a3")
	got = consumeUntil(t, cl, 16, next)
	if got["sess-a"] != 16 {
		t.Fatalf("with sess-a 0-7 paused got %v", got)
	}
	for p := int32(0); p < 8; p++ {
		if next["sess-a"][p] != pausedAt[p] {
			t.Fatalf("paused sess-a/%d consumed up to %d", p, next["sess-a"][p])
		}
	}
	shrank(t, spy.snapshot()[before:], ids, "sess-a", []int32{0, 1, 2, 3, 4, 5, 6, 7})
	cl.ResumeFetchPartitions(map[string][]int32{"sess-a": {0, 1, 2, 3, 4, 5, 6, 7}})
	got = consumeUntil(t, cl, 16, next)
	if got["sess-a"] != 16 {
		t.Fatalf("after resuming sess-a 0-7 got %v", got)
	}

	// Shrink it: sess-a is dropped; only sess-b keeps coming.
	before = len(spy.snapshot())
	cl.PurgeTopicsFromConsuming("sess-a")
	produceParts(t, prod, "sess-a", 16, 3, "a4")
	produceParts(t, prod, "sess-b", 4, 5, "b2")
	delete(next, "sess-a")
	got = consumeUntil(t, cl, 20, next)
	if got["sess-b"] != 20 || got["sess-a"] != 0 {
		t.Fatalf("after purging sess-a got %v", got)
	}
	shrank(t, spy.snapshot()[before:], ids, "sess-a", nil)

	// An incremental fetch lists fewer partitions than the session has.
	small := false
	for _, f := range spy.snapshot() {
		n := 0
		for _, ps := range f.reqParts {
			n += len(ps)
		}
		if f.reqEpoch > 1 && n < 16 {
			small = true
		}
	}
	if !small {
		t.Fatalf("no incremental fetch listed fewer than the session's 16 partitions")
	}
}

// shrank checks that fetches dropped a topic's partitions (all when
// parts is nil) from their session, by forgetting them in an incremental
// fetch or by starting a new session (epoch 0 naming the old one) without
// them, and that no later response of a session carries them.
func shrank(t *testing.T, seen []fetchSeen, ids map[string]string, topic string, parts []int32) {
	t.Helper()
	dropped := func(ps []int32) bool {
		if parts == nil {
			return true
		}
		return slices.Contains(ps, parts[0])
	}
	at := -1
	for i, f := range seen {
		if f.reqEpoch > 0 && f.respErr == 0 {
			for k, ps := range f.forgotten {
				if ids[k] == topic && dropped(ps) {
					at = i
				}
			}
		}
		if f.reqEpoch == 0 && f.reqID != 0 {
			has := false
			for k, ps := range f.reqParts {
				if ids[k] == topic && (parts == nil || slices.Contains(ps, parts[0])) {
					has = true
				}
			}
			if !has {
				at = i
			}
		}
		if at >= 0 {
			break
		}
	}
	if at < 0 {
		t.Fatalf("%s %v never left the session", topic, parts)
	}
	for _, f := range seen[at+1:] {
		if f.respID == 0 {
			continue
		}
		for k, ps := range f.respParts {
			if ids[k] == topic && dropped(ps) {
				t.Fatalf("%s %v answered after leaving the session: %v", topic, parts, f)
			}
		}
	}
}

// TestFetchSessionsGroupReassignment checks that a group member's
// session follows its assignment as a second member joins and leaves.
func TestFetchSessionsGroupReassignment(t *testing.T) {
	tb, spy := startSpied(t, map[string]string{"group.initial.rebalance.delay.ms": "0"})
	adm := tb.admin()
	createTopic(t, adm, "sess-g", 8, nil)
	prod := tb.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceParts(t, prod, "sess-g", 8, 20, "g1")

	seenRec := make(chan *kgo.Record, 10000)
	runMember := func(ctx context.Context, cl *kgo.Client) {
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) { seenRec <- r })
		}
	}
	opts := []kgo.Opt{kgo.ConsumerGroup("sess-grp"), kgo.ConsumeTopics("sess-g"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500 * time.Millisecond)}
	a := tb.client(opts...)
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	go runMember(ctxA, a)

	have := map[[2]int64]bool{}
	collect := func(want int) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for len(have) < want {
			select {
			case r := <-seenRec:
				have[[2]int64{int64(r.Partition), r.Offset}] = true
			case <-deadline:
				t.Fatalf("collected %d of %d records", len(have), want)
			}
		}
	}
	collect(160)

	// A second member: each gets half; A forgets the partitions it gives up.
	before := len(spy.snapshot())
	b := tb.client(opts...)
	ctxB, cancelB := context.WithCancel(context.Background())
	go runMember(ctxB, b)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if len(b.GetConsumeTopics()) > 0 {
			if g, err := adm.DescribeGroups(ctxT(t), "sess-grp"); err == nil && len(g["sess-grp"].Members) == 2 && g["sess-grp"].State == "Stable" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("second member never joined")
		}
		time.Sleep(50 * time.Millisecond)
	}
	produceParts(t, prod, "sess-g", 8, 20, "g2")
	collect(320)

	// A dropped what it gave up from its session: forgotten in an
	// incremental fetch, or a new session replacing the old one.
	forgot := false
	for _, f := range spy.snapshot()[before:] {
		if f.reqEpoch > 0 && len(f.forgotten) > 0 && f.respErr == 0 && f.respID != 0 ||
			f.reqEpoch == 0 && f.reqID != 0 && f.respID != 0 {
			forgot = true
		}
	}
	if !forgot {
		t.Fatalf("no fetch dropped the partitions reassigned from a session")
	}

	// B leaves: A takes every partition back, adding them to its session.
	cancelB()
	b.Close()
	produceParts(t, prod, "sess-g", 8, 20, "g3")
	collect(480)
	for _, f := range spy.snapshot() {
		if f.respErr != 0 {
			t.Fatalf("fetch answered top-level error %v", kerr.ErrorForCode(f.respErr))
		}
	}
}

// rawFetch sends a fetch of the given version on c and reads its
// response.
func rawFetch(t *testing.T, c net.Conn, version int16, id, epoch int32, topics []kmsg.FetchRequestTopic, forgotten []kmsg.FetchRequestForgottenTopic) *kmsg.FetchResponse {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = version
	req.MaxWaitMillis = 10
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.SessionID, req.SessionEpoch = id, epoch
	req.Topics, req.ForgottenTopics = topics, forgotten
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(rawRequest(1, version, 7, req.AppendTo(nil), req.IsFlexible())); err != nil {
		t.Fatalf("write fetch: %v", err)
	}
	frame := readFrame(t, c)
	body := frame[4:] // correlation id
	if req.IsFlexible() {
		body = body[1:] // no header tags
	}
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if err := resp.ReadFrom(body); err != nil {
		t.Fatalf("read fetch response: %v", err)
	}
	return resp
}

// dial is a raw connection to tb.
func dial(t *testing.T, tb *testBroker) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", tb.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func fetchTopic(name string, id [16]byte, offsets map[int32]int64) kmsg.FetchRequestTopic {
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = name, id
	for p := int32(0); p < int32(len(offsets)+16); p++ {
		o, ok := offsets[p]
		if !ok {
			continue
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = p, o, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
	}
	return rt
}

// respSummary is, per partition answered, its high watermark and whether
// it carried records.
func respSummary(resp *kmsg.FetchResponse) map[int32][2]int64 {
	out := map[int32][2]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			rec := int64(0)
			if len(p.RecordBatches) > 0 {
				rec = 1
			}
			out[p.Partition] = [2]int64{p.HighWatermark, rec}
		}
	}
	return out
}

func wantErr(t *testing.T, resp *kmsg.FetchResponse, want error) {
	t.Helper()
	if got := kerr.ErrorForCode(resp.ErrorCode); got != want {
		t.Fatalf("top-level error %v, want %v", got, want)
	}
	if want != nil && (resp.SessionID != 0 || len(resp.Topics) != 0) {
		t.Fatalf("error response with session %d and %d topics", resp.SessionID, len(resp.Topics))
	}
}

// TestFetchSessionsRaw drives sessions with raw fetches: creation,
// incremental responses, forgetting, the session errors and closing.
func TestFetchSessionsRaw(t *testing.T) {
	tb, _ := startSpied(t, nil)
	adm := tb.admin()
	createTopic(t, adm, "sess-raw", 3, nil)
	prod := tb.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceParts(t, prod, "sess-raw", 3, 2, "r")
	id := [16]byte(tb.b.Image().Topics["sess-raw"].ID)
	cl := dial(t, tb)
	all := []kmsg.FetchRequestTopic{fetchTopic("", id, map[int32]int64{0: 0, 1: 0, 2: 0})}

	// Sessionless: id 0, epoch -1.
	resp := rawFetch(t, cl, 18, 0, -1, all, nil)
	wantErr(t, resp, nil)
	if resp.SessionID != 0 || len(respSummary(resp)) != 3 {
		t.Fatalf("sessionless fetch: session %d, %v", resp.SessionID, respSummary(resp))
	}

	// Initial: a new session, full response.
	resp = rawFetch(t, cl, 18, 0, 0, all, nil)
	wantErr(t, resp, nil)
	sid := resp.SessionID
	if sid == 0 || len(respSummary(resp)) != 3 {
		t.Fatalf("initial fetch: session %d, %v", sid, respSummary(resp))
	}

	// Incremental, nothing changed: the offsets are still 0, so the
	// records are sent again (the fetch offsets did not move).
	resp = rawFetch(t, cl, 18, sid, 1, nil, nil)
	wantErr(t, resp, nil)
	if resp.SessionID != sid || len(respSummary(resp)) != 3 {
		t.Fatalf("incremental fetch at offset 0: session %d, %v", resp.SessionID, respSummary(resp))
	}
	// Move every partition to its end: nothing to say.
	resp = rawFetch(t, cl, 18, sid, 2, []kmsg.FetchRequestTopic{fetchTopic("", id, map[int32]int64{0: 2, 1: 2, 2: 2})}, nil)
	wantErr(t, resp, nil)
	if resp.SessionID != sid || len(respSummary(resp)) != 0 {
		t.Fatalf("caught-up incremental fetch: session %d, %v", resp.SessionID, respSummary(resp))
	}
	// New records on partition 1 only: only it is answered.
	if err := prod.ProduceSync(ctxT(t), &kgo.Record{Topic: "sess-raw", Partition: 1, Value: []byte("new")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	resp = rawFetch(t, cl, 18, sid, 3, nil, nil)
	wantErr(t, resp, nil)
	if s := respSummary(resp); len(s) != 1 || s[1] != [2]int64{3, 1} {
		t.Fatalf("incremental fetch after a produce to p1: %v", s)
	}

	// Wrong epoch: INVALID_FETCH_SESSION_EPOCH; the session stays.
	wantErr(t, rawFetch(t, cl, 18, sid, 3, nil, nil), kerr.InvalidFetchSessionEpoch)
	wantErr(t, rawFetch(t, cl, 18, sid, 9, nil, nil), kerr.InvalidFetchSessionEpoch)
	// Unknown id.
	wantErr(t, rawFetch(t, cl, 18, sid+1, 1, nil, nil), kerr.FetchSessionIDNotFound)
	// A name-based fetch (v12) on a topic-id session.
	wantErr(t, rawFetch(t, cl, 12, sid, 4, nil, nil), kerr.FetchSessionTopicIDError)

	// Forget partition 1, move it to its end; a produce to it is not
	// answered, one to partition 0 is.
	resp = rawFetch(t, cl, 18, sid, 4, []kmsg.FetchRequestTopic{fetchTopic("", id, map[int32]int64{1: 3})},
		[]kmsg.FetchRequestForgottenTopic{{TopicID: id, Partitions: []int32{1}}})
	wantErr(t, resp, nil)
	if s := respSummary(resp); len(s) != 0 {
		t.Fatalf("fetch forgetting p1: %v", s)
	}
	for _, p := range []int32{0, 1} {
		if err := prod.ProduceSync(ctxT(t), &kgo.Record{Topic: "sess-raw", Partition: p, Value: []byte("more")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	resp = rawFetch(t, cl, 18, sid, 5, nil, nil)
	if s := respSummary(resp); len(s) != 1 || s[0] != [2]int64{3, 1} {
		t.Fatalf("incremental fetch after forgetting p1: %v", s)
	}
	// Re-adding p1 answers it (new to the session: its state is sent).
	resp = rawFetch(t, cl, 18, sid, 6, []kmsg.FetchRequestTopic{fetchTopic("", id, map[int32]int64{0: 3, 1: 4})}, nil)
	if s := respSummary(resp); len(s) != 1 || s[1] != [2]int64{4, 0} {
		t.Fatalf("incremental fetch re-adding p1: %v", s)
	}

	// Close: id with epoch -1 is a full sessionless fetch, and the
	// session is gone.
	resp = rawFetch(t, cl, 18, sid, -1, all, nil)
	wantErr(t, resp, nil)
	if resp.SessionID != 0 || len(respSummary(resp)) != 3 {
		t.Fatalf("closing fetch: session %d, %v", resp.SessionID, respSummary(resp))
	}
	wantErr(t, rawFetch(t, cl, 18, sid, 7, nil, nil), kerr.FetchSessionIDNotFound)

	// A name-based session (v12) works the same, and refuses v13+.
	named := []kmsg.FetchRequestTopic{fetchTopic("sess-raw", [16]byte{}, map[int32]int64{0: 3, 1: 4, 2: 2})}
	resp = rawFetch(t, cl, 12, 0, 0, named, nil)
	nid := resp.SessionID
	if nid == 0 || len(respSummary(resp)) != 3 {
		t.Fatalf("v12 initial fetch: session %d, %v", nid, respSummary(resp))
	}
	resp = rawFetch(t, cl, 12, nid, 1, nil, []kmsg.FetchRequestForgottenTopic{{Topic: "sess-raw", Partitions: []int32{2}}})
	wantErr(t, resp, nil)
	if resp.SessionID != nid || len(respSummary(resp)) != 0 {
		t.Fatalf("v12 incremental fetch: session %d, %v", resp.SessionID, respSummary(resp))
	}
	wantErr(t, rawFetch(t, cl, 13, nid, 2, nil, nil), kerr.FetchSessionTopicIDError)
	// Forgetting every partition closes the session: answered with id 0.
	resp = rawFetch(t, cl, 12, nid, 2, nil, []kmsg.FetchRequestForgottenTopic{{Topic: "sess-raw", Partitions: []int32{0, 1}}})
	wantErr(t, resp, nil)
	if resp.SessionID != 0 {
		t.Fatalf("emptied session answered id %d", resp.SessionID)
	}
	wantErr(t, rawFetch(t, cl, 12, nid, 3, nil, nil), kerr.FetchSessionIDNotFound)

	// An unknown topic id in a session: answered with its error each
	// time, the session kept.
	unknown := []kmsg.FetchRequestTopic{fetchTopic("", [16]byte{1, 2, 3}, map[int32]int64{0: 0})}
	resp = rawFetch(t, cl, 18, 0, 0, unknown, nil)
	uid := resp.SessionID
	if uid == 0 || resp.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("unknown topic id: session %d, %+v", uid, resp.Topics)
	}
	resp = rawFetch(t, cl, 18, uid, 1, nil, nil)
	if len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("unknown topic id, incremental: %+v", resp.Topics)
	}

	// A session's topic deleted and recreated under its name: the old id
	// is answered INCONSISTENT_TOPIC_ID (as Kafka), so clients start over.
	resp = rawFetch(t, cl, 18, 0, 0, []kmsg.FetchRequestTopic{fetchTopic("", id, map[int32]int64{0: 0})}, nil)
	rid := resp.SessionID
	if rid == 0 {
		t.Fatal("no session")
	}
	if _, err := adm.DeleteTopics(ctxT(t), "sess-raw"); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, ok := tb.b.Image().Topics["sess-raw"]; !ok {
			break
		}
		if i > 500 {
			t.Fatal("topic not deleted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	createTopic(t, adm, "sess-raw", 1, nil)
	resp = rawFetch(t, cl, 18, rid, 1, nil, nil)
	if len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.InconsistentTopicID.Code {
		t.Fatalf("recreated topic in a session: %+v", resp.Topics)
	}
	// A full fetch with the old id: UNKNOWN_TOPIC_ID.
	resp = rawFetch(t, cl, 18, rid, -1, []kmsg.FetchRequestTopic{fetchTopic("", id, map[int32]int64{0: 0})}, nil)
	if len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("recreated topic, old id, full fetch: %+v", resp.Topics)
	}
}

// TestFetchSessionsCacheLimits checks a full cache (id 0, no error) and
// sessions disabled with zero slots.
func TestFetchSessionsCacheLimits(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		tb, _ := startSpied(t, map[string]string{"max.incremental.fetch.session.cache.slots": "1"})
		createTopic(t, tb.admin(), "sess-full", 2, nil)
		id := [16]byte(tb.b.Image().Topics["sess-full"].ID)
		cl := dial(t, tb)
		one := []kmsg.FetchRequestTopic{fetchTopic("", id, map[int32]int64{0: 0})}
		first := rawFetch(t, cl, 18, 0, 0, one, nil)
		if first.SessionID == 0 {
			t.Fatal("no session with a free slot")
		}
		// Same size, the first not idle for long: no room.
		resp := rawFetch(t, cl, 18, 0, 0, one, nil)
		wantErr(t, resp, nil)
		if resp.SessionID != 0 || len(respSummary(resp)) != 1 {
			t.Fatalf("full cache: session %d, %v", resp.SessionID, respSummary(resp))
		}
		// The first session still works.
		wantErr(t, rawFetch(t, cl, 18, first.SessionID, 1, nil, nil), nil)
		// Closing it frees the slot.
		rawFetch(t, cl, 18, first.SessionID, -1, one, nil)
		if resp := rawFetch(t, cl, 18, 0, 0, one, nil); resp.SessionID == 0 {
			t.Fatal("no session after the slot was freed")
		}
	})
	t.Run("disabled", func(t *testing.T) {
		tb, spy := startSpied(t, map[string]string{"max.incremental.fetch.session.cache.slots": "0"})
		createTopic(t, tb.admin(), "sess-off", 2, nil)
		id := [16]byte(tb.b.Image().Topics["sess-off"].ID)
		cl := dial(t, tb)
		both := []kmsg.FetchRequestTopic{fetchTopic("", id, map[int32]int64{0: 0, 1: 0})}
		resp := rawFetch(t, cl, 18, 0, 0, both, nil)
		wantErr(t, resp, nil)
		if resp.SessionID != 0 || len(respSummary(resp)) != 2 {
			t.Fatalf("disabled: session %d, %v", resp.SessionID, respSummary(resp))
		}
		wantErr(t, rawFetch(t, cl, 18, 12345, 1, nil, nil), kerr.FetchSessionIDNotFound)

		// kgo goes on with full fetches.
		prod := tb.client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
		produceParts(t, prod, "sess-off", 2, 30, "off")
		c := tb.client(kgo.ConsumeTopics("sess-off"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
		consumeUntil(t, c, 60, map[string]map[int32]int64{})
		produceParts(t, prod, "sess-off", 2, 10, "off2")
		consumeUntil(t, c, 20, map[string]map[int32]int64{"sess-off": {0: 30, 1: 30}})
		for _, f := range spy.snapshot() {
			if f.respID != 0 {
				t.Fatalf("a session id %d with sessions disabled", f.respID)
			}
		}
	})
}
