package schemareg

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// JSON Schema: parsed and validated with santhosh-tekuri/jsonschema (draft 7
// when the schema names none, as Confluent's default), references added as
// resources under their names. No schema is ever loaded from a URL or a
// file: a $ref that no reference names fails to compile.
//
// Compatibility (canRead: is every document valid under the writer's
// schema valid under the reader's?) is a sound subset of Confluent's
// JsonSchemaCompatibilityChecker: "compatible" is only answered when the
// inclusion follows from rules below; anything they do not cover is
// reported as incompatible, with a message naming the keyword. Checked:
//   - type, with integer a subset of number; a writer without a type allows every type
//   - enum and const: a writer with one is compatible when each of its values validates against the reader
//   - properties (added or removed, against the other side's additionalProperties,
//     open or closed or a schema), additionalProperties, required, min/maxProperties
//   - items (a schema, or a writer's tuple against a reader's schema), additionalItems,
//     min/maxItems, uniqueItems
//   - minLength, maxLength, pattern and format (the reader's must be absent or unchanged)
//   - minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers), multipleOf
//   - a writer's anyOf/oneOf (every branch must be readable) and allOf (one branch
//     readable is enough), a reader's anyOf (one branch must read the writer) and allOf (every one)
//   - $ref to the same document (#/definitions/..., #/$defs/...) or to a referenced schema
//   - annotations (title, description, default, examples, $comment, ...) are ignored
//
// Not checked, so any difference is reported: a reader's oneOf, not,
// if/then/else, patternProperties, dependencies/dependent*, propertyNames,
// prefixItems, contains, unevaluated*, tuple items, and recursion past
// maxJSONCheckDepth. Confluent answers some of these more precisely (for
// example oneOf branches added or removed); here they must stay unchanged.
type jsonSchema struct {
	compiler *jsonschema.Compiler
	docs     map[string]any // by URL: the root and every reference
	root     string         // the root's URL
}

// jsonBaseURL is where schemas live for their references to resolve
// against: a reference named "address.json" is mem://schemareg/address.json.
const jsonBaseURL = "mem://schemareg/"

// maxJSONCheckDepth bounds how deep a compatibility check descends (and so
// its work on recursive schemas, which are only compatible when unchanged
// past this depth).
const maxJSONCheckDepth = 64

// noLoader refuses to load any URL: a schema's $ref may only name the
// schema itself or one of its references.
type noLoader struct{}

func (noLoader) Load(u string) (any, error) {
	return nil, fmt.Errorf("$ref %s is neither in the schema nor one of its references", u)
}

func referenceURL(name string) string {
	if u, err := url.Parse(name); err == nil && u.IsAbs() {
		return name
	}
	return jsonBaseURL + name
}

func parseJSONSchema(text string, deps []dependency) (parsed, error) {
	js := &jsonSchema{compiler: jsonschema.NewCompiler(), docs: map[string]any{}, root: jsonBaseURL + "__root__.json"}
	js.compiler.DefaultDraft(jsonschema.Draft7)
	js.compiler.UseLoader(noLoader{})
	add := func(u, text string) error {
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
		if err != nil {
			return err
		}
		switch doc.(type) {
		case map[string]any, bool:
		default:
			return errors.New("a JSON schema is an object or a boolean")
		}
		if _, dup := js.docs[u]; dup {
			return nil // the same name referenced twice
		}
		js.docs[u] = doc
		return js.compiler.AddResource(u, doc)
	}
	for _, d := range deps {
		if err := add(referenceURL(d.name), d.c.Schema); err != nil {
			return nil, fmt.Errorf("reference %q: %w", d.name, err)
		}
	}
	if err := add(js.root, text); err != nil {
		return nil, err
	}
	if _, err := js.compiler.Compile(js.root); err != nil {
		return nil, err
	}
	return js, nil
}

// jnode is a subschema: its value, and where it is (document URL and JSON
// pointer), so that $refs in it resolve and it can be compiled alone.
type jnode struct {
	v   any
	doc string
	ptr string
}

func (n jnode) child(v any, seg ...string) jnode {
	p := n.ptr
	for _, s := range seg {
		p += "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
	}
	return jnode{v: v, doc: n.doc, ptr: p}
}

func (r *jsonSchema) canRead(writer parsed) []string {
	w, ok := writer.(*jsonSchema)
	if !ok {
		return []string{"the schemas are of different types"}
	}
	c := &jsonChecker{r: r, w: w}
	c.check(jnode{v: r.docs[r.root], doc: r.root}, jnode{v: w.docs[w.root], doc: w.root}, "#", 0)
	return c.msgs
}

