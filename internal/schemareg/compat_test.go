package schemareg

import (
	"strings"
	"testing"
)

// compatCase registers schemas[:n-1] (oldest first) and checks
// schemas[n-1] against them at level.
type compatCase struct {
	name    string
	level   level
	schemas []string
	ok      bool
}

func runCompat(t *testing.T, typ string, cases []compatCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(string(tc.level)+"/"+tc.name, func(t *testing.T) {
			var parsedAll []parsed
			for i, s := range tc.schemas {
				norm, err := normalizeSchema(s)
				if err != nil {
					t.Fatalf("schema %d: %v", i, err)
				}
				p, err := parseContent(content{Type: typ, Schema: norm}, nil)
				if err != nil {
					t.Fatalf("schema %d does not parse: %v", i, err)
				}
				parsedAll = append(parsedAll, p)
			}
			n := len(parsedAll)
			msgs := checkCompatibility(tc.level, parsedAll[n-1], parsedAll[:n-1])
			if ok := len(msgs) == 0; ok != tc.ok {
				t.Fatalf("compatible = %v, want %v; messages: %s", ok, tc.ok, strings.Join(msgs, "; "))
			}
		})
	}
}

const (
	avroV1 = `{"type":"record","name":"User","fields":[{"name":"id","type":"int"}]}`
	// a field added with a default
	avroAddDefault = `{"type":"record","name":"User","fields":[{"name":"id","type":"int"},{"name":"email","type":"string","default":""}]}`
	// a field added without a default
	avroAddNoDefault = `{"type":"record","name":"User","fields":[{"name":"id","type":"int"},{"name":"email","type":"string"}]}`
	// id promoted int -> long
	avroLong   = `{"type":"record","name":"User","fields":[{"name":"id","type":"long"}]}`
	avroString = `{"type":"record","name":"User","fields":[{"name":"id","type":"string"}]}`
	avroOther  = `{"type":"record","name":"Account","fields":[{"name":"id","type":"int"}]}`
	avroEnum2  = `{"type":"enum","name":"Color","symbols":["RED","GREEN"]}`
	avroEnum3  = `{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}`
	avroEnum3D = `{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"],"default":"RED"}`
	avroEnum2D = `{"type":"enum","name":"Color","symbols":["RED","GREEN"],"default":"RED"}`
	avroUnionN = `{"type":"record","name":"User","fields":[{"name":"id","type":["null","int"],"default":null}]}`
	avroUnionL = `{"type":"record","name":"User","fields":[{"name":"id","type":["null","long","string"],"default":null}]}`
	avroArrI   = `{"type":"array","items":"int"}`
	avroArrD   = `{"type":"array","items":"double"}`
	avroMapB   = `{"type":"map","values":"bytes"}`
	avroMapS   = `{"type":"map","values":"string"}`
	avroFix4   = `{"type":"fixed","name":"F","size":4}`
	avroFix8   = `{"type":"fixed","name":"F","size":8}`
	avroAlias  = `{"type":"record","name":"User","fields":[{"name":"ident","aliases":["id"],"type":"int"}]}`
	avroRecurs = `{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}`
	avroRecurL = `{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"],"default":null}]}`
	avroRecurB = `{"type":"record","name":"Node","fields":[{"name":"v","type":"boolean"},{"name":"next","type":["null","Node"],"default":null}]}`
)

