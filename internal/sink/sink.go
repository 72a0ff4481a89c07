package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/sink/format"
)

const (
	// DefaultGroup is the sink's consumer group.
	DefaultGroup = "sluice-sink"
	// DefaultRollBytes is --roll-size: a partition is cut when one of its
	// files reaches it (estimated encoded bytes).
	DefaultRollBytes = 64 << 20
	// DefaultRollTime is --roll-time: a partition is cut when its oldest
	// open record was taken this long ago.
	DefaultRollTime = 5 * time.Minute
	// DefaultMaxBufferedBytes is --max-buffered-bytes: encoded bytes held
	// in memory across all files before the largest partition is cut early.
	DefaultMaxBufferedBytes = 256 << 20
	// DefaultTimeout bounds connecting and admin requests.
	DefaultTimeout = 10 * time.Second
	// DefaultStopTimeout is how long a clean stop may spend flushing.
	DefaultStopTimeout = 30 * time.Second

	// maxPollRecords is how many records one poll returns at most: more
	// than a fetch holds (kgo's FetchMaxBytes, 50 MB, bounds it), so that
	// a poll drains the fetch buffered from a broker. kgo sends that
	// broker the next fetch only once the last is drained: then the
	// broker serves it while the sink encodes (with 10000, a fetch of
	// more records waited for a second poll, and fetching and encoding
	// took turns).
	maxPollRecords = 1_000_000
	// maxPollWait is how long a poll waits for records before the loop
	// looks at --roll-time again.
	maxPollWait = time.Second
	// memoryCheckRecords is how often (in records) the loop compares the
	// buffered bytes with the limit while it takes a poll's records.
	memoryCheckRecords = 256
	// minPollWait is the shortest wait of a poll, so that a partition
	// due to be cut never makes the loop spin.
	minPollWait = time.Millisecond
	// inflightPollWait is how long a poll waits while a batch is in
	// flight, so that its end is seen soon.
	inflightPollWait = 10 * time.Millisecond
	// maxCutsPerCommit caps the sealed cuts of one partition in a flush:
	// their ends go into the commit metadata (Kafka's default
	// offset.metadata.max.bytes is 4096; 32 ends take under 700).
	maxCutsPerCommit = 32
	// maxParallelUploads is how many objects a flush uploads at once.
	maxParallelUploads = 8
	// poolIdleTrim is how long without records the sink keeps its free
	// pieces of file memory (see chunkPool) before it lets them go.
	poolIdleTrim = 30 * time.Second
	// backoffMin and backoffMax bound the wait between retries of an
	// upload or after a failed commit.
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// metaPrefix starts the commit metadata of a pending flush.
	metaPrefix = "sluice-sink/1 cuts="
)

// Options configure a Sink.
type Options struct {
	Brokers    []string
	Topics     string // regexp a topic's whole name matches
	Group      string // "" is DefaultGroup
	InstanceID string // static group membership (a restart takes over at once); "" is none
	Store      Store
	Format     format.Format
	// PartitionBy is the directory template below the topic's; nil is none.
	PartitionBy      *Template
	RollBytes        int64         // 0: DefaultRollBytes
	RollTime         time.Duration // 0: DefaultRollTime
	MaxBufferedBytes int64         // 0: DefaultMaxBufferedBytes
	SessionTimeout   time.Duration // 0: kgo's (45 s)
	// RebalanceTimeout is how long the group waits for this sink to
	// rejoin in a rebalance (it rejoins between flushes, so a flush stuck
	// on a failing store longer than this loses its partitions); 0: kgo's
	// (60 s).
	RebalanceTimeout time.Duration
	Timeout          time.Duration // 0: DefaultTimeout
	StopTimeout      time.Duration // 0: DefaultStopTimeout; <0: no final flush
	Logger           *slog.Logger
	// Audit counts each record as the audit stage "sink" once the object
	// holding it is uploaded and its offset committed (a replay after a
	// crash counts it again: the audit report dedupes by offset); nil: no
	// counting. The caller closes it after Run returns.
	Audit *audit.Counter
}

type tp struct {
	topic     string
	partition int32
}

// object is a closed file waiting for its upload.
type object struct {
	dir, name   string
	data        *chunks
	first, last int64
	records     int
	tally       *audit.Tally // its records, for Options.Audit
}