type jsonChecker struct {
	r, w *jsonSchema
	msgs []string
}

func (c *jsonChecker) fail(path, format string, args ...any) {
	c.msgs = append(c.msgs, fmt.Sprintf("at %s: ", path)+fmt.Sprintf(format, args...))
}

// probe runs a check on the side and reports whether it passed.
func (c *jsonChecker) probe(r, w jnode, path string, depth int) ([]string, bool) {
	p := &jsonChecker{r: c.r, w: c.w}
	p.check(r, w, path, depth)
	return p.msgs, len(p.msgs) == 0
}

// Keywords that do not constrain documents.
var jsonAnnotations = map[string]bool{
	"$schema": true, "$id": true, "id": true, "title": true, "description": true, "default": true,
	"examples": true, "$comment": true, "readOnly": true, "writeOnly": true, "deprecated": true,
	"definitions": true, "$defs": true, "contentEncoding": true, "contentMediaType": true, "$anchor": true,
}

// Keywords the reader side checks below.
var jsonChecked = map[string]bool{
	"type": true, "enum": true, "const": true, "$ref": true,
	"properties": true, "additionalProperties": true, "required": true, "minProperties": true, "maxProperties": true,
	"items": true, "additionalItems": true, "minItems": true, "maxItems": true, "uniqueItems": true,
	"minLength": true, "maxLength": true, "pattern": true, "format": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true,
	"anyOf": true, "allOf": true,
}

// resolve follows a $ref from node n of schema s; ok is false when it
// names nothing this checker can find.
func (s *jsonSchema) resolve(n jnode, ref string) (jnode, bool) {
	base, err := url.Parse(n.doc)
	if err != nil {
		return jnode{}, false
	}
	u, err := base.Parse(ref)
	if err != nil {
		return jnode{}, false
	}
	frag := u.Fragment
	u.Fragment = ""
	doc, ok := s.docs[u.String()]
	if !ok {
		return jnode{}, false
	}
	v := doc
	if frag != "" {
		if !strings.HasPrefix(frag, "/") {
			return jnode{}, false // an anchor: not followed
		}
		for _, seg := range strings.Split(frag[1:], "/") {
			seg = strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)
			switch x := v.(type) {
			case map[string]any:
				if v, ok = x[seg]; !ok {
					return jnode{}, false
				}
			case []any:
				i, err := strconv.Atoi(seg)
				if err != nil || i < 0 || i >= len(x) {
					return jnode{}, false
				}
				v = x[i]
			default:
				return jnode{}, false
			}
		}
	}
	return jnode{v: v, doc: u.String(), ptr: frag}, true
}

// safePointer matches the JSON pointers that can be compiled as a URL
// fragment without escaping.
var safePointer = regexp.MustCompile(`^[A-Za-z0-9_/.$-]*$`)

// accepts reports whether the reader's node validates value.
func (c *jsonChecker) accepts(r jnode, value any) (bool, error) {
	if !safePointer.MatchString(r.ptr) {
		return false, errors.New("its location cannot be compiled alone")
	}
	sch, err := c.r.compiler.Compile(r.doc + "#" + r.ptr)
	if err != nil {
		return false, err
	}
	return sch.Validate(value) == nil, nil
}

func hasRef(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["$ref"]; ok {
			return true
		}
		for _, e := range x {
			if hasRef(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasRef(e) {
				return true
			}
		}
	}
	return false
}

// sameConstraint reports whether a and b are the same constraint for
// certain: equal, and free of $refs (which could resolve differently in
// the two schemas).
func sameConstraint(a, b any) bool { return reflect.DeepEqual(a, b) && !hasRef(a) }

var allJSONTypes = []string{"array", "boolean", "integer", "null", "number", "object", "string"}

