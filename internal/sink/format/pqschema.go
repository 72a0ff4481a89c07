package format

import (
	"fmt"
	"reflect"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
)

// The Parquet mapping of an Avro schema: a tree of pq nodes that knows,
// for each Avro node, its Parquet node, its leaf columns and its
// repetition level, so that a value is shredded into column values while
// it is read (see pqshred.go).
//
// Avro -> Parquet:
//
//	boolean                      BOOLEAN
//	int                          INT32
//	long                         INT64
//	float                        FLOAT
//	double                       DOUBLE
//	string                       BYTE_ARRAY (STRING)
//	bytes                        BYTE_ARRAY
//	fixed(n)                     FIXED_LEN_BYTE_ARRAY(n)
//	enum                         BYTE_ARRAY (STRING), the symbol
//	record                       group, fields in the schema's order
//	array<T>                     LIST, 3 levels (list / element)
//	map<T>                       MAP (key_value / key STRING, value)
//	[null, T] or [T, null]       T, OPTIONAL
//	[T]                          T
//	other unions [A, B, (null)]  group with one OPTIONAL field per non-null
//	                             branch, named by the branch (its short name
//	                             for named types, else its type: "string",
//	                             "long"); exactly one is set; the group is
//	                             OPTIONAL if null is a branch
//	int date                     INT32 (DATE)
//	int time-millis              INT32 (TIME(MILLIS, UTC))
//	long time-micros             INT64 (TIME(MICROS, UTC))
//	long timestamp-millis        INT64 (TIMESTAMP(MILLIS, UTC))
//	long timestamp-micros        INT64 (TIMESTAMP(MICROS, UTC))
//	long local-timestamp-millis  INT64 (TIMESTAMP(MILLIS, local))
//	long local-timestamp-micros  INT64 (TIMESTAMP(MICROS, local))
//	bytes decimal(p, s)          BYTE_ARRAY (DECIMAL(p, s)), Avro's bytes
//	fixed(n) decimal(p, s)       FIXED_LEN_BYTE_ARRAY(n) (DECIMAL(p, s))
//	string uuid                  FIXED_LEN_BYTE_ARRAY(16) (UUID)
//	fixed(12) duration           FIXED_LEN_BYTE_ARRAY(12), Avro's bytes
//
// Not mapped (the record fails with an error naming the field): recursive
// schemas, records without fields, null outside a union.

type pqKind uint8

const (
	pqLeaf     pqKind = iota
	pqGroup           // a record
	pqList            // an array
	pqMap             // a map: col is the key's column, children[0] the value
	pqNullable        // a union of null and one other branch
	pqUnion           // another union: children by branch, nil for null
)

type pq struct {
	kind     pqKind
	a        *anode
	optional bool // the Parquet node is OPTIONAL: one definition level
	children []*pq
	nullIdx  int // pqNullable, pqUnion: the null branch, -1 if none
	col      int // pqLeaf; pqMap: the key's column
	first    int // the leaf columns under this node are [first, end)
	end      int
	rep      int // pqList, pqMap: the repetition level of the items
	node     parquet.Node
}

// pqPlan is the Parquet schema of one kind of file.
type pqPlan struct {
	schema *parquet.Schema
	value  *pq // the value's mapping for Avro; a leaf for JSON and bytes
	cols   int // leaf columns, metadata included
}

// Metadata columns, in the order of their leaves.
const (
	colTopic = iota
	colPartition
	colOffset
	colTimestamp
	colKey
	colHeaderKey
	colHeaderValue
	colValue // the value's first column
)

// metadataFields are the columns every file starts with.
func metadataFields() []parquet.Field {
	header := orderedGroup{
		field("key", parquet.String()),
		field("value", parquet.Optional(parquet.Leaf(parquet.ByteArrayType))),
	}
	return []parquet.Field{
		field("topic", parquet.String()),
		field("partition", parquet.Leaf(parquet.Int32Type)),
		field("offset", parquet.Leaf(parquet.Int64Type)),
		field("timestamp", parquet.Timestamp(parquet.Millisecond)),
		field("key", parquet.Optional(parquet.Leaf(parquet.ByteArrayType))),
		field("headers", parquet.List(header)),
	}
}

// newPlan makes the schema of a file whose value is v.
func newPlan(v *pq) *pqPlan {
	root := orderedGroup(append(metadataFields(), field("value", v.node)))
	return &pqPlan{schema: parquet.NewSchema("record", root), value: v, cols: v.end}
}

// plainPlan is a file of JSON values (json true) or bytes.
func plainPlan(json bool) *pqPlan {
	leaf := parquet.Leaf(parquet.ByteArrayType)
	if json {
		leaf = parquet.JSON()
	}
	return newPlan(&pq{kind: pqLeaf, optional: true, col: colValue, first: colValue, end: colValue + 1,
		nullIdx: -1, node: parquet.Optional(leaf)})
}

