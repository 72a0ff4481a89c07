package format

import (
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"
)

// An Avro value is read with hamba/avro's Reader, walking a plan compiled
// once per schema (anode) rather than decoding into maps: the Parquet
// writer turns the value into column values as it reads it, and the Avro
// writer only checks that the payload is one whole value of its schema.
// Both walks bound what hostile bytes can make them do: every array or map
// item counts against maxValueItems, and a bytes or string length against
// maxFieldBytes, so a value that claims 2^62 items fails instead of
// looping.

// maxValueItems bounds the array and map items of one value (all levels
// together): a Kafka value of a few MiB holds fewer; bytes claiming more are
// rejected.
const maxValueItems = 1 << 22

// maxFieldBytes bounds one Avro bytes or string field; the decoder
// allocates up to this much for a length it reads before the bytes.
const maxFieldBytes = 16 << 20

// ErrUndecodable says a value is in the registry's wire format but its
// payload is not a value of its schema (truncated, trailing bytes, an out of
// range union branch or enum symbol, ...). The record will never decode:
// a caller may set it aside instead of retrying.
var ErrUndecodable = errors.New("sink/format: value does not decode with its schema")

// avroConfig is hamba's decoder configuration with our field limit.
var avroConfig = avro.Config{MaxByteSliceSize: maxFieldBytes}.Freeze()

// akind is an Avro type with its logical type folded in.
type akind uint8

const (
	aNull akind = iota
	aBoolean
	aInt
	aLong
	aFloat
	aDouble
	aString
	aBytes
	aFixed
	aEnum
	aRecord
	aArray
	aMap
	aUnion
	aDate            // int
	aTimeMillis      // int
	aTimeMicros      // long
	aTimestampMillis // long
	aTimestampMicros // long
	aLocalTsMillis   // long
	aLocalTsMicros   // long
	aDecimalBytes    // bytes
	aDecimalFixed    // fixed
	aUUID            // string
)

// anode is one node of a compiled Avro schema. Named types are compiled
// once, so a recursive schema is a graph with a cycle: the skip walk
// follows it, the Parquet mapping refuses it.
type anode struct {
	kind      akind
	name      string // full name of a named type, for union branches and errors
	size      int    // fixed
	precision int    // decimal
	scale     int    // decimal
	symbols   []string
	fields    []afield // record
	items     *anode   // array items, map values
	branches  []*anode // union
}

type afield struct {
	name string
	node *anode
}

// compileAvro compiles a parsed schema.
func compileAvro(s avro.Schema) (*anode, error) {
	return compileNode(s, map[string]*anode{})
}

func compileNode(s avro.Schema, named map[string]*anode) (*anode, error) {
	if ref, ok := s.(*avro.RefSchema); ok {
		s = ref.Schema()
	}
	if n, ok := s.(avro.NamedSchema); ok {
		if a, ok := named[n.FullName()]; ok {
			return a, nil
		}
	}
	var logical avro.LogicalType
	if lt, ok := s.(avro.LogicalTypeSchema); ok && lt.Logical() != nil {
		logical = lt.Logical().Type()
	}
	switch s := s.(type) {
	case *avro.PrimitiveSchema:
		return compilePrimitive(s, logical)
	case *avro.FixedSchema:
		a := &anode{kind: aFixed, name: s.FullName(), size: s.Size()}
		if d, ok := s.Logical().(*avro.DecimalLogicalSchema); ok && logical == avro.Decimal {
			a.kind, a.precision, a.scale = aDecimalFixed, d.Precision(), d.Scale()
		}
		named[s.FullName()] = a
		return a, nil
	case *avro.EnumSchema:
		a := &anode{kind: aEnum, name: s.FullName(), symbols: s.Symbols()}
		named[s.FullName()] = a
		return a, nil
	case *avro.RecordSchema:
		a := &anode{kind: aRecord, name: s.FullName()}
		named[s.FullName()] = a // before the fields: they may refer to it
		for _, f := range s.Fields() {
			fa, err := compileNode(f.Type(), named)
			if err != nil {
				return nil, fmt.Errorf("field %s.%s: %w", s.FullName(), f.Name(), err)
			}
			a.fields = append(a.fields, afield{name: f.Name(), node: fa})
		}
		return a, nil
	case *avro.ArraySchema:
		items, err := compileNode(s.Items(), named)
		if err != nil {
			return nil, err
		}
		return &anode{kind: aArray, items: items}, nil
	case *avro.MapSchema:
		values, err := compileNode(s.Values(), named)
		if err != nil {
			return nil, err
		}
		return &anode{kind: aMap, items: values}, nil
	case *avro.UnionSchema:
		a := &anode{kind: aUnion}
		for _, b := range s.Types() {
			ba, err := compileNode(b, named)
			if err != nil {
				return nil, err
			}
			a.branches = append(a.branches, ba)
		}
		return a, nil
	case *avro.NullSchema:
		return &anode{kind: aNull}, nil
	}
	return nil, fmt.Errorf("avro type %s is not supported", s.Type())
}