// types returns the types a schema object names; nil means every type.
func types(m map[string]any) []string {
	switch t := m["type"].(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// mayBe reports whether a document of type t may be valid under a schema
// with types ts (nil: any).
func mayBe(ts []string, t string) bool {
	if ts == nil {
		return true
	}
	if slices.Contains(ts, t) {
		return true
	}
	return t == "integer" && slices.Contains(ts, "number")
}

func (c *jsonChecker) check(r, w jnode, path string, depth int) {
	if depth > maxJSONCheckDepth {
		if !sameConstraint(r.v, w.v) {
			c.fail(path, "the schemas nest deeper than %d levels; only unchanged parts are compatible there", maxJSONCheckDepth)
		}
		return
	}
	// Booleans: true and {} accept everything, false nothing.
	if b, ok := r.v.(bool); ok {
		if b {
			return
		}
		r.v = map[string]any{"not": map[string]any{}}
	}
	if b, ok := w.v.(bool); ok {
		if !b {
			return
		}
		w.v = map[string]any{}
	}
	rm, rok := r.v.(map[string]any)
	wm, wok := w.v.(map[string]any)
	if !rok || !wok {
		c.fail(path, "not a schema")
		return
	}
	if sameConstraint(rm, wm) {
		return
	}
	// The writer's $ref: its documents are valid under the target and the
	// siblings both, so one of them readable is enough.
	if ref, ok := wm["$ref"].(string); ok {
		target, found := c.w.resolve(w, ref)
		siblings := without(wm, "$ref")
		if found {
			if _, ok := c.probe(r, target, path, depth+1); ok {
				return
			}
		}
		c.check(r, w.child(siblings), path, depth+1)
		return
	}
	// The reader's $ref: both the target and the siblings must read.
	if ref, ok := rm["$ref"].(string); ok {
		target, found := c.r.resolve(r, ref)
		if !found {
			c.fail(path, "the reader's $ref %q cannot be followed", ref)
			return
		}
		c.check(target, w, path, depth+1)
		if rest := without(rm, "$ref"); len(rest) > 0 {
			c.check(r.child(rest), w, path, depth+1)
		}
		return
	}
	// A writer with enum or const: exactly its values can be written.
	if vals, ok := writerValues(wm); ok {
		for _, v := range vals {
			okv, err := c.accepts(r, v)
			if err != nil {
				c.fail(path, "cannot check the writer's value %s against the reader: %v", short(v), err)
			} else if !okv {
				c.fail(path, "the writer allows %s, which the reader does not", short(v))
			}
		}
		return
	}
	// The writer's combinators: its documents are valid under its other
	// keywords and under the combinator, so either readable is enough.
	if len(combinators(wm)) > 0 {
		siblings := without(wm, "anyOf", "oneOf", "allOf")
		if _, ok := c.probe(r, w.child(siblings), path, depth+1); ok {
			return
		}
		for _, k := range combinators(wm) {
			branches, _ := wm[k].([]any)
			good := 0
			for i, b := range branches {
				if _, ok := c.probe(r, w.child(b, k, strconv.Itoa(i)), path, depth+1); ok {
					good++
				}
			}
			if (k == "allOf" && good > 0) || (k != "allOf" && good == len(branches) && good > 0) {
				return
			}
		}
		// Fall through: check the reader against the writer's other
		// keywords only (its combinators ignored, which only widens it).
		wm = siblings
	}
	c.checkKeywords(r, w, rm, wm, path, depth)
}

func writerValues(wm map[string]any) ([]any, bool) {
	if v, ok := wm["const"]; ok {
		return []any{v}, true
	}
	if e, ok := wm["enum"].([]any); ok {
		return e, true
	}
	return nil, false
}

func combinators(m map[string]any) []string {
	var out []string
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if _, ok := m[k]; ok {
			out = append(out, k)
		}
	}
	return out
}

func without(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if !slices.Contains(keys, k) {
			out[k] = v
		}
	}
	return out
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// checkKeywords checks the reader's keywords one by one against the
// writer's (whose enum, $ref and combinators are handled by check).
func (c *jsonChecker) checkKeywords(r, w jnode, rm, wm map[string]any, path string, depth int) {
	rt, wt := types(rm), types(wm)
	if rt != nil {
		if wt == nil {
			c.fail(path, "the reader allows only %s, the writer any type", strings.Join(rt, ", "))
		} else {
			for _, t := range wt {
				if !mayBe(rt, t) {
					c.fail(path, "the writer allows %s, the reader does not", t)
				}
			}
		}
	}
	if _, ok := rm["enum"]; ok {
		c.fail(path, "the reader allows only the values of its enum, the writer has no enum")
	}
	if _, ok := rm["const"]; ok {
		c.fail(path, "the reader allows only its const, the writer has none")
	}
	if mayBe(wt, "object") {
		c.checkObject(r, w, rm, wm, path, depth)
	}
	if mayBe(wt, "array") {
		c.checkArray(r, w, rm, wm, path, depth)
	}
	if mayBe(wt, "string") {
		c.checkLimit(rm, wm, "minLength", path, true)
		c.checkLimit(rm, wm, "maxLength", path, false)
		for _, k := range []string{"pattern", "format"} {
			if rv, ok := rm[k]; ok && !reflect.DeepEqual(rv, wm[k]) {
				c.fail(path, "the reader's %s %s is new or changed", k, short(rv))
			}
		}
	}
	if mayBe(wt, "number") || mayBe(wt, "integer") {
		c.checkNumber(rm, wm, path)
	}
	if branches, ok := rm["anyOf"].([]any); ok && !sameConstraint(rm["anyOf"], wm["anyOf"]) {
		found := false
		for i, b := range branches {
			if _, ok := c.probe(r.child(b, "anyOf", strconv.Itoa(i)), w.child(wm), path, depth+1); ok {
				found = true
				break
			}
		}
		if !found {
			c.fail(path, "no branch of the reader's anyOf reads the writer")
		}
	}
	if branches, ok := rm["allOf"].([]any); ok && !sameConstraint(rm["allOf"], wm["allOf"]) {
		for i, b := range branches {
			c.check(r.child(b, "allOf", strconv.Itoa(i)), w.child(wm), fmt.Sprintf("%s/allOf/%d", path, i), depth+1)
		}
	}
	// Everything else the reader constrains must be unchanged.
	var keys []string
	for k := range rm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if jsonAnnotations[k] || jsonChecked[k] {
			continue
		}
		if !sameConstraint(rm[k], wm[k]) {
			c.fail(path, "the reader's %s is new or changed (not checked beyond equality)", k)
		}
	}
}

