package schemareg

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// SchemaRequest is a schema as clients send it (register, lookup, check).
// Confluent's metadata and ruleSet are accepted and ignored.
type SchemaRequest struct {
	Schema     string      `json:"schema"`
	Type       string      `json:"schemaType,omitempty"`
	References []Reference `json:"references,omitempty"`
	ID         int         `json:"id,omitempty"`      // IMPORT mode only
	Version    int         `json:"version,omitempty"` // IMPORT mode only
}

// content checks a request's size and names, and returns its content
// (schema normalized, type defaulted to AVRO).
func (req SchemaRequest) content() (content, error) {
	if len(req.Schema) > maxSchemaBytes {
		return content{}, errorf(http.StatusUnprocessableEntity, codeSchemaTooLarge, "Schema of %d bytes is over the limit of %d", len(req.Schema), maxSchemaBytes)
	}
	if len(req.References) > maxReferences {
		return content{}, errInvalidSchema(fmt.Errorf("%d references, over the limit of %d", len(req.References), maxReferences))
	}
	c := content{Type: req.Type, References: req.References}
	if c.Type == "" {
		c.Type = typeAvro
	}
	if c.Type != typeAvro && c.Type != typeJSON {
		return content{}, errorf(http.StatusUnprocessableEntity, codeInvalidSchema, "Invalid schema type %s: this registry serves AVRO and JSON", req.Type)
	}
	if len(c.References) == 0 {
		c.References = nil
	}
	for _, ref := range c.References {
		if ref.Name == "" || !validSubject(ref.Subject) || ref.Version < 1 {
			return content{}, errInvalidSchema(fmt.Errorf("reference %+v needs a name, a subject and a version of 1 or more", ref))
		}
	}
	s, err := normalizeSchema(req.Schema)
	if err != nil {
		return content{}, errInvalidSchema(err)
	}
	c.Schema = s
	return c, nil
}

// resolverOf resolves references from st (soft-deleted versions too, so
// that an old schema whose reference was deleted still parses).
func resolverOf(st *state) resolver {
	return func(ref Reference) (content, error) {
		v := st.subjects[ref.Subject][ref.Version]
		if v == nil {
			return content{}, fmt.Errorf("reference %q: subject %q has no version %d", ref.Name, ref.Subject, ref.Version)
		}
		return v.content, nil
	}
}

// parseFor parses c for a request: an error is 42201.
func parseFor(st *state, c content) (parsed, error) {
	p, err := parseContent(c, resolverOf(st))
	if err != nil {
		return nil, errInvalidSchema(err)
	}
	return p, nil
}

// compatibility checks c against the live versions of subject at its level.
func compatibility(st *state, subject string, cand parsed, against []*version, l level) ([]string, error) {
	var existing []parsed
	for _, v := range against {
		p, err := parseContent(v.content, resolverOf(st))
		if err != nil {
			return nil, fmt.Errorf("version %d of %s no longer parses: %w", v.Version, subject, err)
		}
		existing = append(existing, p)
	}
	return checkCompatibility(l, cand, existing), nil
}

func writable(st *state, subject string) error {
	if m := st.mode(subject); m == modeReadOnly {
		return errNotPermitted("Subject %s is in read-only mode", subject)
	}
	return nil
}

