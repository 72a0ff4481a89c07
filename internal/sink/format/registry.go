package format

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
	"github.com/segmentio/encoding/ascii"
	fastjson "github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/sr"
)

// wireHeaderBytes is the registry's wire format header: the magic byte 0
// and a 4-byte big-endian schema id.
const wireHeaderBytes = 5

// registryTimeout bounds one schema fetch (one attempt).
const registryTimeout = 10 * time.Second

// registryAttempts is how many times a schema fetch is tried before the
// record fails; a 4xx answer (the registry has no such id) is not retried.
const registryAttempts = 3

// registryBackoff is the wait before the second attempt, doubled after.
const registryBackoff = 200 * time.Millisecond

// wireID returns the schema id of a value in the wire format.
func wireID(v []byte) (int, bool) {
	if len(v) < wireHeaderBytes || v[0] != 0 {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(v[1:wireHeaderBytes])), true
}

// schemaKind is what the registry says a schema is.
type schemaKind uint8

const (
	schemaAvro  schemaKind = iota
	schemaJSON             // JSON Schema: the payload is JSON
	schemaOther            // Protobuf: written as bytes
)

// regSchema is a fetched schema.
type regSchema struct {
	id   int
	kind schemaKind
	text string      // Avro: the schema whole, its references inlined
	avro avro.Schema // schemaAvro
	plan *anode      // schemaAvro

	pqOnce sync.Once
	pq     *pqPlan // Parquet mapping, made when first needed
	pqErr  error
}

// registry fetches schemas by id and keeps them: a schema id's schema
// never changes. Safe for concurrent use: the files of one Format share it.
type registry struct {
	cl *sr.Client

	mu      sync.Mutex
	schemas map[int]*regSchema
}

func newRegistry(o Options) (*registry, error) {
	if o.Registry == "" {
		return nil, nil
	}
	hc := o.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: registryTimeout}
	}
	cl, err := sr.NewClient(sr.URLs(o.Registry), sr.HTTPClient(hc), sr.UserAgent("sluice-sink"))
	if err != nil {
		return nil, fmt.Errorf("sink/format: schema registry %s: %w", o.Registry, err)
	}
	return &registry{cl: cl, schemas: map[int]*regSchema{}}, nil
}

// schema returns schema id, fetching it the first time. Fetch errors are
// not kept: the next record tries again.
func (g *registry) schema(ctx context.Context, id int) (*regSchema, error) {
	g.mu.Lock()
	s, ok := g.schemas[id]
	g.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := g.fetch(ctx, id)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	if old, ok := g.schemas[id]; ok {
		s = old // fetched concurrently: keep one, with its Parquet mapping
	} else {
		g.schemas[id] = s
	}
	g.mu.Unlock()
	return s, nil
}

// ErrRegistryUnavailable says the schema registry did not answer (or
// answered 5xx) for all attempts: the record may encode later, and
// Append took nothing.
var ErrRegistryUnavailable = errors.New("sink/format: schema registry unavailable")

// maxReferenceDepth bounds how deep schema references nest (a schema
// referring to one that refers to another ...), against a cycle.
const maxReferenceDepth = 16

// retry calls fetch up to registryAttempts times, waiting between them; a
// 4xx answer is final.
func retry[T any](ctx context.Context, what string, fetch func(context.Context) (T, error)) (T, error) {
	wait := registryBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, registryTimeout)
		got, err := fetch(actx)
		cancel()
		if err == nil {
			return got, nil
		}
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode >= 400 && re.StatusCode < 500 {
			return got, fmt.Errorf("sink/format: %s from the registry: %w", what, err)
		}
		if attempt == registryAttempts || ctx.Err() != nil {
			return got, fmt.Errorf("%w: %s, %d attempts: %w (is the registry up?)", ErrRegistryUnavailable, what, attempt, err)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return got, fmt.Errorf("sink/format: %s from the registry: %w", what, ctx.Err())
		}
		wait *= 2
	}
}