func (c *jsonChecker) checkObject(r, w jnode, rm, wm map[string]any, path string, depth int) {
	rp, _ := rm["properties"].(map[string]any)
	wp, _ := wm["properties"].(map[string]any)
	rAdd, rHasAdd := rm["additionalProperties"]
	wAdd, wHasAdd := wm["additionalProperties"]
	if !rHasAdd {
		rAdd = true
	}
	if !wHasAdd {
		wAdd = true
	}
	if !sameConstraint(rm["patternProperties"], wm["patternProperties"]) {
		c.fail(path, "patternProperties changed (not checked beyond equality)")
	}
	for _, name := range sortedKeys(rp) {
		ppath := path + "/properties/" + name
		if wv, ok := wp[name]; ok {
			c.check(r.child(rp[name], "properties", name), w.child(wv, "properties", name), ppath, depth+1)
			continue
		}
		// The writer has no such property: it may still write one, as
		// its additionalProperties allow.
		if b, ok := wAdd.(bool); ok && !b {
			continue
		}
		if _, ok := c.probe(r.child(rp[name], "properties", name), w.child(wAdd, "additionalProperties"), ppath, depth+1); !ok {
			c.fail(ppath, "the reader constrains property %q, which the writer's open content model lets it write with any value (add it to the writer or close the writer with additionalProperties: false)", name)
		}
	}
	for _, name := range sortedKeys(wp) {
		if _, ok := rp[name]; ok {
			continue
		}
		ppath := path + "/properties/" + name
		if _, ok := c.probe(r.child(rAdd, "additionalProperties"), w.child(wp[name], "properties", name), ppath, depth+1); !ok {
			c.fail(ppath, "the writer's property %q is not one of the reader's, whose additionalProperties do not accept it", name)
		}
	}
	// Properties neither names: the writer's additionalProperties may
	// write them, the reader's must read them.
	if closed, ok := wAdd.(bool); rHasAdd && !(ok && !closed) {
		c.check(r.child(rAdd, "additionalProperties"), w.child(wAdd, "additionalProperties"), path+"/additionalProperties", depth+1)
	}
	wreq := stringSet(wm["required"])
	for _, name := range sortedKeys(stringSet(rm["required"])) {
		if !wreq[name] {
			c.fail(path, "the reader requires property %q, the writer does not", name)
		}
	}
	c.checkLimit(rm, wm, "minProperties", path, true)
	c.checkLimit(rm, wm, "maxProperties", path, false)
}