func TestAvroCompatibility(t *testing.T) {
	runCompat(t, typeAvro, []compatCase{
		// NONE accepts anything.
		{"unrelated", levelNone, []string{avroV1, avroOther}, true},
		{"string-for-int", levelNone, []string{avroV1, avroString}, true},

		// BACKWARD: the new schema reads the latest's data.
		{"add-field-with-default", levelBackward, []string{avroV1, avroAddDefault}, true},
		{"add-field-without-default", levelBackward, []string{avroV1, avroAddNoDefault}, false},
		{"remove-field", levelBackward, []string{avroAddNoDefault, avroV1}, true},
		{"promote-int-long", levelBackward, []string{avroV1, avroLong}, true},
		{"demote-long-int", levelBackward, []string{avroLong, avroV1}, false},
		{"int-to-string", levelBackward, []string{avroV1, avroString}, false},
		{"record-renamed", levelBackward, []string{avroV1, avroOther}, false},
		{"enum-symbol-added", levelBackward, []string{avroEnum2, avroEnum3}, true},
		{"enum-symbol-removed", levelBackward, []string{avroEnum3, avroEnum2}, false},
		{"enum-symbol-removed-reader-default", levelBackward, []string{avroEnum3, avroEnum2D}, true},
		{"int-into-nullable-union", levelBackward, []string{avroV1, avroUnionN}, true},
		{"union-widened", levelBackward, []string{avroUnionN, avroUnionL}, true},
		{"union-narrowed", levelBackward, []string{avroUnionL, avroUnionN}, false},
		{"union-to-int", levelBackward, []string{avroUnionN, avroV1}, false},
		{"array-int-to-double", levelBackward, []string{avroArrI, avroArrD}, true},
		{"array-double-to-int", levelBackward, []string{avroArrD, avroArrI}, false},
		{"map-bytes-to-string", levelBackward, []string{avroMapB, avroMapS}, true},
		{"fixed-size-changed", levelBackward, []string{avroFix4, avroFix8}, false},
		{"field-renamed-with-alias", levelBackward, []string{avroV1, avroAlias}, true},
		{"recursive-promoted", levelBackward, []string{avroRecurs, avroRecurL}, true},
		{"recursive-broken", levelBackward, []string{avroRecurs, avroRecurB}, false},
		// Only the latest counts: v1 has no email, v2 has it with no
		// default, v3 has it without a default too.
		{"latest-only", levelBackward, []string{avroV1, avroAddNoDefault, avroAddNoDefault}, true},

		// BACKWARD_TRANSITIVE: the new schema reads every version's data.
		{"transitive-chain-ok", levelBackwardTransitive, []string{avroV1, avroAddDefault, avroLong}, true},
		{"transitive-breaks-first", levelBackwardTransitive, []string{avroV1, avroAddNoDefault, avroAddNoDefault}, false},

		// FORWARD: the latest reads the new schema's data.
		{"add-field-without-default", levelForward, []string{avroV1, avroAddNoDefault}, true},
		{"remove-field-without-default", levelForward, []string{avroAddNoDefault, avroV1}, false},
		{"remove-field-with-default", levelForward, []string{avroAddDefault, avroV1}, true},
		{"promote-int-long", levelForward, []string{avroV1, avroLong}, false},
		{"enum-symbol-added", levelForward, []string{avroEnum2, avroEnum3}, false},
		{"enum-symbol-added-old-default", levelForward, []string{avroEnum2D, avroEnum3}, true},
		{"enum-symbol-removed", levelForward, []string{avroEnum3, avroEnum2}, true},

		// FORWARD_TRANSITIVE: every version reads the new schema's data.
		{"transitive-ok", levelForwardTransitive, []string{avroV1, avroAddDefault, avroAddNoDefault}, true},
		{"transitive-first-cannot-read", levelForwardTransitive, []string{avroV1, avroLong, avroLong}, false},
		{"non-transitive-passes", levelForward, []string{avroV1, avroLong, avroLong}, true},

		// FULL: both ways with the latest.
		{"add-field-with-default", levelFull, []string{avroV1, avroAddDefault}, true},
		{"add-field-without-default", levelFull, []string{avroV1, avroAddNoDefault}, false},
		{"remove-field-with-default", levelFull, []string{avroAddDefault, avroV1}, true},
		{"promote-int-long", levelFull, []string{avroV1, avroLong}, false},
		{"enum-symbol-added-with-default", levelFull, []string{avroEnum3D, avroEnum2D}, true},

		// FULL_TRANSITIVE: both ways with every version.
		{"defaults-everywhere", levelFullTransitive, []string{avroV1, avroAddDefault, avroV1}, true},
		{"first-breaks", levelFullTransitive, []string{avroLong, avroV1, avroV1}, false},
		{"non-transitive-passes", levelFull, []string{avroLong, avroV1, avroV1}, true},
	})
}