// openFile is a file taking records.
type openFile struct {
	dir         string
	f           format.File
	buf         *chunks
	size        int64 // f.Size() when last looked at
	first, last int64
	tally       audit.Tally // with Options.Audit
}

// cut is a sealed range of a partition: its files cover [first, end].
type cut struct {
	first, end int64
	objects    []*object
	records    int
}

// part is the state of one partition the sink owns; the loop owns it.
type part struct {
	tp
	loaded    bool    // the committed offset and metadata were read
	cuts      []int64 // ends of pending cuts to make again, ascending
	open      map[string]*openFile
	closed    []*object // files of the open range closed by ErrNewFile
	openFirst int64     // -1: nothing open
	openLast  int64
	openSince time.Time
	bytes     int64 // buffered: open files' sizes, closed and sealed objects
	sealed    []*cut
	rewound   bool  // rewound in this poll: its remaining records are skipped
	hw        int64 // high watermark last seen; -1 unknown
	committed int64 // the group's committed offset; -1 unknown
	// dir is the directory of the minute dirMinute (unix seconds), kept
	// when PartitionBy is byMinute: rendering it for each record was 9%
	// of the sink's CPU.
	dir       string
	dirMinute int64
}

type lagStat struct{ hw, committed int64 }

// Sink copies records to the store. Run owns it; Registry is safe to use
// concurrently.
type Sink struct {
	o   Options
	log *slog.Logger
	cl  *kgo.Client
	adm *kadm.Client
	m   *metrics

	// mu guards parts and buffered: the loop holds it while it works on a
	// poll's records, the group's revoke and lost callbacks while they
	// drop partitions (BlockRebalanceOnPoll already keeps them apart).
	mu    sync.Mutex
	parts map[tp]*part
	// buffered is the bytes of all parts; atomic, as encode's goroutines
	// add to it and read it, each for its own part.
	buffered atomic.Int64
	// inflight is the batch being flushed, if any; its goroutine sends it
	// on done when it ends, and the loop (holding mu) applies it (finish).
	inflight *batch
	done     chan *batch
	// fctx is the batches' context: Run's, until the stop timeout after
	// Run's ends (fcancel).
	fctx    context.Context
	fcancel context.CancelFunc
	// chunks are the full-size pieces of files' bytes, reused once their
	// objects are uploaded (see chunks); it keeps at most
	// Options.MaxBufferedBytes of them.
	chunks *chunkPool

	// statMu guards what /metrics reads, copied by the loop.
	statMu       sync.Mutex
	stats        map[tp]lagStat
	statBuffered int64
}

// New connects the consumer (it joins the group on the first poll).
func New(o Options) (*Sink, error) {
	if o.Store == nil || o.Format == nil {
		return nil, errors.New("BUG: sink: no store or format")
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.RollBytes <= 0 {
		o.RollBytes = DefaultRollBytes
	}
	if o.RollTime <= 0 {
		o.RollTime = DefaultRollTime
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = DefaultMaxBufferedBytes
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.PartitionBy == nil {
		o.PartitionBy = &Template{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Topics == "" {
		return nil, errors.New(`sink: no topics; give a regexp (".*" for all)`)
	}
	expr := "^(?:" + o.Topics + ")$"
	if _, err := regexp.Compile(expr); err != nil {
		return nil, fmt.Errorf("sink: --topics %q: %w", o.Topics, err)
	}
	s := &Sink{o: o, log: o.Logger, parts: map[tp]*part{}, stats: map[tp]lagStat{}, done: make(chan *batch, 1), chunks: newChunkPool(o.MaxBufferedBytes)}
	s.m = newMetrics(s)
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...), kgo.ClientID("sluice-sink"), kgo.DialTimeout(o.Timeout),
		kgo.ConsumerGroup(o.Group), kgo.ConsumeRegex(), kgo.ConsumeTopics(expr),
		// Internal topics never; nor topics named ".x": their objects
		// would be hidden files, which a directory store refuses and
		// query engines pass over.
		kgo.ConsumeExcludeTopics("__.*", `\..*`),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(s.drop), kgo.OnPartitionsLost(s.drop),
		kgo.MetadataMaxAge(30 * time.Second),
	}
	if o.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(o.RebalanceTimeout))
	}
	if o.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(o.InstanceID))
	}
	if o.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(o.SessionTimeout), kgo.HeartbeatInterval(min(o.SessionTimeout/10, 3*time.Second)))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("sink: client: %w", err)
	}
	s.cl, s.adm = cl, kadm.NewClient(cl)
	s.adm.SetTimeoutMillis(int32(o.Timeout.Milliseconds()))
	return s, nil
}