func (c *jsonChecker) checkArray(r, w jnode, rm, wm map[string]any, path string, depth int) {
	rItems, rHas := rm["items"]
	if !rHas {
		rItems = true
	}
	if _, tuple := rItems.([]any); tuple {
		if !sameConstraint(rm["items"], wm["items"]) || !sameConstraint(rm["additionalItems"], wm["additionalItems"]) {
			c.fail(path, "the reader's tuple items changed (not checked beyond equality)")
		}
	} else if rHas {
		wItems, wHas := wm["items"]
		if !wHas {
			wItems = true
		}
		if tuple, ok := wItems.([]any); ok {
			for i, it := range tuple {
				c.check(r.child(rItems, "items"), w.child(it, "items", strconv.Itoa(i)), fmt.Sprintf("%s/items/%d", path, i), depth+1)
			}
			wAdd, ok := wm["additionalItems"]
			if !ok {
				wAdd = true
			}
			c.check(r.child(rItems, "items"), w.child(wAdd, "additionalItems"), path+"/additionalItems", depth+1)
		} else {
			c.check(r.child(rItems, "items"), w.child(wItems, "items"), path+"/items", depth+1)
		}
	}
	c.checkLimit(rm, wm, "minItems", path, true)
	c.checkLimit(rm, wm, "maxItems", path, false)
	if u, _ := rm["uniqueItems"].(bool); u {
		if wu, _ := wm["uniqueItems"].(bool); !wu {
			c.fail(path, "the reader requires unique items, the writer does not")
		}
	}
}

// checkLimit checks a count limit (minLength, maxItems, ...): a reader's
// minimum must be at most the writer's, its maximum at least the writer's.
func (c *jsonChecker) checkLimit(rm, wm map[string]any, k, path string, isMin bool) {
	rv, ok := number(rm[k])
	if !ok {
		return
	}
	wv, wok := number(wm[k])
	switch {
	case isMin && rv.Sign() <= 0:
	case isMin && (!wok || wv.Cmp(rv) < 0):
		c.fail(path, "the reader's %s %s is above the writer's", k, rv.RatString())
	case !isMin && (!wok || wv.Cmp(rv) > 0):
		c.fail(path, "the reader's %s %s is below the writer's", k, rv.RatString())
	}
}

// checkNumber checks the reader's numeric bounds against the writer's.
func (c *jsonChecker) checkNumber(rm, wm map[string]any, path string) {
	for _, k := range []string{"exclusiveMinimum", "exclusiveMaximum"} {
		if v, ok := rm[k]; ok {
			if _, isNum := number(v); !isNum && !(reflect.DeepEqual(v, wm[k]) && reflect.DeepEqual(rm["minimum"], wm["minimum"]) && reflect.DeepEqual(rm["maximum"], wm["maximum"])) {
				c.fail(path, "the reader's boolean %s (draft 4) changed", k)
			}
		}
	}
	// The writer's lower bound: the greater of minimum and exclusiveMinimum.
	wMin, wMinOK := number(wm["minimum"])
	wxMin, wxMinOK := number(wm["exclusiveMinimum"])
	wMax, wMaxOK := number(wm["maximum"])
	wxMax, wxMaxOK := number(wm["exclusiveMaximum"])
	if m, ok := number(rm["minimum"]); ok {
		if !(wMinOK && wMin.Cmp(m) >= 0) && !(wxMinOK && wxMin.Cmp(m) >= 0) {
			c.fail(path, "the reader's minimum %s is above the writer's lower bound", m.RatString())
		}
	}
	if m, ok := number(rm["exclusiveMinimum"]); ok {
		if !(wMinOK && wMin.Cmp(m) > 0) && !(wxMinOK && wxMin.Cmp(m) >= 0) {
			c.fail(path, "the reader's exclusiveMinimum %s is not below the writer's lower bound", m.RatString())
		}
	}
	if m, ok := number(rm["maximum"]); ok {
		if !(wMaxOK && wMax.Cmp(m) <= 0) && !(wxMaxOK && wxMax.Cmp(m) <= 0) {
			c.fail(path, "the reader's maximum %s is below the writer's upper bound", m.RatString())
		}
	}
	if m, ok := number(rm["exclusiveMaximum"]); ok {
		if !(wMaxOK && wMax.Cmp(m) < 0) && !(wxMaxOK && wxMax.Cmp(m) <= 0) {
			c.fail(path, "the reader's exclusiveMaximum %s is not above the writer's upper bound", m.RatString())
		}
	}
	if m, ok := number(rm["multipleOf"]); ok && m.Sign() > 0 {
		wm, wok := number(wm["multipleOf"])
		if !wok || !new(big.Rat).Quo(wm, m).IsInt() {
			c.fail(path, "the reader's multipleOf %s does not divide the writer's", m.RatString())
		}
	}
}

// number reads a JSON number exactly.
func number(v any) (*big.Rat, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(n.String())
	return r, ok
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func stringSet(v any) map[string]bool {
	out := map[string]bool{}
	if l, ok := v.([]any); ok {
		for _, e := range l {
			if s, ok := e.(string); ok {
				out[s] = true
			}
		}
	}
	return out
}
