package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/backup"
)

// flush writes every sealed cut: pending commit, uploads, end commit (see
// the package doc). It returns an error only when ctx ends; a failed
// commit rewinds the partitions it was for.
func (s *Sink) flush(ctx context.Context) error {
	var ps []*part
	for _, p := range s.parts {
		if len(p.sealed) > 0 {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	pending := map[string]map[int32]kgo.EpochOffset{}
	meta := map[tp]string{}
	var objs []*object
	for _, p := range ps {
		setOffset(pending, p.tp, p.sealed[0].first)
		meta[p.tp] = formatCuts(p.sealed)
		for _, c := range p.sealed {
			objs = append(objs, c.objects...)
		}
	}
	if err := s.commit(ctx, pending, meta); err != nil {
		return s.commitFailed(ctx, ps, "pending", err)
	}
	if err := s.upload(ctx, objs); err != nil {
		return err
	}
	ends := map[string]map[int32]kgo.EpochOffset{}
	for _, p := range ps {
		setOffset(ends, p.tp, p.sealed[len(p.sealed)-1].end+1)
	}
	if err := s.commit(ctx, ends, nil); err != nil {
		return s.commitFailed(ctx, ps, "end", err)
	}
	for _, p := range ps {
		var n int64
		for _, c := range p.sealed {
			s.m.records.WithLabelValues(p.topic).Add(float64(c.records))
			for _, o := range c.objects {
				n += int64(len(o.data))
			}
		}
		s.m.bytes.WithLabelValues(p.topic).Add(float64(n))
		p.bytes -= n
		s.buffered -= n
		p.committed = p.sealed[len(p.sealed)-1].end + 1
		p.sealed = nil
	}
	s.m.lastFlush.Set(float64(time.Now().UnixNano()) / 1e9)
	return nil
}

func setOffset(m map[string]map[int32]kgo.EpochOffset, k tp, at int64) {
	if m[k.topic] == nil {
		m[k.topic] = map[int32]kgo.EpochOffset{}
	}
	m[k.topic][k.partition] = kgo.EpochOffset{Epoch: -1, Offset: at}
}

// commitFailed rewinds ps to their first sealed offset, keeping the cuts
// that were tried as pending (the commit may have taken effect), waits a
// little, and goes on; or returns ctx's error.
func (s *Sink) commitFailed(ctx context.Context, ps []*part, which string, err error) error {
	s.m.commits.Inc()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.log.Warn("offset commit failed; reading the flushed records again", "commit", which, "err", err)
	rewind := map[string]map[int32]kgo.EpochOffset{}
	for _, p := range ps {
		at := p.sealed[0].first
		cuts := make([]int64, 0, len(p.sealed)+len(p.cuts))
		for _, c := range p.sealed {
			cuts = append(cuts, c.end)
		}
		p.cuts = append(cuts, p.cuts...)
		s.buffered -= p.bytes
		p.bytes = 0
		p.sealed, p.closed, p.openFirst = nil, nil, -1
		clear(p.open)
		p.rewound = true
		setOffset(rewind, p.tp, at)
	}
	s.cl.SetOffsets(rewind)
	return sleep(ctx, backoffMax)
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

func (s *Sink) write(o *object) error {
	t, err := s.o.Store.Dir(o.dir)
	if err != nil {
		return err
	}
	w, err := t.Create(o.name)
	if err != nil {
		return err
	}
	if _, err := w.Write(o.data); err != nil {
		return errors.Join(err, backup.Abort(w))
	}
	return w.Close()
}
