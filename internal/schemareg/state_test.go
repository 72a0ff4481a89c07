package schemareg

import (
	"testing"
)

// rec builds a SCHEMA record's key and value.
func schemaRec(subject string, ver, id int, schema, nonce string) ([]byte, []byte) {
	k := encodeKey(recordKey{KeyType: keySchema, Subject: subject, Version: ver, ID: id, Nonce: nonce})
	v := encodeValue(schemaValue{Subject: subject, Version: ver, ID: id, Type: typeAvro, Schema: schema})
	return k, v
}

func deleteRec(subject string, ver int, nonce string) ([]byte, []byte) {
	return encodeKey(recordKey{KeyType: keyDelete, Subject: subject, Version: ver, Nonce: nonce}),
		encodeValue(deleteValue{Subject: subject, Version: ver})
}

type logRec struct{ k, v []byte }

func replay(t *testing.T, log []logRec) *state {
	t.Helper()
	st := newState()
	for i, r := range log {
		if err := st.apply(int64(i), r.k, r.v); err != nil {
			t.Fatalf("offset %d: %v", i, err)
		}
	}
	return st
}

// compact drops every record whose key appears again later (what Kafka's
// cleaner may do), and tombstones too.
func compact(log []logRec) []logRec {
	last := map[string]int{}
	for i, r := range log {
		last[string(r.k)] = i
	}
	var out []logRec
	for i, r := range log {
		if last[string(r.k)] == i && r.v != nil {
			out = append(out, r)
		}
	}
	return out
}

// Two writers planned on the same state: the first record in the log wins
// version 2 and id 2; the second takes no effect, on every replay.
func TestStateFirstWriteWins(t *testing.T) {
	var log []logRec
	add := func(k, v []byte) { log = append(log, logRec{k, v}) }
	add(schemaRec("s", 1, 1, `"int"`, "a"))
	add(schemaRec("s", 2, 2, `"long"`, "b"))   // writer B
	add(schemaRec("s", 2, 2, `"string"`, "c")) // writer C, same plan: loses
	add(schemaRec("s", 2, 3, `"bytes"`, "c2")) // version 2 taken (its id is free): loses
	add(schemaRec("s", 3, 4, `"long"`, "c3"))  // the same content live in s: loses
	add(schemaRec("t", 1, 2, `"string"`, "d")) // id 2 is another schema's: loses
	add(schemaRec("t", 1, 3, `"int"`, "e"))    // content of id 1 under another id: loses
	st := replay(t, log)
	if v := st.subjects["s"][2]; v == nil || v.Schema != `"long"` || v.ID != 2 {
		t.Fatalf("s v2 = %+v, want \"long\" with id 2", v)
	}
	if len(st.subjects["t"]) != 0 {
		t.Fatalf("t has versions %v, want none", st.subjects["t"])
	}
	if len(st.rejected) != 5 || len(st.subjects["s"]) != 2 {
		t.Fatalf("rejected %d records, want 5; s has %d versions, want 2", len(st.rejected), len(st.subjects["s"]))
	}
	// Soft delete, then a permanent delete as Registry writes it:
	// tombstones for the rejected records first, then the version's.
	add(deleteRec("s", 2, "f"))
	add(deleteRec("s", 2, "g")) // a second soft delete: no effect
	st = replay(t, log)
	if !st.subjects["s"][2].Deleted {
		t.Fatal("s v2 not soft-deleted")
	}
	for k := range st.rejected {
		add([]byte(k), nil)
	}
	for _, k := range st.subjects["s"][2].deleteKeys {
		add([]byte(k), nil)
	}
	add([]byte(st.subjects["s"][2].key), nil)
	live := replay(t, log)
	if live.subjects["s"][2] != nil || len(live.rejected) != 0 {
		t.Fatalf("after the permanent delete: v2 %+v, rejected %v", live.subjects["s"][2], live.rejected)
	}
	// The compacted log must give the same state: the rejected
	// records must not come back to life once their winner is gone.
	re := replay(t, compact(log))
	if len(re.subjects) != len(live.subjects) || len(re.subjects["s"]) != 1 || re.subjects["s"][1].ID != 1 || len(re.subjects["t"]) != 0 {
		t.Fatalf("compacted replay differs: %v vs %v", re.subjects, live.subjects)
	}
}

// Config and mode records: the latest wins, a tombstone resets.
func TestStateConfigAndMode(t *testing.T) {
	st := newState()
	cfg := encodeKey(recordKey{KeyType: keyConfig, Subject: "s"})
	mode := encodeKey(recordKey{KeyType: keyMode})
	steps := []logRec{
		{cfg, encodeValue(configValue{Compatibility: "FULL"})},
		{mode, encodeValue(modeValue{Mode: modeReadOnly})},
	}
	for i, r := range steps {
		if err := st.apply(int64(i), r.k, r.v); err != nil {
			t.Fatal(err)
		}
	}
	if st.level("s") != levelFull || st.level("other") != levelBackward || st.mode("x") != modeReadOnly {
		t.Fatalf("level %s/%s mode %s", st.level("s"), st.level("other"), st.mode("x"))
	}
	st.apply(2, cfg, nil)
	st.apply(3, mode, nil)
	if st.level("s") != levelBackward || st.mode("x") != modeReadWrite {
		t.Fatalf("after tombstones: level %s mode %s", st.level("s"), st.mode("x"))
	}
}

// A record that does not decode is skipped and counted; the state moves on.
func TestStateSkipsCorrupt(t *testing.T) {
	st := newState()
	if err := st.apply(0, []byte(`{"keytype":"SCHEMA"`), []byte(`x`)); err == nil {
		t.Fatal("corrupt record applied")
	}
	if st.corrupt != 1 || st.next != 1 {
		t.Fatalf("corrupt %d next %d", st.corrupt, st.next)
	}
}

// FuzzDecodeRecord: whatever a record of _schemas holds, decoding and
// applying it never panics, and a record that decodes applies.
func FuzzDecodeRecord(f *testing.F) {
	k, v := schemaRec("s", 1, 1, `{"type":"record","name":"A","fields":[]}`, "n")
	f.Add(k, v, false)
	f.Add(k, []byte(nil), true)
	dk, dv := deleteRec("s", 1, "m")
	f.Add(dk, dv, false)
	f.Add(encodeKey(recordKey{KeyType: keyConfig}), encodeValue(configValue{Compatibility: "FULL"}), false)
	f.Add(encodeKey(recordKey{KeyType: keyMode, Subject: "s"}), encodeValue(modeValue{Mode: "READONLY"}), false)
	f.Add(encodeKey(recordKey{KeyType: keyNoop}), []byte("{}"), false)
	f.Add([]byte(`{"keytype":"SCHEMA","subject":"s","version":1,"id":1,"nonce":"n"}`), []byte(`{"subject":"s","version":1,"id":1,"schemaType":"JSON","schema":"{}","references":[{"name":"a","subject":"b","version":1}]}`), false)
	f.Fuzz(func(t *testing.T, key, value []byte, tombstone bool) {
		if tombstone {
			value = nil
		} else if value == nil {
			value = []byte{}
		}
		st := newState()
		st.apply(0, k, v) // something for the record to act on
		r, err := decodeRecord(key, value)
		if aerr := st.apply(1, key, value); (aerr == nil) != (err == nil) {
			t.Fatalf("decode error %v but apply error %v", err, aerr)
		}
		if err == nil && r.Key.KeyType == "" {
			t.Fatalf("decoded a record without a key type: %q", key)
		}
		if st.next != 2 {
			t.Fatalf("next = %d after two records", st.next)
		}
	})
}