// Registry is the sink's metrics.
func (s *Sink) Registry() *prometheus.Registry { return s.m.reg }

// drop forgets partitions the group took away, without committing: their
// next owner reads them again from the committed offset and its metadata.
func (s *Sink) drop(_ context.Context, _ *kgo.Client, gone map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statMu.Lock()
	defer s.statMu.Unlock()
	for t, ps := range gone {
		for _, p := range ps {
			k := tp{t, p}
			if st := s.parts[k]; st != nil {
				s.buffered.Add(-st.bytes)
				delete(s.parts, k)
			}
			delete(s.stats, k)
		}
	}
}

// Run copies records until ctx is done or a fatal error (a format that
// cannot encode a record); then, when nothing failed, it flushes what is
// buffered within the stop timeout, and leaves the group.
//
// The loop encodes while one flush (a batch, see flush.go) runs in the
// background. It lets the group rebalance (AllowRebalance) only while no
// batch is in flight, so that no commit runs during a rebalance callback
// and none is made for a partition after it was revoked.
func (s *Sink) Run(ctx context.Context) error {
	// Batches outlive ctx by the stop timeout (stop cancels them).
	s.fctx, s.fcancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		s.fcancel()
		s.cl.AllowRebalance() // Close leaves the group: a rebalance
		s.cl.Close()
		s.chunks.trim() // for the rest of the process to reuse
	}()
	idle := min(maxPollWait, max(s.o.RollTime/4, 10*time.Millisecond))
	lastRecords := time.Now() // when a poll last had records
	for {
		if ctx.Err() != nil {
			return s.stop(ctx)
		}
		if s.inflight != nil {
			select {
			case b := <-s.done:
				s.mu.Lock()
				s.finish(s.fctx, b)
				s.mu.Unlock()
			default:
			}
		}
		wait := idle
		if s.inflight == nil {
			s.cl.AllowRebalance()
		} else {
			wait = inflightPollWait
		}
		wait = s.pollWait(wait)
		pctx, cancel := context.WithTimeout(ctx, wait)
		fs := s.cl.PollRecords(pctx, maxPollRecords)
		cancel()
		if fs.IsClientClosed() {
			return errors.New("sink: client closed")
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				s.log.Warn("fetch", "topic", t, "partition", p, "err", err)
			}
		})
		now := time.Now()
		if fs.NumRecords() > 0 {
			lastRecords = now
		} else if now.Sub(lastRecords) >= poolIdleTrim {
			s.chunks.trim() // idle: the memory goes back to the runtime
			lastRecords = now
		}
		s.mu.Lock()
		err := s.process(ctx, fs)
		s.publishStats()
		s.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				continue // stop: what is pending is finished by the next run
			}
			return err
		}
	}
}

// pollWait is how long the loop may poll: wait, or less when a
// partition's open range is due to be cut by --roll-time before then, so
// that it is cut on time, not up to a poll's wait late (a quarter of
// --roll-time, up to maxPollWait); or minPollWait when no batch is in
// flight and sealed cuts wait for one: the batch starts after the poll
// (not before: the poll is when the group may rebalance), and a poll
// that waited for records left the store idle that long between batches.
func (s *Sink) pollWait(wait time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, p := range s.parts {
		if len(p.sealed) > 0 && s.inflight == nil {
			return minPollWait
		}
		if len(p.cuts) == 0 && p.openFirst >= 0 {
			wait = min(wait, max(p.openSince.Add(s.o.RollTime).Sub(now), minPollWait))
		}
	}
	return wait
}

