package schemareg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Records of the _schemas topic. Keys and values are JSON (readable with
// any consumer: `sluice consume _schemas --format '%k %v'`), in a format of
// our own that borrows Confluent's key types: Confluent's registry assigns
// ids in one elected leader before it writes, we check them as the log is
// applied (see the package doc), so the two formats are not interchangeable.
//
//	SCHEMA  key {"keytype":"SCHEMA","subject":s,"version":v,"id":n,"nonce":x}
//	        value {"subject":s,"version":v,"id":n,"schemaType":"AVRO","schema":"...","references":[...]}
//	DELETE  key {"keytype":"DELETE","subject":s,"version":v,"nonce":x}   (a soft delete)
//	        value {"subject":s,"version":v}
//	CONFIG  key {"keytype":"CONFIG","subject":s}  value {"compatibilityLevel":"FULL"}   ("" is the global one)
//	MODE    key {"keytype":"MODE","subject":s}    value {"mode":"READONLY"}
//	NOOP    key {"keytype":"NOOP"}                value {}   (written at start to find the end of the log)
//
// A null value (a tombstone) deletes what its key names: a permanent delete
// of a version is tombstones for its SCHEMA and DELETE keys; a CONFIG or
// MODE tombstone goes back to the default. SCHEMA and DELETE keys carry a
// random nonce so that no two writes share a key: compaction then removes
// a SCHEMA or DELETE record only after a tombstone asked for it, never
// because a later write happened to reuse its key.

// Key types.
const (
	keySchema = "SCHEMA"
	keyDelete = "DELETE"
	keyConfig = "CONFIG"
	keyMode   = "MODE"
	keyNoop   = "NOOP"
)

// Limits on what a record of _schemas may hold. A record over them is
// skipped as corrupt (and logged), so that a bad record cannot stop every
// instance from loading the rest.
const (
	maxKeyBytes     = 4 << 10 // a key: subject, numbers, nonce
	maxSubjectBytes = 1 << 10 // a subject name
	maxSchemaBytes  = 1 << 20 // a schema's text (Confluent has no limit; 1 MiB is far above real schemas)
	maxValueBytes   = 2 << 20 // a value: the schema JSON-escaped plus references
	maxReferences   = 128     // references of one schema
	maxNonceBytes   = 64      // a key's nonce
)

// recordKey is the key of every record type; fields a type does not use
// are zero.
type recordKey struct {
	KeyType string `json:"keytype"`
	Subject string `json:"subject,omitempty"`
	Version int    `json:"version,omitempty"`
	ID      int    `json:"id,omitempty"`
	Nonce   string `json:"nonce,omitempty"`
}

// Reference is one schema's use of another, by the name it uses for it.
type Reference struct {
	Name    string `json:"name"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// schemaValue is the value of a SCHEMA record.
type schemaValue struct {
	Subject    string      `json:"subject"`
	Version    int         `json:"version"`
	ID         int         `json:"id"`
	Type       string      `json:"schemaType"`
	Schema     string      `json:"schema"`
	References []Reference `json:"references,omitempty"`
}

// deleteValue is the value of a DELETE record.
type deleteValue struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}

// configValue is the value of a CONFIG record.
type configValue struct {
	Compatibility string `json:"compatibilityLevel"`
}

// modeValue is the value of a MODE record.
type modeValue struct {
	Mode string `json:"mode"`
}

// record is a decoded record of _schemas. Exactly one of the value fields
// is set, unless the record is a tombstone.
type record struct {
	Key       recordKey
	Tombstone bool
	Schema    *schemaValue
	Delete    *deleteValue
	Config    *configValue
	Mode      *modeValue
}

var errCorrupt = errors.New("schemareg: corrupt record in _schemas")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
}

// decodeRecord decodes and checks one record of _schemas. A nil value is a
// tombstone. It never panics and allocates no more than the bytes it is
// given (fuzzed by FuzzDecodeRecord).
func decodeRecord(key, value []byte) (record, error) {
	var r record
	if len(key) > maxKeyBytes {
		return r, corrupt("key of %d bytes, over %d", len(key), maxKeyBytes)
	}
	if len(value) > maxValueBytes {
		return r, corrupt("value of %d bytes, over %d", len(value), maxValueBytes)
	}
	if err := strictUnmarshal(key, &r.Key); err != nil {
		return r, corrupt("key %q: %v", truncate(key), err)
	}
	k := r.Key
	if !validSubject(k.Subject) && k.Subject != "" {
		return r, corrupt("key %q: bad subject", truncate(key))
	}
	if len(k.Nonce) > maxNonceBytes {
		return r, corrupt("key %q: nonce too long", truncate(key))
	}
	switch k.KeyType {
	case keySchema:
		if k.Subject == "" || k.Version < 1 || k.ID < 1 || k.Nonce == "" {
			return r, corrupt("SCHEMA key %q lacks subject, version, id or nonce", truncate(key))
		}
	case keyDelete:
		if k.Subject == "" || k.Version < 1 || k.Nonce == "" || k.ID != 0 {
			return r, corrupt("DELETE key %q: want subject, version and nonce", truncate(key))
		}
	case keyConfig, keyMode:
		if k.Version != 0 || k.ID != 0 || k.Nonce != "" {
			return r, corrupt("%s key %q: unexpected fields", k.KeyType, truncate(key))
		}
	case keyNoop:
		if k.Subject != "" || k.Version != 0 || k.ID != 0 {
			return r, corrupt("NOOP key %q: unexpected fields", truncate(key))
		}
	default:
		return r, corrupt("unknown key type %q", k.KeyType)
	}
	if value == nil {
		r.Tombstone = true
		return r, nil
	}
	switch k.KeyType {
	case keySchema:
		var v schemaValue
		if err := strictUnmarshal(value, &v); err != nil {
			return r, corrupt("SCHEMA value: %v", err)
		}
		if v.Subject != k.Subject || v.Version != k.Version || v.ID != k.ID {
			return r, corrupt("SCHEMA value (%s, %d, id %d) disagrees with its key (%s, %d, id %d)",
				v.Subject, v.Version, v.ID, k.Subject, k.Version, k.ID)
		}
		if v.Type != typeAvro && v.Type != typeJSON {
			return r, corrupt("SCHEMA value: unknown schema type %q", v.Type)
		}
		if len(v.Schema) == 0 || len(v.Schema) > maxSchemaBytes {
			return r, corrupt("SCHEMA value: schema of %d bytes, want 1 to %d", len(v.Schema), maxSchemaBytes)
		}
		if len(v.References) > maxReferences {
			return r, corrupt("SCHEMA value: %d references, over %d", len(v.References), maxReferences)
		}
		for _, ref := range v.References {
			if ref.Name == "" || !validSubject(ref.Subject) || ref.Version < 1 {
				return r, corrupt("SCHEMA value: bad reference %+v", ref)
			}
		}
		r.Schema = &v
	case keyDelete:
		var v deleteValue
		if err := strictUnmarshal(value, &v); err != nil {
			return r, corrupt("DELETE value: %v", err)
		}
		if v.Subject != k.Subject || v.Version != k.Version {
			return r, corrupt("DELETE value disagrees with its key")
		}
		r.Delete = &v
	case keyConfig:
		var v configValue
		if err := strictUnmarshal(value, &v); err != nil {
			return r, corrupt("CONFIG value: %v", err)
		}
		if _, ok := parseLevel(v.Compatibility); !ok {
			return r, corrupt("CONFIG value: unknown compatibility level %q", v.Compatibility)
		}
		r.Config = &v
	case keyMode:
		var v modeValue
		if err := strictUnmarshal(value, &v); err != nil {
			return r, corrupt("MODE value: %v", err)
		}
		if !validMode(v.Mode) {
			return r, corrupt("MODE value: unknown mode %q", v.Mode)
		}
		r.Mode = &v
	case keyNoop:
	}
	return r, nil
}

// strictUnmarshal decodes one JSON object into v, refusing unknown fields
// and trailing data, so that a record we do not understand is reported
// rather than half-applied.
func strictUnmarshal(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// encodeKey encodes a key; the same key always encodes to the same bytes.
func encodeKey(k recordKey) []byte {
	b, err := json.Marshal(k)
	if err != nil {
		panic("BUG: schemareg: encode key: " + err.Error())
	}
	return b
}

// encodeValue encodes a record value.
func encodeValue(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: schemareg: encode value: " + err.Error())
	}
	return b
}

// validSubject reports whether s may name a subject: Confluent refuses
// empty names and control characters (42208); we also bound the length.
func validSubject(s string) bool {
	if s == "" || len(s) > maxSubjectBytes || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func truncate(b []byte) []byte {
	const show = 80
	if len(b) > show {
		return b[:show]
	}
	return b
}
