package schemareg

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
)

// avroSchema is a parsed Avro schema. Parsing uses hamba/avro with a cache
// of its own per schema (never hamba's package-wide default cache, which
// would let one subject's named types leak into another's).
type avroSchema struct {
	s avro.Schema
}

// parseAvro parses text after its dependencies, whose named types it may
// use (Confluent's Avro references: the reference name is the full name of
// the type the referenced schema defines).
func parseAvro(text string, deps []dependency) (parsed, error) {
	cache := &avro.SchemaCache{}
	for _, d := range deps {
		if _, err := avro.ParseWithCache(d.c.Schema, "", cache); err != nil {
			return nil, fmt.Errorf("reference %q: %w", d.name, err)
		}
	}
	s, err := avro.ParseWithCache(text, "", cache)
	if err != nil {
		return nil, err
	}
	return avroSchema{s: s}, nil
}

func (r avroSchema) canRead(writer parsed) []string {
	w, ok := writer.(avroSchema)
	if !ok {
		return []string{"the schemas are of different types"}
	}
	c := avroChecker{seen: map[[2]string]bool{}}
	c.check(r.s, w.s, "")
	return c.msgs
}

// avroChecker applies Avro's schema resolution rules (the specification's
// "Schema Resolution", as Avro's SchemaCompatibility and so Confluent's
// AvroCompatibilityChecker apply them) to a reader and a writer schema.
type avroChecker struct {
	msgs []string
	// seen holds the named (reader, writer) pairs being checked, so that
	// recursive types end: a pair met again is assumed to resolve, which
	// holds if everything else about it does.
	seen map[[2]string]bool
}

func (c *avroChecker) fail(path, format string, args ...any) {
	if path == "" {
		path = "/"
	}
	c.msgs = append(c.msgs, fmt.Sprintf("at %s: ", path)+fmt.Sprintf(format, args...))
}

// deref follows a reference to a named type already defined.
func deref(s avro.Schema) avro.Schema {
	if ref, ok := s.(*avro.RefSchema); ok {
		return ref.Schema()
	}
	return s
}