// stop waits for the batch in flight and flushes what else is buffered
// (not partitions replaying pending cuts), all within the stop timeout;
// what it cuts short is left to the next run, which replays the pending
// cuts.
func (s *Sink) stop(context.Context) error {
	if s.o.StopTimeout < 0 {
		s.fcancel()
	} else {
		t := time.AfterFunc(s.o.StopTimeout, s.fcancel)
		defer t.Stop()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		if err := s.finish(s.fctx, <-s.done); err != nil {
			return nil
		}
	}
	if s.fctx.Err() != nil {
		return nil
	}
	for _, p := range s.parts {
		if len(p.cuts) == 0 && p.openFirst >= 0 {
			if err := s.seal(p); err != nil {
				return err
			}
		}
	}
	for s.startBatch(s.fctx) {
		if err := s.finish(s.fctx, <-s.done); err != nil {
			s.log.Warn("stop: flush not finished; the next run completes it", "err", err)
			break
		}
	}
	return nil
}

// process takes one poll's records, makes the cuts that are due, and
// starts a batch when none is in flight.
func (s *Sink) process(ctx context.Context, fs kgo.Fetches) error {
	if err := s.load(ctx, fs); err != nil {
		return err
	}
	for _, p := range s.parts {
		p.rewound = false
	}
	var ws []*work
	byPart := map[*part]*work{}
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		p := s.parts[tp{fp.Topic, fp.Partition}]
		if p == nil {
			return
		}
		if fp.HighWatermark >= 0 {
			p.hw = fp.HighWatermark
		}
		if w := byPart[p]; w != nil {
			w.recs = append(w.recs, fp.Records...)
		} else if len(fp.Records) > 0 {
			byPart[p] = &work{p: p, recs: fp.Records}
			ws = append(ws, byPart[p])
		}
	})
	for len(ws) > 0 {
		if err := s.encode(ctx, ws); err != nil {
			return err
		}
		if s.buffered.Load() > s.o.MaxBufferedBytes {
			if err := s.relieve(ctx); err != nil {
				return err
			}
		}
		// What is left: records not taken, of partitions neither revoked
		// nor rewound (read again from where they were rewound).
		ws = slices.DeleteFunc(ws, func(w *work) bool { return len(w.recs) == 0 || w.p.rewound || s.parts[w.p.tp] != w.p })
	}
	now := time.Now()
	for _, p := range s.parts {
		if len(p.cuts) == 0 && p.openFirst >= 0 && now.Sub(p.openSince) >= s.o.RollTime {
			if err := s.seal(p); err != nil {
				return err
			}
		}
	}
	if err := s.relieve(ctx); err != nil {
		return err
	}
	if s.inflight == nil {
		s.startBatch(s.fctx)
	}
	return nil
}

// work is a partition's records of a poll not yet taken.
type work struct {
	p    *part
	recs []*kgo.Record
}

// encode adds the records of ws, partitions in parallel, up to GOMAXPROCS
// at a time: files of different partitions are independent, and encoding
// was most of the sink's CPU. A partition's records go in order by one
// goroutine, so its files and cuts are what a sequential loop makes. The
// goroutines compare the buffered bytes with the limit every
// memoryCheckRecords records between them (each every n-th of that, for n
// goroutines) and, over it, stop all, leaving each work's rest in it for
// the caller to take after relieving memory; an error stops them too, and
// the first is returned.
func (s *Sink) encode(ctx context.Context, ws []*work) error {
	var (
		next atomic.Int64 // index of the next work to take
		stop atomic.Bool
		wg   sync.WaitGroup
		mu   sync.Mutex
		err  error
	)
	n := min(len(ws), runtime.GOMAXPROCS(0))
	every := max(memoryCheckRecords/n, 1)
	run := func() {
		defer wg.Done()
		taken := 0
		var rec format.Record
		for i := next.Add(1) - 1; i < int64(len(ws)) && !stop.Load(); i = next.Add(1) - 1 {
			w := ws[i]
			for j, r := range w.recs {
				if e := s.add(ctx, w.p, r, &rec); e != nil {
					mu.Lock()
					if err == nil {
						err = e
					}
					mu.Unlock()
					stop.Store(true)
					return
				}
				if taken++; taken%every == 0 && (stop.Load() || s.buffered.Load() > s.o.MaxBufferedBytes) {
					stop.Store(true)
					w.recs = w.recs[j+1:]
					return
				}
			}
			w.recs = nil
		}
	}
	wg.Add(n)
	for range n - 1 {
		go run()
	}
	run()
	wg.Wait()
	return err
}

