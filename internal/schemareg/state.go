package schemareg

import (
	"slices"
	"sort"
)

// version is one subject-version.
type version struct {
	Subject string
	Version int
	ID      int
	content
	Deleted bool // soft-deleted

	key        string   // its SCHEMA record's key
	deleteKeys []string // its DELETE records' keys
}

// keyEntry is what a live SCHEMA or DELETE key stands for.
type keyEntry struct {
	v        *version
	isDelete bool
}

// state is the registry's content as the records of _schemas up to some
// offset make it. It is a pure state machine: apply takes records in
// offset order and does no IO, so every instance that applies the same log
// holds the same state (the tests feed it records directly). It is not
// safe for concurrent use; Registry guards it.
//
// apply decides whether a SCHEMA or DELETE record takes effect by what the
// records before it did, never by when or by whom it was written: a
// SCHEMA record takes effect only if its version is above every version
// of its subject, its id is unused or used by the same content, and its
// subject has no live version with the same content; a DELETE record only
// if its version exists and is live. Records that do not take effect are
// remembered as rejected (their keys are tombstoned by the next permanent
// delete, see Registry.deletePermanently), and change nothing.
type state struct {
	subjects  map[string]map[int]*version
	ids       map[int][]*version // the subject-versions using each id
	byContent map[string]int     // contentKey -> id
	keys      map[string]keyEntry
	rejected  map[string]int64 // keys of records that did not take effect, with their offsets
	configs   map[string]level // by subject; "" is the global one
	modes     map[string]string
	maxID     int   // the highest id seen in any SCHEMA key, live or not
	next      int64 // the offset after the last record applied
	corrupt   int   // records skipped as undecodable
}

func newState() *state {
	return &state{
		subjects:  map[string]map[int]*version{},
		ids:       map[int][]*version{},
		byContent: map[string]int{},
		keys:      map[string]keyEntry{},
		rejected:  map[string]int64{},
		configs:   map[string]level{},
		modes:     map[string]string{},
	}
}

// apply applies the record at offset. A record that does not decode is
// counted, skipped and returned as the error (the caller logs it); the
// state moves past it either way.
func (s *state) apply(offset int64, key, value []byte) error {
	if offset >= s.next {
		s.next = offset + 1
	}
	r, err := decodeRecord(key, value)
	if err != nil {
		s.corrupt++
		return err
	}
	k := string(key)
	if r.Key.KeyType == keySchema {
		s.maxID = max(s.maxID, r.Key.ID)
	}
	switch {
	case r.Tombstone:
		s.applyTombstone(r.Key, k)
	case r.Schema != nil:
		if !s.applySchema(r.Schema, k) {
			s.rejected[k] = offset
		}
	case r.Delete != nil:
		if !s.applyDelete(r.Delete, k) {
			s.rejected[k] = offset
		}
	case r.Config != nil:
		l, _ := parseLevel(r.Config.Compatibility) // checked by decodeRecord
		s.configs[r.Key.Subject] = l
	case r.Mode != nil:
		s.modes[r.Key.Subject] = r.Mode.Mode
	}
	return nil
}

func (s *state) applySchema(v *schemaValue, key string) bool {
	if _, dup := s.keys[key]; dup {
		return false
	}
	c := content{Type: v.Type, Schema: v.Schema, References: v.References}
	versions := s.subjects[v.Subject]
	for _, old := range versions {
		if old.Version >= v.Version || (!old.Deleted && old.content.equal(c)) {
			return false
		}
	}
	if users := s.ids[v.ID]; len(users) > 0 && !users[0].content.equal(c) {
		return false
	}
	if id, ok := s.byContent[c.key()]; ok && id != v.ID {
		return false // the same content has another id
	}
	nv := &version{Subject: v.Subject, Version: v.Version, ID: v.ID, content: c, key: key}
	if versions == nil {
		versions = map[int]*version{}
		s.subjects[v.Subject] = versions
	}
	versions[v.Version] = nv
	s.ids[v.ID] = append(s.ids[v.ID], nv)
	s.byContent[c.key()] = v.ID
	s.keys[key] = keyEntry{v: nv}
	return true
}