const (
	jsonObj      = `{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}`
	jsonObjName  = `{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id"]}`
	jsonObjNameR = `{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id","name"]}`
	jsonClosed   = `{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"],"additionalProperties":false}`
	jsonClosedN  = `{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id"],"additionalProperties":false}`
	jsonNumber   = `{"type":"object","properties":{"id":{"type":"number"}},"required":["id"]}`
	jsonStringID = `{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`
	jsonEnum2    = `{"type":"string","enum":["a","b"]}`
	jsonEnum3    = `{"type":"string","enum":["a","b","c"]}`
	jsonStr      = `{"type":"string"}`
	jsonStrMax   = `{"type":"string","maxLength":10}`
	jsonStrMax20 = `{"type":"string","maxLength":20}`
	jsonNullable = `{"type":["string","null"]}`
	jsonAnyOf    = `{"anyOf":[{"type":"string"},{"type":"null"}]}`
	jsonArrInt   = `{"type":"array","items":{"type":"integer"}}`
	jsonArrNum   = `{"type":"array","items":{"type":"number"}}`
	jsonRange    = `{"type":"integer","minimum":0,"maximum":100}`
	jsonRangeW   = `{"type":"integer","minimum":-10,"maximum":1000}`
	jsonRef      = `{"definitions":{"id":{"type":"integer"}},"type":"object","properties":{"id":{"$ref":"#/definitions/id"}},"required":["id"]}`
	jsonRefNum   = `{"definitions":{"id":{"type":"number"}},"type":"object","properties":{"id":{"$ref":"#/definitions/id"}},"required":["id"]}`
	jsonDoc      = `{"type":"object","title":"a user","description":"changed","properties":{"id":{"type":"integer","description":"the id"}},"required":["id"]}`
	jsonOneOf    = `{"oneOf":[{"type":"string"},{"type":"integer"}]}`
	jsonOneOf2   = `{"oneOf":[{"type":"string"},{"type":"boolean"}]}`
)

