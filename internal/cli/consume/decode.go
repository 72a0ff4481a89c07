package consume

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// Decoding (--decode): a key or value in Confluent's wire format (byte 0,
// a 4-byte big-endian schema id, then the payload) is printed as JSON, its
// schema fetched from the registry by id once: Avro payloads decoded with
// the schema, JSON Schema ones printed as they are. Anything else is
// printed as it is, so a topic that mixes framed and plain records reads
// fine. A schema the registry does not have, or a payload its schema does
// not decode, leaves the record as it is and says so on stderr once per id.

// registryTimeout bounds one schema fetch.
const registryTimeout = 10 * time.Second

// wireHeaderBytes is the magic byte and the schema id.
const wireHeaderBytes = 5

type decoder struct {
	cl      *sr.Client
	stderr  io.Writer
	schemas map[int]decodedSchema
	warned  map[int]bool
}

// decodedSchema is a fetched schema: Avro parsed, or JSON (nil avro).
type decodedSchema struct {
	avro avro.Schema
	err  error
}

func newDecoder(url string, stderr io.Writer) (*decoder, error) {
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		return nil, fmt.Errorf("--schema-registry %s: %w", url, err)
	}
	return &decoder{cl: cl, stderr: stderr, schemas: map[int]decodedSchema{}, warned: map[int]bool{}}, nil
}

// record replaces r's framed key and value by their JSON.
func (d *decoder) record(ctx context.Context, r *kgo.Record) {
	r.Key = d.decode(ctx, r.Key)
	r.Value = d.decode(ctx, r.Value)
}

func (d *decoder) decode(ctx context.Context, b []byte) []byte {
	if len(b) < wireHeaderBytes || b[0] != 0 {
		return b
	}
	id := int(binary.BigEndian.Uint32(b[1:wireHeaderBytes]))
	s, ok := d.schemas[id]
	if !ok {
		s = d.fetch(ctx, id)
		d.schemas[id] = s
	}
	if s.err != nil {
		d.warn(id, s.err)
		return b
	}
	payload := b[wireHeaderBytes:]
	if s.avro == nil {
		return payload // JSON Schema: the JSON as produced
	}
	var v any
	if err := avro.Unmarshal(s.avro, payload, &v); err != nil {
		d.warn(id, fmt.Errorf("decode with schema %d: %w", id, err))
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		d.warn(id, fmt.Errorf("schema %d: %w", id, err))
		return b
	}
	return out
}

func (d *decoder) fetch(ctx context.Context, id int) decodedSchema {
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	s, err := d.cl.SchemaByID(ctx, id)
	if err != nil {
		return decodedSchema{err: fmt.Errorf("schema %d from the registry: %w", id, err)}
	}
	switch s.Type {
	case sr.TypeAvro:
		if len(s.References) > 0 {
			return decodedSchema{err: fmt.Errorf("schema %d references other schemas, which --decode does not resolve", id)}
		}
		parsed, err := avro.Parse(s.Schema)
		if err != nil {
			return decodedSchema{err: fmt.Errorf("schema %d: %w", id, err)}
		}
		return decodedSchema{avro: parsed}
	case sr.TypeJSON:
		return decodedSchema{}
	}
	return decodedSchema{err: fmt.Errorf("schema %d is %s, which --decode does not read", id, s.Type)}
}

func (d *decoder) warn(id int, err error) {
	if d.warned[id] {
		return
	}
	d.warned[id] = true
	fmt.Fprintf(d.stderr, "sluice consume: printed as it is: %v\n", err)
}
