package collect

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/santhosh-tekuri/jsonschema/v6"
	sjson "github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/sr"
)

// Reasons an event is invalid, the reason label of
// sluice_collect_events_invalid_total and of a per-event result.
const (
	reasonBadJSON   = "bad_json"   // a line of NDJSON that is not JSON
	reasonNotObject = "not_object" // JSON, but not an object
	reasonSchema    = "schema"     // does not match the stream's schema
)

// wireMagic opens Confluent's wire format: magic 0, then the schema id as
// a 4-byte big-endian integer, then the encoded value.
const wireMagic = 0

// encoder validates one event and encodes it as a record value. It is
// immutable, so safe for concurrent use; a schema refresh swaps in a new
// one.
type encoder interface {
	// encode returns the record value of event (a JSON object as
	// received; fields is it decoded by decodeEvent), or an error saying
	// why the event is invalid. The event is parsed once, by the caller.
	encode(event json.RawMessage, fields map[string]any) ([]byte, error)
	// schemaID is the registry id of the schema, 0 for none.
	schemaID() int
}

// rawEncoder is a stream without a schema: any JSON object, as received.
type rawEncoder struct{}

func (rawEncoder) encode(e json.RawMessage, _ map[string]any) ([]byte, error) { return e, nil }
func (rawEncoder) schemaID() int                                              { return 0 }

// jsonSpace is JSON's whitespace (not Unicode's: "\f" is not).
const jsonSpace = " \t\r\n"

// decodeEvent decodes one event as jsonschema.UnmarshalJSON does (numbers
// as json.Number, so that a long does not pass through float64, and
// nothing after the value), for every encoder and the key: an event is
// parsed once. An event that is not an object gives nil fields.
//
// It is the collector's hottest path, so it uses segmentio/encoding's
// parser (the standard one's semantics, several times as fast), and
// strings point into event instead of being copied (ZeroCopy): the
// fields live no longer than the request's body.
func decodeEvent(event json.RawMessage) (map[string]any, error) {
	var v any
	rest, err := sjson.Parse(event, &v, sjson.UseNumber|sjson.ZeroCopy)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimLeft(rest, jsonSpace)) != 0 {
		return nil, errors.New("data after the JSON value")
	}
	fields, _ := v.(map[string]any)
	return fields, nil
}

// newEncoder builds the encoder of a registered schema.
func newEncoder(ss sr.SubjectSchema, jsonPrefix bool) (encoder, error) {
	if len(ss.References) > 0 {
		return nil, fmt.Errorf("schema %s version %d (id %d) has references, which the collector does not resolve yet", ss.Subject, ss.Version, ss.ID)
	}
	switch ss.Type {
	case sr.TypeAvro:
		s, err := avro.ParseWithCache(ss.Schema.Schema, "", &avro.SchemaCache{}) // its own cache: v1 and v2 share record names
		if err != nil {
			return nil, fmt.Errorf("parse Avro schema %s version %d (id %d): %w", ss.Subject, ss.Version, ss.ID, err)
		}
		return &avroEncoder{schema: s, id: ss.ID}, nil
	case sr.TypeJSON:
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(ss.Schema.Schema))
		if err != nil {
			return nil, fmt.Errorf("parse JSON schema %s version %d (id %d): %w", ss.Subject, ss.Version, ss.ID, err)
		}
		c := jsonschema.NewCompiler()
		const loc = "registry:///schema.json"
		if err := c.AddResource(loc, doc); err != nil {
			return nil, fmt.Errorf("load JSON schema %s version %d (id %d): %w", ss.Subject, ss.Version, ss.ID, err)
		}
		sch, err := c.Compile(loc)
		if err != nil {
			return nil, fmt.Errorf("compile JSON schema %s version %d (id %d): %w", ss.Subject, ss.Version, ss.ID, err)
		}
		return &jsonEncoder{schema: sch, id: ss.ID, prefix: jsonPrefix}, nil
	default:
		return nil, fmt.Errorf("schema %s version %d (id %d) is %s: the collector encodes AVRO and JSON", ss.Subject, ss.Version, ss.ID, ss.Type)
	}
}