func (g *registry) fetch(ctx context.Context, id int) (*regSchema, error) {
	got, err := retry(ctx, fmt.Sprintf("schema %d", id), func(ctx context.Context) (sr.Schema, error) {
		return g.cl.SchemaByID(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	s := &regSchema{id: id, text: got.Schema}
	switch got.Type {
	case sr.TypeAvro:
		cache := &avro.SchemaCache{}
		if err := g.references(ctx, got.References, cache, map[string]bool{}, 0); err != nil {
			return nil, fmt.Errorf("sink/format: schema %d: %w", id, err)
		}
		parsed, err := avro.ParseWithCache(got.Schema, "", cache)
		if err != nil {
			return nil, fmt.Errorf("sink/format: schema %d: %w", id, err)
		}
		plan, err := compileAvro(parsed)
		if err != nil {
			return nil, fmt.Errorf("sink/format: schema %d: %w", id, err)
		}
		// The schema whole, its references' types inlined: what an Avro
		// file's header needs.
		full, err := json.Marshal(parsed)
		if err != nil {
			return nil, fmt.Errorf("sink/format: schema %d: %w", id, err)
		}
		s.kind, s.avro, s.plan, s.text = schemaAvro, parsed, plan, string(full)
	case sr.TypeJSON:
		s.kind = schemaJSON
	default:
		s.kind = schemaOther
	}
	return s, nil
}

// references parses the schemas refs name into cache, theirs first.
func (g *registry) references(ctx context.Context, refs []sr.SchemaReference, cache *avro.SchemaCache, done map[string]bool, depth int) error {
	if len(refs) > 0 && depth >= maxReferenceDepth {
		return fmt.Errorf("references nest deeper than %d", maxReferenceDepth)
	}
	for _, ref := range refs {
		key := fmt.Sprintf("%s/%d", ref.Subject, ref.Version)
		if done[key] {
			continue
		}
		done[key] = true
		ss, err := retry(ctx, fmt.Sprintf("reference %s version %d", ref.Subject, ref.Version), func(ctx context.Context) (sr.SubjectSchema, error) {
			return g.cl.SchemaByVersion(ctx, ref.Subject, ref.Version)
		})
		if err != nil {
			return err
		}
		if ss.Type != sr.TypeAvro {
			return fmt.Errorf("reference %s is %s, not Avro", ref.Name, ss.Type)
		}
		if err := g.references(ctx, ss.References, cache, done, depth+1); err != nil {
			return err
		}
		if _, err := avro.ParseWithCache(ss.Schema.Schema, "", cache); err != nil {
			return fmt.Errorf("reference %s (%s version %d): %w", ref.Name, ref.Subject, ref.Version, err)
		}
	}
	return nil
}

// errorSchemaNotFound is the registry's error code for an unknown id.
const errorSchemaNotFound = 40403

// valueClass is what a record's value is, which decides the file it can
// go into.
type valueClass uint8

const (
	classNull   valueClass = iota // a tombstone: fits any file
	classAvro                     // wire format, Avro schema
	classJSON                     // JSON, or wire format with a JSON Schema
	classBinary                   // anything else
)

// value is a classified record value.
type value struct {
	class   valueClass
	schema  *regSchema // classAvro
	payload []byte     // classAvro, classJSON: without the wire header
}

// classify tells what v is. Without a registry, or for a schema id the
// registry does not have (answered 404: such bytes only look like the wire
// format), a value is JSON or bytes by its content.
func (g *registry) classify(ctx context.Context, v []byte) (value, error) {
	if v == nil {
		return value{class: classNull}, nil
	}
	if id, ok := wireID(v); ok && g != nil {
		s, err := g.schema(ctx, id)
		var re *sr.ResponseError
		switch {
		case errors.As(err, &re) && re.ErrorCode == errorSchemaNotFound:
		case err != nil:
			return value{}, err
		case s.kind == schemaAvro:
			return value{class: classAvro, schema: s, payload: v[wireHeaderBytes:]}, nil
		case s.kind == schemaJSON && isJSON(v[wireHeaderBytes:]):
			return value{class: classJSON, payload: v[wireHeaderBytes:]}, nil
		}
	}
	if isJSON(v) {
		return value{class: classJSON, payload: v}, nil
	}
	return value{class: classBinary, payload: v}, nil
}

// isJSON is whether v is JSON in UTF-8, as Parquet's JSON type wants
// (validJSON lets invalid UTF-8 in strings through).
func isJSON(v []byte) bool { return validUTF8(v) && validJSON(v) }

// validUTF8 is utf8.Valid, with segmentio's vectorized ASCII check first:
// most values are ASCII, and utf8.Valid on them was 40 % of isJSON.
func validUTF8(v []byte) bool { return ascii.Valid(v) || utf8.Valid(v) }

// validJSON is json.Valid, faster: segmentio/encoding's Valid (several
// times encoding/json's), after a look at the first byte that rejects most
// bytes that are not JSON at once; Valid makes an error, with fmt, for
// each value it rejects, which cost more than checking a valid value (keys
// such as "user-42" are rejected on every record).
func validJSON(v []byte) bool {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t' || v[0] == '\r' || v[0] == '\n') {
		v = v[1:]
	}
	if len(v) == 0 {
		return false
	}
	switch c := v[0]; {
	case c == '{' || c == '[' || c == '"' || c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n':
		return fastjson.Valid(v)
	}
	return false
}