// avroPlan maps an Avro schema.
func avroPlan(a *anode) (*pqPlan, error) {
	b := pqBuilder{col: colValue, open: map[*anode]bool{}}
	v, err := b.build(a, true, 0, "value")
	if err != nil {
		return nil, err
	}
	return newPlan(v), nil
}

type pqBuilder struct {
	col  int
	open map[*anode]bool // records being built: seeing one again is recursion
}

func (b *pqBuilder) build(a *anode, optional bool, rep int, path string) (*pq, error) {
	p := &pq{a: a, optional: optional, first: b.col, nullIdx: -1}
	var node parquet.Node
	switch a.kind {
	case aRecord:
		if b.open[a] {
			return nil, fmt.Errorf("%s: recursive record %s has no Parquet mapping", path, a.name)
		}
		if len(a.fields) == 0 {
			return nil, fmt.Errorf("%s: record %s has no fields, which Parquet cannot hold", path, a.name)
		}
		b.open[a] = true
		defer delete(b.open, a)
		p.kind = pqGroup
		g := make(orderedGroup, 0, len(a.fields))
		for _, f := range a.fields {
			c, err := b.build(f.node, false, rep, path+"."+f.name)
			if err != nil {
				return nil, err
			}
			p.children = append(p.children, c)
			g = append(g, field(f.name, c.node))
		}
		node = g
	case aArray:
		p.kind, p.rep = pqList, rep+1
		c, err := b.build(a.items, false, rep+1, path+".element")
		if err != nil {
			return nil, err
		}
		p.children = []*pq{c}
		node = parquet.List(c.node)
	case aMap:
		p.kind, p.rep = pqMap, rep+1
		p.col = b.col
		b.col++
		c, err := b.build(a.items, false, rep+1, path+".value")
		if err != nil {
			return nil, err
		}
		p.children = []*pq{c}
		node = parquet.Map(parquet.String(), c.node)
	case aUnion:
		return b.union(a, optional, rep, path)
	default:
		leaf, err := leafNode(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		p.kind, p.col = pqLeaf, b.col
		b.col++
		node = leaf
	}
	p.end = b.col
	if optional {
		node = parquet.Optional(node)
	}
	p.node = node
	return p, nil
}

// union maps a union; optional is whether the node is OPTIONAL anyway (the
// top-level value, for tombstones).
func (b *pqBuilder) union(a *anode, optional bool, rep int, path string) (*pq, error) {
	nullIdx, others := -1, 0
	for i, br := range a.branches {
		if br.kind == aNull {
			nullIdx = i
		} else {
			others++
		}
	}
	switch {
	case others == 0:
		return nil, fmt.Errorf("%s: a union of only null has no Parquet mapping", path)
	case others == 1:
		for i, br := range a.branches {
			if br.kind == aNull {
				continue
			}
			c, err := b.build(br, optional || nullIdx >= 0, rep, path)
			if err != nil {
				return nil, err
			}
			p := &pq{kind: pqNullable, a: a, nullIdx: nullIdx, first: c.first, end: c.end, node: c.node,
				children: make([]*pq, len(a.branches))}
			p.children[i] = c
			return p, nil
		}
	}
	p := &pq{kind: pqUnion, a: a, optional: optional || nullIdx >= 0, nullIdx: nullIdx, first: b.col,
		children: make([]*pq, len(a.branches))}
	g := make(orderedGroup, 0, others)
	used := map[string]bool{}
	for i, br := range a.branches {
		if br.kind == aNull {
			continue
		}
		name := branchName(br)
		for n := 2; used[name]; n++ {
			name = branchName(br) + "_" + strconv.Itoa(n)
		}
		used[name] = true
		c, err := b.build(br, true, rep, path+"."+name)
		if err != nil {
			return nil, err
		}
		p.children[i] = c
		g = append(g, field(name, c.node))
	}
	p.end = b.col
	p.node = g
	if p.optional {
		p.node = parquet.Optional(g)
	}
	return p, nil
}

// branchName names a union branch's field: a named type's short name, else
// the Avro type.
func branchName(a *anode) string {
	if a.name != "" {
		for i := len(a.name) - 1; i >= 0; i-- {
			if a.name[i] == '.' {
				return a.name[i+1:]
			}
		}
		return a.name
	}
	switch a.kind {
	case aBoolean:
		return "boolean"
	case aInt, aDate, aTimeMillis:
		return "int"
	case aLong, aTimeMicros, aTimestampMillis, aTimestampMicros, aLocalTsMillis, aLocalTsMicros:
		return "long"
	case aFloat:
		return "float"
	case aDouble:
		return "double"
	case aString, aUUID:
		return "string"
	case aBytes, aDecimalBytes:
		return "bytes"
	case aArray:
		return "array"
	case aMap:
		return "map"
	}
	return "branch"
}

// decimalMaxPrecision is the most digits Parquet's DECIMAL readers take
// in a 16-byte value; Avro allows more, which we refuse rather than write
// a column readers reject.
const decimalMaxPrecision = 38

func leafNode(a *anode) (parquet.Node, error) {
	switch a.kind {
	case aBoolean:
		return parquet.Leaf(parquet.BooleanType), nil
	case aInt:
		return parquet.Leaf(parquet.Int32Type), nil
	case aLong:
		return parquet.Leaf(parquet.Int64Type), nil
	case aFloat:
		return parquet.Leaf(parquet.FloatType), nil
	case aDouble:
		return parquet.Leaf(parquet.DoubleType), nil
	case aString, aEnum:
		return parquet.String(), nil
	case aBytes:
		return parquet.Leaf(parquet.ByteArrayType), nil
	case aFixed:
		if a.size <= 0 {
			return nil, fmt.Errorf("fixed %s of size %d has no Parquet mapping", a.name, a.size)
		}
		return parquet.Leaf(parquet.FixedLenByteArrayType(a.size)), nil
	case aDate:
		return parquet.Date(), nil
	case aTimeMillis:
		return parquet.Time(parquet.Millisecond), nil
	case aTimeMicros:
		return parquet.Time(parquet.Microsecond), nil
	case aTimestampMillis:
		return parquet.Timestamp(parquet.Millisecond), nil
	case aTimestampMicros:
		return parquet.Timestamp(parquet.Microsecond), nil
	case aLocalTsMillis:
		return parquet.TimestampAdjusted(parquet.Millisecond, false), nil
	case aLocalTsMicros:
		return parquet.TimestampAdjusted(parquet.Microsecond, false), nil
	case aDecimalBytes, aDecimalFixed:
		if a.precision < 1 || a.precision > decimalMaxPrecision || a.scale < 0 || a.scale > a.precision {
			return nil, fmt.Errorf("decimal(%d, %d) has no Parquet mapping", a.precision, a.scale)
		}
		typ := parquet.Type(parquet.ByteArrayType)
		if a.kind == aDecimalFixed {
			if a.size <= 0 {
				return nil, fmt.Errorf("fixed %s of size %d has no Parquet mapping", a.name, a.size)
			}
			typ = parquet.FixedLenByteArrayType(a.size)
		}
		return parquet.Decimal(a.scale, a.precision, typ), nil
	case aUUID:
		return parquet.UUID(), nil
	case aNull:
		return nil, fmt.Errorf("null outside a union has no Parquet mapping")
	}
	return nil, fmt.Errorf("BUG: avro kind %d has no leaf", a.kind)
}

// orderedGroup is a Parquet group whose fields keep their order:
// parquet.Group is a map and sorts them by name, which would put a
// record's fields, and the metadata columns, in another order than the
// schema's.
type orderedGroup []parquet.Field

func field(name string, n parquet.Node) parquet.Field { return &namedField{Node: n, name: name} }

type namedField struct {
	parquet.Node
	name string
}

func (f *namedField) Name() string { return f.name }

// Value is for parquet-go's reflection over Go structs, which this package
// does not use (it writes rows of values); it finds the field by its tag.
func (f *namedField) Value(base reflect.Value) reflect.Value {
	if base.Kind() != reflect.Struct {
		return reflect.Value{}
	}
	for i := range base.NumField() {
		if base.Type().Field(i).Tag.Get("parquet") == f.name {
			return base.Field(i)
		}
	}
	return reflect.Value{}
}

func (g orderedGroup) ID() int                     { return 0 }
func (g orderedGroup) String() string              { return parquet.Group(nil).String() }
func (g orderedGroup) Type() parquet.Type          { return parquet.Group(nil).Type() }
func (g orderedGroup) Optional() bool              { return false }
func (g orderedGroup) Repeated() bool              { return false }
func (g orderedGroup) Required() bool              { return true }
func (g orderedGroup) Leaf() bool                  { return false }
func (g orderedGroup) Fields() []parquet.Field     { return g }
func (g orderedGroup) Encoding() encoding.Encoding { return nil }
func (g orderedGroup) Compression() compress.Codec { return nil }

// GoType is a struct of the fields' Go types, each tagged with its name.
func (g orderedGroup) GoType() reflect.Type {
	fields := make([]reflect.StructField, len(g))
	for i, f := range g {
		fields[i] = reflect.StructField{Name: "F" + strconv.Itoa(i), Type: f.GoType(),
			Tag: reflect.StructTag(`parquet:` + strconv.Quote(f.Name()))}
	}
	return reflect.StructOf(fields)
}