// wirePrefix returns Confluent's 5-byte header for schema id, with room
// for n more bytes.
func wirePrefix(id, n int) []byte {
	b := make([]byte, 5, 5+n)
	b[0] = wireMagic
	binary.BigEndian.PutUint32(b[1:], uint32(id))
	return b
}

// jsonEncoder validates against a JSON Schema and sends the event as
// received (optionally behind the wire prefix).
type jsonEncoder struct {
	schema *jsonschema.Schema
	id     int
	prefix bool
}

func (e *jsonEncoder) schemaID() int { return e.id }

func (e *jsonEncoder) encode(event json.RawMessage, fields map[string]any) ([]byte, error) {
	if err := e.schema.Validate(fields); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			// The first line is "jsonschema validation failed with URL";
			// the causes below it say what is wrong.
			msg := ve.Error()
			if i := strings.IndexByte(msg, '\n'); i >= 0 {
				msg = strings.Join(strings.Fields(msg[i+1:]), " ")
			}
			return nil, errors.New(msg)
		}
		return nil, err
	}
	if !e.prefix {
		return event, nil
	}
	return append(wirePrefix(e.id, len(event)), event...), nil
}

// avroEncoder turns a JSON event into Avro binary through the schema, in
// Confluent's wire format.
type avroEncoder struct {
	schema avro.Schema
	id     int
}

func (e *avroEncoder) schemaID() int { return e.id }

func (e *avroEncoder) encode(_ json.RawMessage, fields map[string]any) ([]byte, error) {
	native, err := avroNative(e.schema, fields, "")
	if err != nil {
		return nil, err
	}
	body, err := avro.Marshal(e.schema, native)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return append(wirePrefix(e.id, len(body)), body...), nil
}

// avroNative converts v, decoded from JSON with UseNumber, into the Go
// value hamba/avro encodes as schema s; path names the field for errors.
// A union takes a bare value (the first branch it fits) or Avro's JSON
// form {"branch": value}; a field missing from a record takes its default.
func avroNative(s avro.Schema, v any, path string) (any, error) {
	at := func() string {
		if path == "" {
			return "event"
		}
		return path
	}
	bad := func(want string) error { return fmt.Errorf("%s: want %s, got %s", at(), want, jsonKind(v)) }
	switch s := s.(type) {
	case *avro.NullSchema:
		if v != nil {
			return nil, bad("null")
		}
		return nil, nil
	case *avro.PrimitiveSchema:
		return avroPrimitive(s, v, bad)
	case *avro.EnumSchema:
		str, ok := v.(string)
		if !ok {
			return nil, bad("a string (enum " + s.FullName() + ")")
		}
		for _, sym := range s.Symbols() {
			if sym == str {
				return str, nil
			}
		}
		return nil, fmt.Errorf("%s: %q is not a symbol of enum %s", at(), str, s.FullName())
	case *avro.FixedSchema:
		str, ok := v.(string)
		b, latin1 := codePointBytes(str)
		if !ok || !latin1 || len(b) != s.Size() {
			return nil, bad(fmt.Sprintf("a string of %d code points up to U+00FF (fixed %s)", s.Size(), s.FullName()))
		}
		// hamba encodes a fixed from a byte array of its size.
		arr := reflect.New(reflect.ArrayOf(s.Size(), reflect.TypeFor[byte]())).Elem()
		reflect.Copy(arr, reflect.ValueOf(b))
		return arr.Interface(), nil
	case *avro.ArraySchema:
		arr, ok := v.([]any)
		if !ok {
			return nil, bad("an array")
		}
		out := make([]any, len(arr))
		for i, item := range arr {
			n, err := avroNative(s.Items(), item, fmt.Sprintf("%s[%d]", at(), i))
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case *avro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, bad("an object (map)")
		}
		out := make(map[string]any, len(m))
		for k, item := range m {
			n, err := avroNative(s.Values(), item, at()+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case *avro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, bad("an object (record " + s.FullName() + ")")
		}
		out := make(map[string]any, len(s.Fields()))
		for _, f := range s.Fields() {
			fp := f.Name()
			if path != "" {
				fp = path + "." + f.Name()
			}
			fv, present := m[f.Name()]
			if !present {
				if !f.HasDefault() {
					return nil, fmt.Errorf("%s: missing (the schema gives no default)", fp)
				}
				// hamba fills in defaults for fields absent from the map.
				continue
			}
			n, err := avroNative(f.Type(), fv, fp)
			if err != nil {
				return nil, err
			}
			out[f.Name()] = n
		}
		for k := range m {
			if s.Fields() != nil && !hasField(s, k) {
				return nil, fmt.Errorf("%s: not a field of record %s", joinPath(path, k), s.FullName())
			}
		}
		return out, nil
	case *avro.UnionSchema:
		if v == nil {
			if _, pos := s.Types().Get("null"); pos >= 0 {
				return map[string]any{"null": nil}, nil
			}
			return nil, bad("one of " + unionNames(s))
		}
		// Avro's JSON encoding of a union: {"branch": value}.
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for k, inner := range m {
				if t, _ := s.Types().Get(k); t != nil {
					n, err := avroNative(t, inner, path)
					if err != nil {
						return nil, err
					}
					return map[string]any{k: n}, nil
				}
			}
		}
		for _, t := range s.Types() {
			if t.Type() == avro.Null {
				continue
			}
			if n, err := avroNative(t, v, path); err == nil {
				return map[string]any{unionName(t): n}, nil
			}
		}
		return nil, bad("one of " + unionNames(s))
	case *avro.RefSchema:
		return avroNative(s.Schema(), v, path)
	default:
		return nil, fmt.Errorf("%s: Avro type %s is not supported by the collector", at(), s.Type())
	}
}

func joinPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func hasField(s *avro.RecordSchema, name string) bool {
	for _, f := range s.Fields() {
		if f.Name() == name {
			return true
		}
	}
	return false
}

// unionName is how hamba names a branch of a union: the full name of a
// named type, else the type (with its logical type, as "long.timestamp-millis").
func unionName(t avro.Schema) string {
	if n, ok := t.(avro.NamedSchema); ok {
		return n.FullName()
	}
	if r, ok := t.(*avro.RefSchema); ok {
		return r.Schema().FullName()
	}
	if l, ok := t.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		return string(t.Type()) + "." + string(l.Logical().Type())
	}
	return string(t.Type())
}

func unionNames(s *avro.UnionSchema) string {
	var names []string
	for _, t := range s.Types() {
		names = append(names, unionName(t))
	}
	return strings.Join(names, ", ")
}

func avroPrimitive(s *avro.PrimitiveSchema, v any, bad func(string) error) (any, error) {
	switch s.Type() {
	case avro.Boolean:
		b, ok := v.(bool)
		if !ok {
			return nil, bad("a boolean")
		}
		return b, nil
	case avro.String:
		str, ok := v.(string)
		if !ok {
			return nil, bad("a string")
		}
		return str, nil
	case avro.Bytes:
		str, ok := v.(string)
		b, latin1 := codePointBytes(str)
		if !ok || !latin1 {
			return nil, bad("a string of code points up to U+00FF (bytes)")
		}
		return b, nil
	case avro.Int, avro.Long:
		n, ok := v.(json.Number)
		if !ok {
			return nil, bad("an integer")
		}
		i, err := n.Int64()
		if err != nil {
			return nil, bad("an integer")
		}
		if s.Type() == avro.Int {
			if i < math.MinInt32 || i > math.MaxInt32 {
				return nil, bad("a 32-bit integer")
			}
			return int32(i), nil
		}
		return i, nil
	case avro.Float, avro.Double:
		n, ok := v.(json.Number)
		if !ok {
			return nil, bad("a number")
		}
		f, err := n.Float64()
		if err != nil {
			return nil, bad("a number")
		}
		if s.Type() == avro.Float {
			return float32(f), nil
		}
		return f, nil
	}
	return nil, bad(string(s.Type()))
}

// jsonKind names the JSON type of v for errors.
func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "the number " + v.String()
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// codePointBytes is Avro's JSON encoding of bytes and fixed: a string
// whose code points (each up to U+00FF) are the bytes.
func codePointBytes(s string) ([]byte, bool) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, false
		}
		b = append(b, byte(r))
	}
	return b, true
}