// check records why data written with w cannot be read with r.
func (c *avroChecker) check(r, w avro.Schema, path string) {
	r, w = deref(r), deref(w)
	// A writer's union: each of its branches may have been written, so
	// the reader must read every one.
	if wu, ok := w.(*avro.UnionSchema); ok {
		for i, b := range wu.Types() {
			c.check(r, b, fmt.Sprintf("%s/union[%d]", path, i))
		}
		return
	}
	// A reader's union (the writer's is not): the first branch that
	// matches the writer's type is used, so one must read it.
	if ru, ok := r.(*avro.UnionSchema); ok {
		for _, b := range ru.Types() {
			probe := avroChecker{seen: c.seen}
			probe.check(b, w, path)
			if len(probe.msgs) == 0 {
				return
			}
		}
		c.fail(path, "the reader's union %s has no branch for the writer's %s", typeName(r), typeName(w))
		return
	}
	rt, wt := r.Type(), w.Type()
	switch rt {
	case avro.Null, avro.Boolean, avro.Int, avro.Long, avro.Float, avro.Double, avro.String, avro.Bytes:
		if !promotable(wt, rt) {
			c.fail(path, "the reader's %s cannot read the writer's %s", rt, typeName(w))
		}
	case avro.Record, avro.Error:
		wr, ok := w.(*avro.RecordSchema)
		if !ok {
			c.fail(path, "the reader's record %s cannot read the writer's %s", typeName(r), typeName(w))
			return
		}
		rr := r.(*avro.RecordSchema)
		if !namesMatch(rr, wr) {
			c.fail(path, "the reader's record %s does not match the writer's record %s", rr.FullName(), wr.FullName())
			return
		}
		pair := [2]string{rr.FullName(), wr.FullName()}
		if c.seen[pair] {
			return
		}
		c.seen[pair] = true
		defer delete(c.seen, pair)
		for _, rf := range rr.Fields() {
			wf := writerField(rf, wr)
			fpath := path + "/" + rf.Name()
			if wf == nil {
				if !rf.HasDefault() {
					c.fail(fpath, "the reader's field %q has no default and the writer has no such field", rf.Name())
				}
				continue
			}
			c.check(rf.Type(), wf.Type(), fpath)
		}
	case avro.Enum:
		we, ok := w.(*avro.EnumSchema)
		if !ok {
			c.fail(path, "the reader's enum %s cannot read the writer's %s", typeName(r), typeName(w))
			return
		}
		re := r.(*avro.EnumSchema)
		if !namesMatch(re, we) {
			c.fail(path, "the reader's enum %s does not match the writer's enum %s", re.FullName(), we.FullName())
			return
		}
		if re.HasDefault() {
			return // an unknown symbol reads as the default
		}
		var missing []string
		for _, s := range we.Symbols() {
			if !slices.Contains(re.Symbols(), s) {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			c.fail(path, "the reader's enum %s lacks the writer's symbols %s and has no default", re.FullName(), strings.Join(missing, ", "))
		}
	case avro.Fixed:
		wf, ok := w.(*avro.FixedSchema)
		if !ok {
			c.fail(path, "the reader's fixed %s cannot read the writer's %s", typeName(r), typeName(w))
			return
		}
		rf := r.(*avro.FixedSchema)
		if !namesMatch(rf, wf) {
			c.fail(path, "the reader's fixed %s does not match the writer's fixed %s", rf.FullName(), wf.FullName())
		} else if rf.Size() != wf.Size() {
			c.fail(path, "the reader's fixed %s has size %d, the writer's %d", rf.FullName(), rf.Size(), wf.Size())
		}
	case avro.Array:
		wa, ok := w.(*avro.ArraySchema)
		if !ok {
			c.fail(path, "the reader's array cannot read the writer's %s", typeName(w))
			return
		}
		c.check(r.(*avro.ArraySchema).Items(), wa.Items(), path+"/items")
	case avro.Map:
		wm, ok := w.(*avro.MapSchema)
		if !ok {
			c.fail(path, "the reader's map cannot read the writer's %s", typeName(w))
			return
		}
		c.check(r.(*avro.MapSchema).Values(), wm.Values(), path+"/values")
	default:
		c.fail(path, "unknown reader type %s", rt)
	}
}

// promotable reports whether a writer's primitive w reads as the reader's
// primitive r: the same type, or one of the specification's promotions
// (int to long, float, double; long to float, double; float to double;
// string and bytes either way).
func promotable(w, r avro.Type) bool {
	if w == r {
		return true
	}
	switch r {
	case avro.Long:
		return w == avro.Int
	case avro.Float:
		return w == avro.Int || w == avro.Long
	case avro.Double:
		return w == avro.Int || w == avro.Long || w == avro.Float
	case avro.String:
		return w == avro.Bytes
	case avro.Bytes:
		return w == avro.String
	}
	return false
}

// namesMatch reports whether two named types resolve: the same unqualified
// name (as Avro's SchemaCompatibility compares them), or the writer's full
// name among the reader's aliases.
func namesMatch(r, w avro.NamedSchema) bool {
	return r.Name() == w.Name() || slices.Contains(r.Aliases(), w.FullName())
}

// writerField finds the writer's field that the reader's field rf reads:
// by name, else by one of rf's aliases.
func writerField(rf *avro.Field, w *avro.RecordSchema) *avro.Field {
	for _, wf := range w.Fields() {
		if wf.Name() == rf.Name() {
			return wf
		}
	}
	for _, wf := range w.Fields() {
		if slices.Contains(rf.Aliases(), wf.Name()) {
			return wf
		}
	}
	return nil
}

func typeName(s avro.Schema) string {
	if n, ok := deref(s).(avro.NamedSchema); ok {
		return string(s.Type()) + " " + n.FullName()
	}
	return string(deref(s).Type())
}