func (s *state) applyDelete(d *deleteValue, key string) bool {
	if _, dup := s.keys[key]; dup {
		return false
	}
	v := s.subjects[d.Subject][d.Version]
	if v == nil || v.Deleted {
		return false
	}
	v.Deleted = true
	v.deleteKeys = append(v.deleteKeys, key)
	s.keys[key] = keyEntry{v: v, isDelete: true}
	return true
}

func (s *state) applyTombstone(k recordKey, key string) {
	delete(s.rejected, key)
	switch k.KeyType {
	case keyConfig:
		delete(s.configs, k.Subject)
		return
	case keyMode:
		delete(s.modes, k.Subject)
		return
	}
	e, ok := s.keys[key]
	if !ok {
		return
	}
	delete(s.keys, key)
	v := e.v
	if e.isDelete {
		// The version stays soft-deleted: its own tombstone follows in
		// the same batch (a permanent delete), and a DELETE tombstone
		// alone never brings a version back.
		v.deleteKeys = slices.DeleteFunc(v.deleteKeys, func(x string) bool { return x == key })
		return
	}
	versions := s.subjects[v.Subject]
	delete(versions, v.Version)
	if len(versions) == 0 {
		delete(s.subjects, v.Subject)
	}
	users := slices.DeleteFunc(s.ids[v.ID], func(x *version) bool { return x == v })
	if len(users) == 0 {
		delete(s.ids, v.ID)
		delete(s.byContent, v.content.key())
	} else {
		s.ids[v.ID] = users
	}
}

// versions returns a subject's versions, oldest first; soft-deleted ones
// only when deleted is true.
func (s *state) versions(subject string, deleted bool) []*version {
	var out []*version
	for _, v := range s.subjects[subject] {
		if deleted || !v.Deleted {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}

// subjectNames returns the subjects with a live version (any version when
// deleted is true), sorted.
func (s *state) subjectNames(deleted bool) []string {
	var out []string
	for name := range s.subjects {
		if len(s.versions(name, deleted)) > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// find returns the version of subject with content c: the live one, else
// (when deleted) the newest soft-deleted one.
func (s *state) find(subject string, c content, deleted bool) *version {
	vs := s.versions(subject, true)
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].content.equal(c) && !vs[i].Deleted {
			return vs[i]
		}
	}
	if deleted {
		for i := len(vs) - 1; i >= 0; i-- {
			if vs[i].content.equal(c) {
				return vs[i]
			}
		}
	}
	return nil
}

// idOf returns the id of content c if any subject-version has it.
func (s *state) idOf(c content) (int, bool) {
	id, ok := s.byContent[c.key()]
	return id, ok
}

// nextVersion is the version a new registration in subject gets.
func (s *state) nextVersion(subject string) int {
	n := 0
	for v := range s.subjects[subject] {
		n = max(n, v)
	}
	return n + 1
}

// level is the compatibility level in force for subject.
func (s *state) level(subject string) level {
	if l, ok := s.configs[subject]; ok {
		return l
	}
	if l, ok := s.configs[""]; ok {
		return l
	}
	return defaultLevel
}

// mode is the mode in force for subject.
func (s *state) mode(subject string) string {
	if m, ok := s.modes[subject]; ok {
		return m
	}
	if m, ok := s.modes[""]; ok {
		return m
	}
	return defaultMode
}

// referrers returns the live subject-versions whose references name v.
func (s *state) referrers(v *version) []*version {
	var out []*version
	for _, versions := range s.subjects {
		for _, x := range versions {
			if x.Deleted {
				continue
			}
			for _, ref := range x.References {
				if ref.Subject == v.Subject && ref.Version == v.Version {
					out = append(out, x)
				}
			}
		}
	}
	return out
}
