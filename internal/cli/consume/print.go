package consume

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// printBufferBytes is how much output is buffered between flushes (a
// flush also ends every poll).
const printBufferBytes = 64 << 10

// printer writes records to stdout through a buffer and knows which of them
// reached it: a record is printed once every byte of it was written to
// stdout without error. Used by one goroutine.
type printer struct {
	fm        formatter
	out       *countingWriter
	w         *bufio.Writer
	buf       []byte
	queued    int64             // bytes handed to w
	pending   []pendingRecord   // handed to w, not yet known printed
	printed   int               // records printed or pending
	onPrinted func(*kgo.Record) // nil: nothing to tell
	// dec, if set, decodes records in Confluent's wire format (--decode).
	dec *decoder
}

type pendingRecord struct {
	r   *kgo.Record
	end int64 // queued once its last byte was
}

// countingWriter counts the bytes its writer took.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newPrinter(w io.Writer, fm formatter, onPrinted func(*kgo.Record)) *printer {
	cw := &countingWriter{w: w}
	return &printer{fm: fm, out: cw, w: bufio.NewWriterSize(cw, printBufferBytes), onPrinted: onPrinted}
}

// print formats r into the buffer.
func (p *printer) print(r *kgo.Record) error {
	p.buf = p.fm.append(p.buf[:0], r)
	n, err := p.w.Write(p.buf)
	p.queued += int64(n)
	p.printed++
	if p.onPrinted != nil {
		p.pending = append(p.pending, pendingRecord{r: r, end: p.queued})
	}
	if err != nil {
		p.settle()
		return err
	}
	return nil
}

// flush writes out the buffer and tells which records reached stdout.
func (p *printer) flush() error {
	err := p.w.Flush()
	p.settle()
	return err
}

// settle tells onPrinted of the pending records stdout took whole.
func (p *printer) settle() {
	i := 0
	for ; i < len(p.pending) && p.pending[i].end <= p.out.n; i++ {
		p.onPrinted(p.pending[i].r)
	}
	p.pending = p.pending[i:]
	if len(p.pending) == 0 {
		p.pending = p.pending[:0:0] // let the records go
	}
}

// printFetches prints the records of fs that accept takes, then flushes.
// It stops after --count records or when accept says so, and fails on a
// fetch error (once what was printed before it is flushed).
func (p *printer) printFetches(ctx context.Context, o Options, fs kgo.Fetches, accept func(*kgo.Record) (print, stop bool)) (stop bool, err error) {
	var errs []string
	fs.EachError(func(t string, part int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		errs = append(errs, fmt.Sprintf("%s/%d: %v", t, part, err))
	})
	if len(errs) > 0 {
		return true, errors.Join(fmt.Errorf("consume %s: %s", o.Topic, strings.Join(errs, "; ")), p.flush())
	}
	for it := fs.RecordIter(); !it.Done() && !stop; {
		r := it.Next()
		var ok bool
		ok, stop = accept(r)
		if !ok {
			continue
		}
		if p.dec != nil {
			p.dec.record(ctx, r)
		}
		if err := p.print(r); err != nil {
			return true, err
		}
		if o.Count > 0 && p.printed >= o.Count {
			stop = true
		}
	}
	if err := p.flush(); err != nil {
		return true, err
	}
	return stop, nil
}