func compilePrimitive(s *avro.PrimitiveSchema, logical avro.LogicalType) (*anode, error) {
	a := &anode{}
	switch s.Type() {
	case avro.Null:
		a.kind = aNull
	case avro.Boolean:
		a.kind = aBoolean
	case avro.Int:
		a.kind = aInt
		switch logical {
		case avro.Date:
			a.kind = aDate
		case avro.TimeMillis:
			a.kind = aTimeMillis
		}
	case avro.Long:
		a.kind = aLong
		switch logical {
		case avro.TimeMicros:
			a.kind = aTimeMicros
		case avro.TimestampMillis:
			a.kind = aTimestampMillis
		case avro.TimestampMicros:
			a.kind = aTimestampMicros
		case avro.LocalTimestampMillis:
			a.kind = aLocalTsMillis
		case avro.LocalTimestampMicros:
			a.kind = aLocalTsMicros
		}
	case avro.Float:
		a.kind = aFloat
	case avro.Double:
		a.kind = aDouble
	case avro.String:
		a.kind = aString
		if logical == avro.UUID {
			a.kind = aUUID
		}
	case avro.Bytes:
		a.kind = aBytes
		if d, ok := s.Logical().(*avro.DecimalLogicalSchema); ok && logical == avro.Decimal {
			a.kind, a.precision, a.scale = aDecimalBytes, d.Precision(), d.Scale()
		}
	default:
		return nil, fmt.Errorf("avro type %s is not supported", s.Type())
	}
	return a, nil
}

// avroWalk is the state of one value's walk.
type avroWalk struct {
	r     *avro.Reader
	items int // array and map items so far
	depth int // nesting of the skip walk
}

// maxValueDepth bounds the nesting of a value of a recursive schema (a
// tree, a linked list), so that hostile bytes cannot grow the stack
// without end.
const maxValueDepth = 1000

// item counts one array or map item against maxValueItems.
func (w *avroWalk) item() error {
	w.items++
	if w.items > maxValueItems {
		return fmt.Errorf("%w: more than %d array and map items", ErrUndecodable, maxValueItems)
	}
	return w.readErr()
}

func (w *avroWalk) readErr() error {
	if w.r.Error != nil {
		return fmt.Errorf("%w: %v", ErrUndecodable, w.r.Error)
	}
	return nil
}

// end checks that the payload was read whole and nothing is left.
func (w *avroWalk) end() error {
	if err := w.readErr(); err != nil {
		return err
	}
	w.r.Peek() // sets io.EOF at the end of the bytes
	if w.r.Error == nil {
		return fmt.Errorf("%w: bytes left after the value", ErrUndecodable)
	}
	w.r.Error = nil
	return nil
}

// blocks calls fn for each item of an array or map, reading its blocks.
func (w *avroWalk) blocks(fn func() error) error {
	for {
		n, _ := w.r.ReadBlockHeader()
		if err := w.readErr(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		for range n {
			if err := w.item(); err != nil {
				return err
			}
			if err := fn(); err != nil {
				return err
			}
		}
	}
}

// unionBranch reads a union's branch index.
func (w *avroWalk) unionBranch(a *anode) (int, error) {
	i := w.r.ReadLong()
	if err := w.readErr(); err != nil {
		return 0, err
	}
	if i < 0 || i >= int64(len(a.branches)) {
		return 0, fmt.Errorf("%w: union branch %d of %d", ErrUndecodable, i, len(a.branches))
	}
	return int(i), nil
}

// enumSymbol reads an enum's symbol.
func (w *avroWalk) enumSymbol(a *anode) (string, error) {
	i := w.r.ReadInt()
	if err := w.readErr(); err != nil {
		return "", err
	}
	if i < 0 || int(i) >= len(a.symbols) {
		return "", fmt.Errorf("%w: enum %s symbol %d of %d", ErrUndecodable, a.name, i, len(a.symbols))
	}
	return a.symbols[i], nil
}

// skip reads one value of a and checks it, keeping nothing.
func (w *avroWalk) skip(a *anode) error {
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > maxValueDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrUndecodable, maxValueDepth)
	}
	switch a.kind {
	case aNull:
	case aBoolean:
		w.r.ReadBool()
	case aInt, aDate, aTimeMillis:
		w.r.ReadInt()
	case aLong, aTimeMicros, aTimestampMillis, aTimestampMicros, aLocalTsMillis, aLocalTsMicros:
		w.r.ReadLong()
	case aFloat:
		w.r.ReadFloat()
	case aDouble:
		w.r.ReadDouble()
	case aString, aBytes, aDecimalBytes, aUUID:
		w.r.ReadBytes()
	case aFixed, aDecimalFixed:
		w.r.Read(make([]byte, a.size))
	case aEnum:
		_, err := w.enumSymbol(a)
		return err
	case aRecord:
		for _, f := range a.fields {
			if err := w.skip(f.node); err != nil {
				return err
			}
		}
	case aArray:
		return w.blocks(func() error { return w.skip(a.items) })
	case aMap:
		return w.blocks(func() error {
			w.r.ReadBytes()
			return w.skip(a.items)
		})
	case aUnion:
		i, err := w.unionBranch(a)
		if err != nil {
			return err
		}
		return w.skip(a.branches[i])
	}
	return w.readErr()
}