func TestJSONSchemaCompatibility(t *testing.T) {
	runCompat(t, typeJSON, []compatCase{
		{"anything", levelNone, []string{jsonObj, jsonStr}, true},

		// BACKWARD: every document valid under the latest is valid under the new.
		{"annotations-only", levelBackward, []string{jsonObj, jsonDoc}, true},
		{"optional-property-added-open-model", levelBackward, []string{jsonObj, jsonObjName}, false},
		{"optional-property-added-closed-model", levelBackward, []string{jsonClosed, jsonClosedN}, true},
		{"property-removed-open-reader", levelBackward, []string{jsonObjName, jsonObj}, true},
		{"property-removed-closed-reader", levelBackward, []string{jsonClosedN, jsonClosed}, false},
		{"required-added", levelBackward, []string{jsonClosedN, `{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id","name"],"additionalProperties":false}`}, false},
		{"required-removed", levelBackward, []string{jsonObjNameR, jsonObjName}, true},
		{"integer-widened-to-number", levelBackward, []string{jsonObj, jsonNumber}, true},
		{"number-narrowed-to-integer", levelBackward, []string{jsonNumber, jsonObj}, false},
		{"type-changed", levelBackward, []string{jsonObj, jsonStringID}, false},
		{"enum-value-added", levelBackward, []string{jsonEnum2, jsonEnum3}, true},
		{"enum-value-removed", levelBackward, []string{jsonEnum3, jsonEnum2}, false},
		{"enum-dropped", levelBackward, []string{jsonEnum2, jsonStr}, true},
		{"enum-added", levelBackward, []string{jsonStr, jsonEnum2}, false},
		{"maxLength-raised", levelBackward, []string{jsonStrMax, jsonStrMax20}, true},
		{"maxLength-lowered", levelBackward, []string{jsonStrMax20, jsonStrMax}, false},
		{"made-nullable", levelBackward, []string{jsonStr, jsonNullable}, true},
		{"made-nullable-anyOf", levelBackward, []string{jsonStr, jsonAnyOf}, true},
		{"anyOf-to-string", levelBackward, []string{jsonAnyOf, jsonStr}, false},
		{"items-widened", levelBackward, []string{jsonArrInt, jsonArrNum}, true},
		{"items-narrowed", levelBackward, []string{jsonArrNum, jsonArrInt}, false},
		{"range-widened", levelBackward, []string{jsonRange, jsonRangeW}, true},
		{"range-narrowed", levelBackward, []string{jsonRangeW, jsonRange}, false},
		{"ref-widened", levelBackward, []string{jsonRef, jsonRefNum}, true},
		{"ref-narrowed", levelBackward, []string{jsonRefNum, jsonRef}, false},
		{"oneOf-unchanged", levelBackward, []string{jsonOneOf, jsonOneOf}, true},
		{"oneOf-changed-not-checked", levelBackward, []string{jsonOneOf, jsonOneOf2}, false},

		{"transitive-ok", levelBackwardTransitive, []string{jsonRange, jsonRangeW, jsonRangeW}, true},
		{"transitive-first-breaks", levelBackwardTransitive, []string{jsonObj, jsonStringID, jsonStringID}, false},
		{"non-transitive-passes", levelBackward, []string{jsonObj, jsonStringID, jsonStringID}, true},

		// FORWARD: every document valid under the new is valid under the latest.
		{"property-removed-open-latest", levelForward, []string{jsonObjName, jsonObj}, false},
		{"optional-property-added", levelForward, []string{jsonObj, jsonObjName}, true},
		{"required-added", levelForward, []string{jsonObjName, jsonObjNameR}, true},
		{"enum-value-added", levelForward, []string{jsonEnum2, jsonEnum3}, false},
		{"enum-value-removed", levelForward, []string{jsonEnum3, jsonEnum2}, true},
		{"number-to-integer", levelForward, []string{jsonNumber, jsonObj}, true},
		{"transitive-first-breaks", levelForwardTransitive, []string{jsonEnum2, jsonEnum3, jsonEnum3}, false},
		{"transitive-ok", levelForwardTransitive, []string{jsonEnum3, jsonEnum3, jsonEnum2}, true},

		// FULL: both ways.
		{"annotations-only", levelFull, []string{jsonObj, jsonDoc}, true},
		{"closed-property-added", levelFull, []string{jsonClosed, jsonClosedN}, false},
		{"enum-value-added", levelFull, []string{jsonEnum2, jsonEnum3}, false},
		{"full-transitive-ok", levelFullTransitive, []string{jsonObj, jsonDoc, jsonObj}, true},
		{"full-transitive-first-breaks", levelFullTransitive, []string{jsonNumber, jsonObj, jsonObj}, false},
		{"full-non-transitive-passes", levelFull, []string{jsonNumber, jsonObj, jsonObj}, true},
	})
}

// Schemas of different types are never compatible.
func TestMixedTypesIncompatible(t *testing.T) {
	a, err := parseContent(content{Type: typeAvro, Schema: `"string"`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := parseContent(content{Type: typeJSON, Schema: jsonStr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if msgs := checkCompatibility(levelBackward, a, []parsed{j}); len(msgs) == 0 {
		t.Fatal("AVRO after JSON: compatible, want not")
	}
}

// A JSON schema may not load anything from files or the network.
func TestJSONSchemaRefusesRemoteRefs(t *testing.T) {
	for _, s := range []string{`{"$ref":"file:///etc/passwd"}`, `{"$ref":"http://127.0.0.1:1/x.json"}`, `{"$ref":"other.json"}`} {
		if _, err := parseContent(content{Type: typeJSON, Schema: s}, nil); err == nil {
			t.Errorf("%s: parsed, want an error", s)
		}
	}
}