// relieve keeps the buffered bytes near the limit: it cuts the largest
// partitions until their open files are under it, and, when the total is
// still over it, waits for the batch in flight (no poll meanwhile) and
// starts the next.
func (s *Sink) relieve(ctx context.Context) error {
	for s.buffered.Load()-s.sealedBytes() > s.o.MaxBufferedBytes {
		var big *part
		for _, p := range s.parts {
			if len(p.cuts) == 0 && p.openFirst >= 0 && (big == nil || p.bytes > big.bytes) {
				big = p
			}
		}
		if big == nil {
			break // only replays: they were under the limit when first cut
		}
		if err := s.seal(big); err != nil {
			return err
		}
	}
	if s.buffered.Load() <= s.o.MaxBufferedBytes {
		return nil
	}
	if s.inflight != nil {
		select {
		case b := <-s.done:
			s.finish(s.fctx, b)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.startBatch(s.fctx)
	return nil
}

func (s *Sink) sealedBytes() int64 {
	var n int64
	for _, p := range s.parts {
		for _, c := range p.sealed {
			for _, o := range c.objects {
				n += o.data.Len()
			}
		}
	}
	return n
}

// load reads the committed offset and metadata of the partitions in fs
// that the sink has no state for (newly assigned), retrying until it can.
func (s *Sink) load(ctx context.Context, fs kgo.Fetches) error {
	var need []tp
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		k := tp{fp.Topic, fp.Partition}
		if s.parts[k] == nil && len(fp.Records) > 0 {
			need = append(need, k)
		}
	})
	if len(need) == 0 {
		return nil
	}
	topics := map[string]bool{}
	for _, k := range need {
		topics[k.topic] = true
	}
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	for backoff := backoffMin; ; backoff = min(2*backoff, backoffMax) {
		resps, err := s.adm.FetchOffsetsForTopics(ctx, s.o.Group, names...)
		if err == nil {
			err = resps.Error()
		}
		if err == nil {
			for _, k := range need {
				p := &part{tp: k, loaded: true, openFirst: -1, hw: -1, committed: -1, open: map[string]*openFile{}}
				if o, ok := resps.Lookup(k.topic, k.partition); ok && o.At >= 0 {
					p.committed = o.At
					p.cuts = parseCuts(o.Metadata)
					if len(p.cuts) > 0 {
						s.log.Info("replaying a pending flush", "topic", k.topic, "partition", k.partition, "from", o.At, "cuts", p.cuts)
					}
				}
				s.parts[k] = p
			}
			return nil
		}
		s.log.Warn("read committed offsets; retrying", "group", s.o.Group, "err", err)
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
	}
}

// parseCuts reads the ends of a pending flush from commit metadata; other
// metadata (none, or another tool's) has none.
func parseCuts(meta string) []int64 {
	rest, ok := strings.CutPrefix(meta, metaPrefix)
	if !ok || rest == "" {
		return nil
	}
	var ends []int64
	for _, f := range strings.Split(rest, ",") {
		e, err := strconv.ParseInt(f, 10, 64)
		if err != nil || len(ends) > 0 && e <= ends[len(ends)-1] {
			return nil
		}
		ends = append(ends, e)
	}
	return ends
}

func formatCuts(cuts []*cut) string {
	b := []byte(metaPrefix)
	for i, c := range cuts {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, c.end, 10)
	}
	return string(b)
}

