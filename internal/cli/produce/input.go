package produce

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"
)

// inputBufferBytes is the read buffer of stdin or a file read as records.
const inputBufferBytes = 64 << 10

// source yields the records of the input, one at a time, in order.
type source interface {
	// next returns the next record (Partition -1 unless the input gave
	// one), or io.EOF after the last.
	next() (*kgo.Record, error)
}

// delimited splits its input at delim into records, and each record into
// key and value at the first keyDelim, if any (a record without it has no
// key). A last record without delim is a record too.
type delimited struct {
	br              *bufio.Reader
	delim, keyDelim []byte
	limit           int // bytes of a record, key and value together
	n               int64
	done            bool
}

func (d *delimited) next() (*kgo.Record, error) {
	if d.done {
		return nil, io.EOF
	}
	b, err := readUntil(d.br, d.delim, d.limit, &d.n)
	if err == io.EOF {
		d.done = true
		if len(b) == 0 {
			return nil, io.EOF
		}
		err = nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) > d.limit {
		return nil, errRecordTooLarge
	}
	r := &kgo.Record{Value: b, Partition: -1}
	if len(d.keyDelim) > 0 {
		if i := bytes.Index(b, d.keyDelim); i >= 0 {
			r.Key, r.Value = b[:i], b[i+len(d.keyDelim):]
		}
	}
	return r, nil
}

// byFormat reads records by a --format.
type byFormat struct{ *formatReader }

// wholeFiles makes each file one record, its content the value (kcat -P
// with file arguments).
type wholeFiles struct {
	paths []string
	limit int
	i     int
}

func (w *wholeFiles) next() (*kgo.Record, error) {
	if w.i == len(w.paths) {
		return nil, io.EOF
	}
	path := w.paths[w.i]
	w.i++
	b, err := readWhole(path, w.limit)
	if err != nil {
		return nil, fmt.Errorf("file %s: %w", path, err)
	}
	return &kgo.Record{Value: b, Partition: -1}, nil
}

// readWhole reads a file of at most limit bytes; a regular file's size is
// checked before it is read.
func readWhole(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > int64(limit) {
		return nil, errRecordTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, errRecordTooLarge
	}
	return b, nil
}