// Register registers a schema under subject and returns its id: the id it
// already has there if it is registered (live) in subject, else a new
// version with the id of the same content elsewhere, or a new id.
func (r *Registry) Register(ctx context.Context, subject string, req SchemaRequest) (int, error) {
	if !validSubject(subject) {
		return 0, errorf(http.StatusUnprocessableEntity, codeInvalidSubject, "Invalid subject %q", subject)
	}
	c, err := req.content()
	if err != nil {
		return 0, err
	}
	var id int
	plan := func(st *state) ([]*kgo.Record, error) {
		if v := st.find(subject, c, false); v != nil {
			id = v.ID
			return nil, nil
		}
		if err := writable(st, subject); err != nil {
			return nil, err
		}
		imp := st.mode(subject) == modeImport
		if (req.ID > 0 || req.Version > 0) && !imp {
			return nil, errNotPermitted("Subject %s is not in IMPORT mode: a registration may not name its id or version", subject)
		}
		if _, ok := st.subjects[subject]; !ok && len(st.subjects) >= maxSubjects {
			return nil, errNotPermitted("The registry holds %d subjects, its limit", maxSubjects)
		}
		if len(st.subjects[subject]) >= maxVersionsPerSubject {
			return nil, errNotPermitted("Subject %s has %d versions, the limit; delete some permanently", subject, maxVersionsPerSubject)
		}
		cand, err := parseFor(st, c)
		if err != nil {
			return nil, err
		}
		if !imp {
			live := st.versions(subject, false)
			msgs, err := compatibility(st, subject, cand, live, st.level(subject))
			if err != nil {
				return nil, err
			}
			if len(msgs) > 0 {
				return nil, incompatible(subject, msgs)
			}
		}
		ver := st.nextVersion(subject)
		if req.Version > 0 {
			if req.Version < ver {
				return nil, errorf(http.StatusUnprocessableEntity, codeInvalidVersion, "Version %d of %s is not above its latest, %d", req.Version, subject, ver-1)
			}
			ver = req.Version
		}
		newID, ok := st.idOf(c)
		switch {
		case req.ID > 0 && ok && newID != req.ID:
			return nil, errorf(http.StatusUnprocessableEntity, 42207, "The schema already has id %d, not %d", newID, req.ID)
		case req.ID > 0:
			if users := st.ids[req.ID]; len(users) > 0 && !users[0].content.equal(c) {
				return nil, errorf(http.StatusUnprocessableEntity, 42207, "Id %d is another schema's", req.ID)
			}
			newID = req.ID
		case !ok:
			newID = st.maxID + 1
		}
		key := recordKey{KeyType: keySchema, Subject: subject, Version: ver, ID: newID, Nonce: nonce()}
		val := schemaValue{Subject: subject, Version: ver, ID: newID, Type: c.Type, Schema: c.Schema, References: c.References}
		return []*kgo.Record{{Key: encodeKey(key), Value: encodeValue(val)}}, nil
	}
	check := func(st *state) (bool, error) {
		if v := st.find(subject, c, false); v != nil {
			id = v.ID
			return false, nil
		}
		return true, nil // another write took the version or the id: plan again
	}
	if err := r.write(ctx, plan, check); err != nil {
		return 0, err
	}
	return id, nil
}

// incompatible is the 409 of a registration; msgs are listed in brackets,
// separated by ", " as Confluent's details are.
func incompatible(subject string, msgs []string) *Error {
	e := errorf(http.StatusConflict, codeIncompatibleSchema,
		"Schema being registered is incompatible with an earlier schema for subject %q, details: [%s]", subject, strings.Join(msgs, ", "))
	return e
}

// deleteVersions soft-deletes (DELETE records) or permanently deletes
// (tombstones) versions of subject; which is decided by plan from the
// state. It returns the version numbers deleted.
func (r *Registry) deleteVersions(ctx context.Context, subject string, permanent bool, pick func(*state) ([]*version, error)) ([]int, error) {
	var deleted []int
	plan := func(st *state) ([]*kgo.Record, error) {
		if err := writable(st, subject); err != nil {
			return nil, err
		}
		vs, err := pick(st)
		if err != nil {
			return nil, err
		}
		deleted = deleted[:0]
		var recs []*kgo.Record
		if permanent {
			// Rejected records first: once their winners are gone,
			// nothing must remain that could take effect on a replay of
			// the compacted log (see state).
			for k := range st.rejected {
				recs = append(recs, &kgo.Record{Key: []byte(k)})
			}
			slices.SortFunc(recs, func(a, b *kgo.Record) int {
				return cmp.Compare(st.rejected[string(a.Key)], st.rejected[string(b.Key)])
			})
		}
		for _, v := range vs {
			deleted = append(deleted, v.Version)
			if !permanent {
				key := recordKey{KeyType: keyDelete, Subject: subject, Version: v.Version, Nonce: nonce()}
				recs = append(recs, &kgo.Record{Key: encodeKey(key), Value: encodeValue(deleteValue{Subject: subject, Version: v.Version})})
				continue
			}
			for _, k := range v.deleteKeys {
				recs = append(recs, &kgo.Record{Key: []byte(k)})
			}
			recs = append(recs, &kgo.Record{Key: []byte(v.key)})
		}
		return recs, nil
	}
	check := func(st *state) (bool, error) {
		for _, n := range deleted {
			v := st.subjects[subject][n]
			if (permanent && v != nil) || (!permanent && (v == nil || !v.Deleted)) {
				return true, nil
			}
		}
		return false, nil
	}
	if err := r.write(ctx, plan, check); err != nil {
		return nil, err
	}
	return deleted, nil
}