// add puts r into p's open files, making the cuts it calls for. rec is
// the caller's to reuse for each record (formats keep no *Record, and a
// new one for each escaped to the heap: 14 % of add's CPU).
func (s *Sink) add(ctx context.Context, p *part, r *kgo.Record, rec *format.Record) error {
	// A pending cut whose end record is gone (or was a marker): cut there.
	for len(p.cuts) > 0 && r.Offset > p.cuts[0] {
		if p.openFirst >= 0 {
			if err := s.seal(p); err != nil {
				return err
			}
		}
		p.cuts = p.cuts[1:]
	}
	*rec = format.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value,
		Headers: rec.Headers[:0]}
	for _, h := range r.Headers {
		rec.Headers = append(rec.Headers, format.Header{Key: h.Key, Value: h.Value})
	}
	dir := p.dir
	minute := r.Timestamp.Truncate(time.Minute).Unix()
	if dir == "" || minute != p.dirMinute || !s.o.PartitionBy.byMinute() {
		dir = r.Topic
		if sub := s.o.PartitionBy.Render(rec); sub != "" {
			dir += "/" + sub
		}
		p.dir, p.dirMinute = dir, minute
	}
	f := p.open[dir]
	if f == nil {
		var err error
		if f, err = s.newFile(dir, r.Offset); err != nil {
			return err
		}
		p.open[dir] = f
	}
	err := s.appendRecord(ctx, f.f, rec)
	if errors.Is(err, format.ErrNewFile) && f.f.Records() > 0 {
		if err = s.closeFile(p, f); err != nil {
			return err
		}
		if f, err = s.newFile(dir, r.Offset); err != nil {
			return err
		}
		p.open[dir] = f
		err = s.appendRecord(ctx, f.f, rec)
	}
	if err != nil {
		return fmt.Errorf("sink: %s: encode %s[%d] offset %d: %w", s.o.Format.Name(), r.Topic, r.Partition, r.Offset, err)
	}
	if s.o.Audit != nil {
		f.tally.Count(r.Topic, r.Partition, r.Offset, r.Timestamp)
	}
	if f.f.Records() == 1 {
		f.first = r.Offset
	}
	f.last = r.Offset
	size := f.f.Size()
	p.bytes += size - f.size
	s.buffered.Add(size - f.size)
	f.size = size
	if p.openFirst < 0 {
		p.openFirst, p.openSince = r.Offset, time.Now()
	}
	p.openLast = r.Offset
	switch {
	case len(p.cuts) > 0:
		if r.Offset == p.cuts[0] {
			p.cuts = p.cuts[1:]
			return s.seal(p)
		}
	case size >= s.o.RollBytes:
		return s.seal(p)
	}
	return nil
}

// appendRecord appends rec to f, waiting out a schema registry that does
// not answer: consumption stops meanwhile (backpressure, as for a slow
// store), and nothing is skipped. Any other error is final: a value that
// never decodes (format.ErrUndecodable) stops the sink at its offset, as
// Kafka Connect does by default, rather than drop it.
func (s *Sink) appendRecord(ctx context.Context, f format.File, rec *format.Record) error {
	wait := backoffMin
	for {
		err := f.Append(ctx, rec)
		if !errors.Is(err, format.ErrRegistryUnavailable) || ctx.Err() != nil {
			return err
		}
		s.log.Warn("schema registry unavailable; retrying", "topic", rec.Topic, "partition", rec.Partition,
			"offset", rec.Offset, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, backoffMax)
	}
}

func (s *Sink) newFile(dir string, first int64) (*openFile, error) {
	buf := &chunks{pool: s.chunks}
	f, err := s.o.Format.NewFile(buf)
	if err != nil {
		return nil, fmt.Errorf("sink: %s: new file: %w", s.o.Format.Name(), err)
	}
	return &openFile{dir: dir, f: f, buf: buf, first: first}, nil
}

// closeFile closes f into an object of p's open range.
func (s *Sink) closeFile(p *part, f *openFile) error {
	if err := f.f.Close(); err != nil {
		return fmt.Errorf("sink: %s: close file: %w", s.o.Format.Name(), err)
	}
	p.bytes += f.buf.Len() - f.size
	s.buffered.Add(f.buf.Len() - f.size)
	p.closed = append(p.closed, &object{dir: f.dir, data: f.buf, first: f.first, last: f.last, records: f.f.Records(), tally: &f.tally,
		name: fmt.Sprintf("%s+%d+%020d+%020d%s", p.topic, p.partition, f.first, f.last, s.o.Format.Ext())})
	delete(p.open, f.dir)
	return nil
}

// seal cuts p's open range: all its files are closed into a cut.
func (s *Sink) seal(p *part) error {
	dirs := make([]string, 0, len(p.open))
	for d := range p.open {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		if err := s.closeFile(p, p.open[d]); err != nil {
			return err
		}
	}
	c := &cut{first: p.openFirst, end: p.openLast, objects: p.closed}
	for _, o := range c.objects {
		c.records += o.records
	}
	p.sealed = append(p.sealed, c)
	p.closed = nil
	p.openFirst = -1
	return nil
}

// publishStats copies what /metrics reads.
func (s *Sink) publishStats() {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	for k, p := range s.parts {
		s.stats[k] = lagStat{hw: p.hw, committed: p.committed}
	}
	s.statBuffered = s.buffered.Load()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
