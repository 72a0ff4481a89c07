package schemareg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// Schema types served (GET /schemas/types). PROTOBUF is not (yet).
const (
	typeAvro = "AVRO"
	typeJSON = "JSON"
)

// maxReferenceDepth bounds how deep references may nest (a schema using one
// that uses another ...), and so the work one registration can cause.
const maxReferenceDepth = 32

// content is what a schema id stands for: two registrations with equal
// content get the same id, in any subject (as in Confluent's registry).
type content struct {
	Type       string
	Schema     string // compact JSON, as stored and answered
	References []Reference
}

func (c content) equal(o content) bool {
	return c.Type == o.Type && c.Schema == o.Schema && slices.Equal(c.References, o.References)
}

// key is c as a map key: equal contents, equal keys.
func (c content) key() string {
	refs, _ := json.Marshal(c.References)
	return c.Type + "\x00" + c.Schema + "\x00" + string(refs)
}

// normalizeSchema returns the stored form of a schema's text: its JSON with
// the insignificant white space removed, so that the same schema written
// twice with different layout is the same schema.
func normalizeSchema(text string) (string, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(text)); err != nil {
		return "", fmt.Errorf("not JSON: %w", err)
	}
	return buf.String(), nil
}

// parsed is a schema parsed with its references resolved, ready for
// compatibility checks.
type parsed interface {
	// canRead reports why data written with writer cannot be read with
	// the receiver: nil when it can (Avro's schema resolution, or for JSON,
	// every document valid under writer is valid under the receiver).
	canRead(writer parsed) []string
}

// resolver finds the content of a referenced subject-version.
type resolver func(Reference) (content, error)

// dependency is a referenced schema, by the name the referrer uses.
type dependency struct {
	name string
	c    content
}

// dependencies returns every schema c references, directly or not,
// dependencies first, each once (by subject and version).
func dependencies(c content, resolve resolver) ([]dependency, error) {
	var out []dependency
	seen := map[Reference]bool{}
	var walk func(refs []Reference, depth int) error
	walk = func(refs []Reference, depth int) error {
		if depth > maxReferenceDepth {
			return fmt.Errorf("references nest deeper than %d", maxReferenceDepth)
		}
		for _, ref := range refs {
			key := Reference{Subject: ref.Subject, Version: ref.Version, Name: ref.Name}
			if seen[key] {
				continue
			}
			seen[key] = true
			dc, err := resolve(ref)
			if err != nil {
				return err
			}
			if dc.Type != c.Type {
				return fmt.Errorf("reference %q is a %s schema, not %s", ref.Name, dc.Type, c.Type)
			}
			if err := walk(dc.References, depth+1); err != nil {
				return err
			}
			out = append(out, dependency{name: ref.Name, c: dc})
		}
		return nil
	}
	if err := walk(c.References, 1); err != nil {
		return nil, err
	}
	return out, nil
}

// parseContent parses c by its type, references resolved.
func parseContent(c content, resolve resolver) (parsed, error) {
	deps, err := dependencies(c, resolve)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case typeAvro:
		return parseAvro(c.Schema, deps)
	case typeJSON:
		return parseJSONSchema(c.Schema, deps)
	}
	return nil, fmt.Errorf("unknown schema type %q (AVRO or JSON)", c.Type)
}

// Compatibility levels (Confluent's names).
type level string

const (
	levelNone               level = "NONE"
	levelBackward           level = "BACKWARD"
	levelBackwardTransitive level = "BACKWARD_TRANSITIVE"
	levelForward            level = "FORWARD"
	levelForwardTransitive  level = "FORWARD_TRANSITIVE"
	levelFull               level = "FULL"
	levelFullTransitive     level = "FULL_TRANSITIVE"

	defaultLevel = levelBackward
)

func parseLevel(s string) (level, bool) {
	switch l := level(s); l {
	case levelNone, levelBackward, levelBackwardTransitive, levelForward, levelForwardTransitive, levelFull, levelFullTransitive:
		return l, true
	}
	return "", false
}

// Modes (Confluent's names). READONLY refuses every write to the subject
// (or, globally, to any subject without a mode of its own); IMPORT lets
// registrations name their id and version and skips compatibility checks.
const (
	modeReadWrite = "READWRITE"
	modeReadOnly  = "READONLY"
	modeImport    = "IMPORT"

	defaultMode = modeReadWrite
)

func validMode(m string) bool { return m == modeReadWrite || m == modeReadOnly || m == modeImport }

// checkCompatibility checks candidate against the live versions of a
// subject (oldest first) at level, as Confluent does: BACKWARD, the
// candidate reads data written with the latest (with all, transitive);
// FORWARD, the latest (all) read data written with the candidate; FULL,
// both. It returns why not; nil means compatible.
func checkCompatibility(l level, candidate parsed, existing []parsed) []string {
	if l == levelNone || len(existing) == 0 {
		return nil
	}
	against := existing[len(existing)-1:]
	switch l {
	case levelBackwardTransitive, levelForwardTransitive, levelFullTransitive:
		against = existing
	}
	backward := l == levelBackward || l == levelBackwardTransitive || l == levelFull || l == levelFullTransitive
	forward := l == levelForward || l == levelForwardTransitive || l == levelFull || l == levelFullTransitive
	var msgs []string
	// Newest first: the first message is about the latest version.
	for i := len(against) - 1; i >= 0; i-- {
		old := against[i]
		if backward {
			for _, m := range candidate.canRead(old) {
				msgs = append(msgs, "BACKWARD: the new schema cannot read data written with an earlier one: "+m)
			}
		}
		if forward {
			for _, m := range old.canRead(candidate) {
				msgs = append(msgs, "FORWARD: an earlier schema cannot read data written with the new one: "+m)
			}
		}
	}
	return msgs
}
