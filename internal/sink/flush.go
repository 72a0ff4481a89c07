package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/backup"
)

// batch is a flush: sealed cuts of some partitions, written by one
// goroutine (run) while the loop goes on encoding. The goroutine reads
// only the cuts and the partitions' names; the loop applies the result
// (finish).
type batch struct {
	parts []batchPart
	stage string // where it failed: "pending" or "end" commit, or "upload"
	err   error
}

type batchPart struct {
	p    *part
	cuts []*cut
}

// startBatch moves up to maxCutsPerCommit sealed cuts of every partition
// into a batch and starts it; it says whether there was anything to flush.
func (s *Sink) startBatch(ctx context.Context) bool {
	if s.inflight != nil {
		panic("BUG: sink: a batch while one is in flight")
	}
	b := &batch{}
	for _, p := range s.parts {
		if len(p.sealed) == 0 {
			continue
		}
		n := min(len(p.sealed), maxCutsPerCommit)
		b.parts = append(b.parts, batchPart{p: p, cuts: p.sealed[:n:n]})
		p.sealed = p.sealed[n:]
	}
	if len(b.parts) == 0 {
		return false
	}
	s.inflight = b
	go func() {
		b.stage, b.err = s.run(ctx, b)
		s.done <- b
	}()
	return true
}

// run writes b: pending commit, uploads, end commit (see the package doc).
func (s *Sink) run(ctx context.Context, b *batch) (string, error) {
	pending := map[string]map[int32]kgo.EpochOffset{}
	ends := map[string]map[int32]kgo.EpochOffset{}
	meta := map[tp]string{}
	var objs []*object
	for _, bp := range b.parts {
		setOffset(pending, bp.p.tp, bp.cuts[0].first)
		setOffset(ends, bp.p.tp, bp.cuts[len(bp.cuts)-1].end+1)
		meta[bp.p.tp] = formatCuts(bp.cuts)
		for _, c := range bp.cuts {
			objs = append(objs, c.objects...)
		}
	}
	if err := s.commit(ctx, pending, meta); err != nil {
		return "pending", err
	}
	if err := s.upload(ctx, objs); err != nil {
		return "upload", err
	}
	if err := s.commit(ctx, ends, nil); err != nil {
		return "end", err
	}
	return "", nil
}

// finish applies the batch b that ended: counts what it wrote, or, when
// a commit failed, rewinds its partitions to their first offset in it
// with the cuts it tried (and the later ones) kept as pending, or, when
// ctx ended it, forgets its partitions (their next run replays them). It
// returns ctx's error in that last case.
func (s *Sink) finish(ctx context.Context, b *batch) error {
	s.inflight = nil
	defer s.publishStats()
	if b.err == nil {
		for _, bp := range b.parts {
			var n int64
			for _, c := range bp.cuts {
				s.m.records.WithLabelValues(bp.p.topic).Add(float64(c.records))
				for _, o := range c.objects {
					n += o.data.Len()
					s.o.Audit.CountTally(o.tally) // a nil Counter counts nothing
					o.data.release()              // uploaded: nothing reads it again
				}
			}
			s.m.bytes.WithLabelValues(bp.p.topic).Add(float64(n))
			bp.p.bytes -= n
			if s.parts[bp.p.tp] == bp.p {
				s.buffered.Add(-n)
				bp.p.committed = bp.cuts[len(bp.cuts)-1].end + 1
			}
		}
		s.m.lastFlush.Set(float64(time.Now().UnixNano()) / 1e9)
		return nil
	}
	if ctx.Err() != nil {
		for _, bp := range b.parts {
			if s.parts[bp.p.tp] == bp.p {
				s.buffered.Add(-bp.p.bytes)
				delete(s.parts, bp.p.tp)
			}
		}
		return ctx.Err()
	}
	s.m.commits.Inc()
	s.log.Warn("offset commit failed; reading the flushed records again", "commit", b.stage, "err", b.err)
	rewind := map[string]map[int32]kgo.EpochOffset{}
	for _, bp := range b.parts {
		p := bp.p
		if s.parts[p.tp] != p {
			continue // revoked or lost meanwhile
		}
		var cuts []int64
		for _, c := range bp.cuts {
			cuts = append(cuts, c.end)
		}
		for _, c := range p.sealed {
			cuts = append(cuts, c.end)
		}
		p.cuts = append(cuts, p.cuts...)
		s.buffered.Add(-p.bytes)
		p.bytes = 0
		p.sealed, p.closed, p.openFirst = nil, nil, -1
		clear(p.open)
		p.rewound = true
		setOffset(rewind, p.tp, bp.cuts[0].first)
	}
	s.cl.SetOffsets(rewind)
	return sleep(ctx, backoffMax)
}

func setOffset(m map[string]map[int32]kgo.EpochOffset, k tp, at int64) {
	if m[k.topic] == nil {
		m[k.topic] = map[int32]kgo.EpochOffset{}
	}
	m[k.topic][k.partition] = kgo.EpochOffset{Epoch: -1, Offset: at}
}

// commit commits offs for the group (with its generation, so a member
// that was fenced fails) with meta's metadata per partition ("" where
// meta has none).
func (s *Sink) commit(ctx context.Context, offs map[string]map[int32]kgo.EpochOffset, meta map[tp]string) error {
	cctx := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				m := meta[tp{t.Topic, t.Partitions[j].Partition}]
				t.Partitions[j].Metadata = &m
			}
		}
		return nil
	})
	var rerr error
	s.cl.CommitOffsetsSync(cctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && rerr == nil {
					rerr = fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, err)
				}
			}
		}
	})
	return rerr
}

// upload writes objs to the store, maxParallelUploads at a time, each
// retried with backoff until it is written; only ctx ends it early.
func (s *Sink) upload(ctx context.Context, objs []*object) error {
	work := make(chan *object)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(maxParallelUploads, len(objs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				if err := s.put(ctx, o); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, o := range objs {
		if ctx.Err() != nil {
			break
		}
		work <- o
	}
	close(work)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// put writes o, retrying until it is written or ctx ends.
func (s *Sink) put(ctx context.Context, o *object) error {
	for backoff := backoffMin; ; backoff = min(2*backoff, backoffMax) {
		err := s.write(o)
		if err == nil {
			s.m.objects.Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.m.errors.Inc()
		s.log.Warn("upload failed; retrying", "dir", o.dir, "object", o.name, "in", backoff, "err", err)
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
	}
}

// putter is a Target that writes a file of known size in one call
// (backup.S3: one PUT, without Create's pipe and part buffer).
type putter interface {
	Put(name string, r io.Reader, size int64) error
}

func (s *Sink) write(o *object) error {
	t, err := s.o.Store.Dir(o.dir)
	if err != nil {
		return err
	}
	if p, ok := t.(putter); ok {
		return p.Put(o.name, o.data.reader(), o.data.Len())
	}
	w, err := t.Create(o.name)
	if err != nil {
		return err
	}
	if _, err := o.data.WriteTo(w); err != nil {
		return errors.Join(err, backup.Abort(w))
	}
	return w.Close()
}