// DeleteVersion deletes one version ("latest" is -1): soft, or permanent
// after a soft delete.
func (r *Registry) DeleteVersion(ctx context.Context, subject string, ver int, permanent bool) (int, error) {
	out, err := r.deleteVersions(ctx, subject, permanent, func(st *state) ([]*version, error) {
		all := st.versions(subject, true)
		if len(all) == 0 {
			return nil, errSubjectNotFound(subject)
		}
		var v *version
		if ver == -1 {
			if live := st.versions(subject, false); len(live) > 0 {
				v = live[len(live)-1]
			} else if permanent {
				v = all[len(all)-1]
			}
		} else {
			v = st.subjects[subject][ver]
		}
		if v == nil {
			return nil, errVersionNotFound(subject, ver)
		}
		switch {
		case !permanent && v.Deleted:
			return nil, errorf(http.StatusNotFound, codeVersionSoftDeleted,
				"Subject '%s' Version %d was soft deleted. Set permanent=true to delete permanently", subject, v.Version)
		case permanent && !v.Deleted:
			return nil, errorf(http.StatusNotFound, codeVersionNotSoftDeleted,
				"Subject '%s' Version %d was not deleted first before being permanently deleted", subject, v.Version)
		}
		if refs := st.referrers(v); len(refs) > 0 {
			return nil, errorf(http.StatusUnprocessableEntity, codeReferenceExists,
				"One or more references exist to the schema {subject=%s,version=%d} (from %s version %d)", subject, v.Version, refs[0].Subject, refs[0].Version)
		}
		return []*version{v}, nil
	})
	if err != nil {
		return 0, err
	}
	return out[0], nil
}

// DeleteSubject deletes every version of subject: soft (its live ones),
// or permanent (all, once none is live). A permanent delete also drops the
// subject's config and mode.
func (r *Registry) DeleteSubject(ctx context.Context, subject string, permanent bool) ([]int, error) {
	out, err := r.deleteVersions(ctx, subject, permanent, func(st *state) ([]*version, error) {
		all := st.versions(subject, true)
		if len(all) == 0 {
			return nil, errSubjectNotFound(subject)
		}
		live := st.versions(subject, false)
		switch {
		case !permanent && len(live) == 0:
			return nil, errorf(http.StatusNotFound, codeSubjectSoftDeleted,
				"Subject '%s' was soft deleted. Set permanent=true to delete permanently", subject)
		case permanent && len(live) > 0:
			return nil, errorf(http.StatusNotFound, codeSubjectNotSoftDeleted,
				"Subject '%s' was not deleted first before being permanently deleted", subject)
		}
		vs := live
		if permanent {
			vs = all
		}
		for _, v := range vs {
			for _, ref := range st.referrers(v) {
				if ref.Subject != subject {
					return nil, errorf(http.StatusUnprocessableEntity, codeReferenceExists,
						"One or more references exist to the schema {subject=%s,version=%d}", subject, v.Version)
				}
			}
		}
		return vs, nil
	})
	if err != nil {
		return nil, err
	}
	if permanent {
		r.write(ctx, func(st *state) ([]*kgo.Record, error) {
			var recs []*kgo.Record
			if _, ok := st.configs[subject]; ok {
				recs = append(recs, &kgo.Record{Key: encodeKey(recordKey{KeyType: keyConfig, Subject: subject})})
			}
			if _, ok := st.modes[subject]; ok {
				recs = append(recs, &kgo.Record{Key: encodeKey(recordKey{KeyType: keyMode, Subject: subject})})
			}
			return recs, nil
		}, nil)
	}
	return out, nil
}

// SetConfig sets the compatibility level of subject ("" global); an empty
// level deletes the subject's (or resets the global one). It returns the
// level in force before.
func (r *Registry) SetConfig(ctx context.Context, subject, lvl string) (string, error) {
	key := encodeKey(recordKey{KeyType: keyConfig, Subject: subject})
	var before string
	err := r.write(ctx, func(st *state) ([]*kgo.Record, error) {
		before = string(st.level(subject))
		if lvl == "" {
			if _, ok := st.configs[subject]; !ok && subject != "" && len(st.subjects[subject]) == 0 {
				return nil, errSubjectNotFound(subject)
			}
			return []*kgo.Record{{Key: key}}, nil
		}
		return []*kgo.Record{{Key: key, Value: encodeValue(configValue{Compatibility: lvl})}}, nil
	}, nil)
	return before, err
}

// SetMode sets the mode of subject ("" global); an empty mode deletes it.
// It returns the mode in force before.
func (r *Registry) SetMode(ctx context.Context, subject, mode string) (string, error) {
	key := encodeKey(recordKey{KeyType: keyMode, Subject: subject})
	var before string
	err := r.write(ctx, func(st *state) ([]*kgo.Record, error) {
		before = st.mode(subject)
		if mode == "" {
			if _, ok := st.modes[subject]; !ok && subject != "" && len(st.subjects[subject]) == 0 {
				return nil, errSubjectNotFound(subject)
			}
			return []*kgo.Record{{Key: key}}, nil
		}
		return []*kgo.Record{{Key: key, Value: encodeValue(modeValue{Mode: mode})}}, nil
	}, nil)
	return before, err
}
