package format

import (
	"fmt"

	"github.com/parquet-go/parquet-go"
)

// shredder turns one record into a Parquet row: the column values of each
// leaf, with their repetition and definition levels (Dremel's encoding),
// gathered per column and then laid out in column order as parquet-go
// wants a Row. A walk reads the Avro payload once.
type shredder struct {
	cols [][]parquet.Value
	row  parquet.Row
	w    avroWalk
	size int64 // the row's value bytes, for Size
	// topic is the last record's topic as bytes, made again only when
	// the topic changes (a conversion per row was 6 % of the CPU); rows
	// held by the file point to it, so it is replaced, never written to.
	topic []byte
}

func (s *shredder) reset(ncols int) {
	if cap(s.cols) < ncols {
		s.cols = make([][]parquet.Value, ncols)
	}
	s.cols = s.cols[:ncols]
	for i := range s.cols {
		s.cols[i] = s.cols[i][:0]
	}
	s.size = 0
	s.w.items = 0
}

func (s *shredder) emit(col int, v parquet.Value, rep, def int) {
	s.cols[col] = append(s.cols[col], v.Level(rep, def, col))
	s.size += 8
}

func (s *shredder) emitBytes(col int, b []byte, rep, def int) {
	s.cols[col] = append(s.cols[col], parquet.ByteArrayValue(b).Level(rep, def, col))
	s.size += int64(len(b)) + 4
}

func (s *shredder) emitFixed(col int, b []byte, rep, def int) {
	s.cols[col] = append(s.cols[col], parquet.FixedLenByteArrayValue(b).Level(rep, def, col))
	s.size += int64(len(b))
}

// nulls emits a null for every leaf under p: p, or what holds it, is
// absent at this definition level.
func (s *shredder) nulls(p *pq, rep, def int) {
	for c := p.first; c < p.end; c++ {
		s.cols[c] = append(s.cols[c], parquet.NullValue().Level(rep, def, c))
	}
}

// finish lays the columns out as a row.
func (s *shredder) finish() parquet.Row {
	s.row = s.row[:0]
	for _, c := range s.cols {
		s.row = append(s.row, c...)
	}
	return s.row
}

// metadata shreds a record's metadata columns.
func (s *shredder) metadata(r *Record) {
	if string(s.topic) != r.Topic {
		s.topic = []byte(r.Topic)
	}
	s.emitBytes(colTopic, s.topic, 0, 0)
	s.emit(colPartition, parquet.Int32Value(r.Partition), 0, 0)
	s.emit(colOffset, parquet.Int64Value(r.Offset), 0, 0)
	s.emit(colTimestamp, parquet.Int64Value(r.Timestamp.UnixMilli()), 0, 0)
	if r.Key == nil {
		s.cols[colKey] = append(s.cols[colKey], parquet.NullValue().Level(0, 0, colKey))
	} else {
		s.emitBytes(colKey, r.Key, 0, 1)
	}
	if len(r.Headers) == 0 {
		s.cols[colHeaderKey] = append(s.cols[colHeaderKey], parquet.NullValue().Level(0, 0, colHeaderKey))
		s.cols[colHeaderValue] = append(s.cols[colHeaderValue], parquet.NullValue().Level(0, 0, colHeaderValue))
		return
	}
	for i, h := range r.Headers {
		rep := 0
		if i > 0 {
			rep = 1
		}
		s.emitBytes(colHeaderKey, []byte(h.Key), rep, 1)
		if h.Value == nil {
			s.cols[colHeaderValue] = append(s.cols[colHeaderValue], parquet.NullValue().Level(rep, 1, colHeaderValue))
		} else {
			s.emitBytes(colHeaderValue, h.Value, rep, 2)
		}
	}
}

// avro shreds one value of p read from s.w.r. rep and def are the levels
// of p's parent; p is present.
func (s *shredder) avro(p *pq, rep, def int) error {
	r := s.w.r
	switch p.kind {
	case pqNullable, pqUnion:
		i, err := s.w.unionBranch(p.a)
		if err != nil {
			return err
		}
		if i == p.nullIdx {
			s.nulls(p, rep, def)
			return nil
		}
		if p.kind == pqNullable {
			return s.avro(p.children[i], rep, def)
		}
		if p.optional {
			def++
		}
		for j, c := range p.children {
			switch {
			case c == nil:
			case j == i:
				if err := s.avro(c, rep, def); err != nil {
					return err
				}
			default:
				s.nulls(c, rep, def)
			}
		}
		return nil
	}
	if p.optional {
		def++
	}
	switch p.kind {
	case pqGroup:
		for _, c := range p.children {
			if err := s.avro(c, rep, def); err != nil {
				return err
			}
		}
		return nil
	case pqList, pqMap:
		n := 0
		err := s.w.blocks(func() error {
			itemRep := rep
			if n > 0 {
				itemRep = p.rep
			}
			n++
			if p.kind == pqMap {
				s.emitBytes(p.col, r.ReadBytes(), itemRep, def+1)
			}
			return s.avro(p.children[0], itemRep, def+1)
		})
		if err != nil {
			return err
		}
		if n == 0 {
			s.nulls(p, rep, def)
		}
		return nil
	}
	return s.leaf(p, rep, def)
}

func (s *shredder) leaf(p *pq, rep, def int) error {
	r, col := s.w.r, p.col
	switch p.a.kind {
	case aBoolean:
		s.emit(col, parquet.BooleanValue(r.ReadBool()), rep, def)
	case aInt, aDate, aTimeMillis:
		s.emit(col, parquet.Int32Value(r.ReadInt()), rep, def)
	case aLong, aTimeMicros, aTimestampMillis, aTimestampMicros, aLocalTsMillis, aLocalTsMicros:
		s.emit(col, parquet.Int64Value(r.ReadLong()), rep, def)
	case aFloat:
		s.emit(col, parquet.FloatValue(r.ReadFloat()), rep, def)
	case aDouble:
		s.emit(col, parquet.DoubleValue(r.ReadDouble()), rep, def)
	case aString, aBytes, aDecimalBytes:
		s.emitBytes(col, r.ReadBytes(), rep, def)
	case aEnum:
		sym, err := s.w.enumSymbol(p.a)
		if err != nil {
			return err
		}
		s.emitBytes(col, []byte(sym), rep, def)
	case aFixed, aDecimalFixed:
		b := make([]byte, p.a.size)
		r.Read(b)
		s.emitFixed(col, b, rep, def)
	case aUUID:
		text := r.ReadBytes()
		if err := s.w.readErr(); err != nil {
			return err
		}
		u, ok := parseUUID(text)
		if !ok {
			return fmt.Errorf("%w: %q is not a uuid", ErrUndecodable, text)
		}
		s.emitFixed(col, u, rep, def)
	default:
		return fmt.Errorf("BUG: avro kind %d in a Parquet leaf", p.a.kind)
	}
	return s.w.readErr()
}

// parseUUID reads the text form of a UUID, 8-4-4-4-12 hex digits.
func parseUUID(text []byte) ([]byte, bool) {
	if len(text) != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-' {
		return nil, false
	}
	u := make([]byte, 0, 16)
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := hexDigit(text[i])
		lo, ok2 := hexDigit(text[i+1])
		if !ok1 || !ok2 {
			return nil, false
		}
		u = append(u, hi<<4|lo)
		i += 2
	}
	return u, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
