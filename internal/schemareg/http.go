package schemareg

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// maxRequestBodyBytes bounds a request's body: a schema at maxSchemaBytes,
// JSON-escaped (up to 6 bytes a byte in the worst case is not allowed for:
// such a schema is refused as too large), plus references.
const maxRequestBodyBytes = 4 << 20

// Content types: Confluent's two and plain JSON are accepted and answered;
// octet-stream is accepted as Confluent's REST layer does.
const (
	contentTypeV1      = "application/vnd.schemaregistry.v1+json"
	contentTypeDefault = "application/vnd.schemaregistry+json"
	contentTypeJSON    = "application/json"
)

// Handler returns the registry's HTTP API: Confluent's REST API for the
// endpoints clients use (see the package doc).
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f func(w http.ResponseWriter, req *http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			if err := checkContentType(req); err != nil {
				writeError(w, req, asError(err))
				return
			}
			v, err := f(w, req)
			if err != nil {
				writeError(w, req, asError(err))
				return
			}
			if raw, ok := v.(rawSchema); ok {
				w.Header().Set("Content-Type", responseType(req))
				io.WriteString(w, string(raw))
				return
			}
			writeJSON(w, req, http.StatusOK, v)
		})
	}
	h("GET /{$}", func(http.ResponseWriter, *http.Request) (any, error) { return struct{}{}, nil })
	h("GET /schemas/types", func(http.ResponseWriter, *http.Request) (any, error) { return []string{typeJSON, typeAvro}, nil })
	h("GET /subjects", r.listSubjects)
	h("GET /subjects/{subject}/versions", r.listVersions)
	h("POST /subjects/{subject}/versions", r.register)
	h("GET /subjects/{subject}/versions/{version}", r.getVersion)
	h("GET /subjects/{subject}/versions/{version}/schema", r.getVersionSchema)
	h("GET /subjects/{subject}/versions/{version}/referencedby", r.referencedBy)
	h("DELETE /subjects/{subject}/versions/{version}", r.deleteVersion)
	h("POST /subjects/{subject}", r.lookup)
	h("DELETE /subjects/{subject}", r.deleteSubject)
	h("GET /schemas/ids/{id}", r.schemaByID)
	h("GET /schemas/ids/{id}/schema", r.schemaTextByID)
	h("GET /schemas/ids/{id}/subjects", r.subjectsByID)
	h("GET /schemas/ids/{id}/versions", r.versionsByID)
	h("POST /compatibility/subjects/{subject}/versions/{version}", r.checkCompatibility)
	h("POST /compatibility/subjects/{subject}/versions", r.checkCompatibility)
	for _, p := range []string{"/config", "/config/{subject}"} {
		h("GET "+p, r.getConfig)
		h("PUT "+p, r.putConfig)
		h("DELETE "+p, r.deleteConfig)
	}
	for _, p := range []string{"/mode", "/mode/{subject}"} {
		h("GET "+p, r.getMode)
		h("PUT "+p, r.putMode)
		h("DELETE "+p, r.deleteMode)
	}
	h("/", func(http.ResponseWriter, *http.Request) (any, error) {
		return nil, errorf(http.StatusNotFound, codeNotFound, "HTTP 404 Not Found")
	})
	return mux
}

// rawSchema is an answer that is a schema's text itself (/schema endpoints).
type rawSchema string

func checkContentType(req *http.Request) error {
	ct := req.Header.Get("Content-Type")
	if ct == "" || req.ContentLength == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil {
		switch mt {
		case contentTypeV1, contentTypeDefault, contentTypeJSON, "application/octet-stream":
			return nil
		}
	}
	return errorf(http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
		"HTTP 415 Unsupported Media Type: send %s, %s or %s", contentTypeV1, contentTypeDefault, contentTypeJSON)
}

// responseType answers in the first of our types the client accepts.
func responseType(req *http.Request) string {
	for _, part := range strings.Split(req.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case contentTypeV1, contentTypeDefault, contentTypeJSON:
			return mt
		}
	}
	return contentTypeV1
}

func writeJSON(w http.ResponseWriter, req *http.Request, status int, v any) {
	w.Header().Set("Content-Type", responseType(req))
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, req *http.Request, e *Error) {
	writeJSON(w, req, e.Status, struct {
		Code    int    `json:"error_code"`
		Message string `json:"message"`
	}{e.Code, e.Message})
}

// decodeBody decodes a JSON request body into v, within maxRequestBodyBytes.
func decodeBody(w http.ResponseWriter, req *http.Request, v any) error {
	body := http.MaxBytesReader(w, req.Body, maxRequestBodyBytes)
	if err := json.NewDecoder(body).Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, codeRequestTooLarge, "Request body over %d bytes", maxRequestBodyBytes)
		}
		return errorf(http.StatusBadRequest, codeBadRequest, "Request body is not the JSON expected: %v", err)
	}
	return nil
}

func flag(req *http.Request, name string) bool {
	b, _ := strconv.ParseBool(req.URL.Query().Get(name))
	return b
}

// parseVersion parses a version path segment: 1 to 2^31-1, or "latest"
// or -1 (returned as -1).
func parseVersion(s string) (int, error) {
	if s == "latest" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 || n < -1 || n > math.MaxInt32 {
		return 0, errInvalidVersion(s)
	}
	return int(n), nil
}

// versionOf finds subject's version ver (-1: the latest live one).
func versionOf(st *state, subject string, ver int, deleted bool) (*version, error) {
	all := st.versions(subject, deleted)
	if len(all) == 0 {
		return nil, errSubjectNotFound(subject)
	}
	if ver == -1 {
		return all[len(all)-1], nil
	}
	for _, v := range all {
		if v.Version == ver {
			return v, nil
		}
	}
	return nil, errVersionNotFound(subject, ver)
}

// subjectVersion is a version as GET /subjects/{s}/versions/{v} and the
// lookup answer it. schemaType is left out for AVRO, as Confluent does.
type subjectVersion struct {
	Subject    string      `json:"subject"`
	Version    int         `json:"version"`
	ID         int         `json:"id"`
	Type       string      `json:"schemaType,omitempty"`
	References []Reference `json:"references,omitempty"`
	Schema     string      `json:"schema"`
}

func answerVersion(v *version) subjectVersion {
	out := subjectVersion{Subject: v.Subject, Version: v.Version, ID: v.ID, Schema: v.Schema, References: v.References}
	if v.Type != typeAvro {
		out.Type = v.Type
	}
	return out
}

func (r *Registry) listSubjects(_ http.ResponseWriter, req *http.Request) (any, error) {
	out := []string{}
	prefix := req.URL.Query().Get("subjectPrefix")
	err := r.read(func(st *state) error {
		for _, s := range st.subjectNames(flag(req, "deleted")) {
			if strings.HasPrefix(s, prefix) {
				out = append(out, s)
			}
		}
		return nil
	})
	return out, err
}

func (r *Registry) listVersions(_ http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	out := []int{}
	err := r.read(func(st *state) error {
		vs := st.versions(subject, flag(req, "deleted"))
		if len(vs) == 0 {
			return errSubjectNotFound(subject)
		}
		for _, v := range vs {
			out = append(out, v.Version)
		}
		return nil
	})
	return out, err
}

func (r *Registry) getVersion(_ http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	ver, err := parseVersion(req.PathValue("version"))
	if err != nil {
		return nil, err
	}
	var out subjectVersion
	err = r.read(func(st *state) error {
		v, err := versionOf(st, subject, ver, flag(req, "deleted"))
		if err == nil {
			out = answerVersion(v)
		}
		return err
	})
	return out, err
}

func (r *Registry) getVersionSchema(w http.ResponseWriter, req *http.Request) (any, error) {
	v, err := r.getVersion(w, req)
	if err != nil {
		return nil, err
	}
	return rawSchema(v.(subjectVersion).Schema), nil
}

func (r *Registry) referencedBy(_ http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	ver, err := parseVersion(req.PathValue("version"))
	if err != nil {
		return nil, err
	}
	out := []int{}
	err = r.read(func(st *state) error {
		v, err := versionOf(st, subject, ver, true)
		if err != nil {
			return err
		}
		for _, x := range st.referrers(v) {
			out = append(out, x.ID)
		}
		return nil
	})
	return out, err
}

func (r *Registry) register(w http.ResponseWriter, req *http.Request) (any, error) {
	var body SchemaRequest
	if err := decodeBody(w, req, &body); err != nil {
		return nil, err
	}
	id, err := r.Register(req.Context(), req.PathValue("subject"), body)
	if err != nil {
		return nil, err
	}
	return struct {
		ID int `json:"id"`
	}{id}, nil
}

func (r *Registry) lookup(w http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var body SchemaRequest
	if err := decodeBody(w, req, &body); err != nil {
		return nil, err
	}
	c, err := body.content()
	if err != nil {
		return nil, err
	}
	var out subjectVersion
	err = r.read(func(st *state) error {
		deleted := flag(req, "deleted")
		if len(st.versions(subject, deleted)) == 0 {
			return errSubjectNotFound(subject)
		}
		v := st.find(subject, c, deleted)
		if v == nil {
			return errSchemaNotFound()
		}
		out = answerVersion(v)
		return nil
	})
	return out, err
}

func (r *Registry) deleteVersion(_ http.ResponseWriter, req *http.Request) (any, error) {
	ver, err := parseVersion(req.PathValue("version"))
	if err != nil {
		return nil, err
	}
	return r.DeleteVersion(req.Context(), req.PathValue("subject"), ver, flag(req, "permanent"))
}

func (r *Registry) deleteSubject(_ http.ResponseWriter, req *http.Request) (any, error) {
	return r.DeleteSubject(req.Context(), req.PathValue("subject"), flag(req, "permanent"))
}

func parseID(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 1 {
		return 0, errSchemaNotFound()
	}
	return int(n), nil
}

// usages returns the subject-versions with id (soft-deleted ones when
// deleted), or 40403.
func usages(st *state, id int, deleted bool) ([]*version, error) {
	var out []*version
	for _, v := range st.ids[id] {
		if deleted || !v.Deleted {
			out = append(out, v)
		}
	}
	if len(st.ids[id]) == 0 {
		return nil, errSchemaNotFound()
	}
	return out, nil
}

// idSchema is GET /schemas/ids/{id}'s answer.
type idSchema struct {
	Type       string      `json:"schemaType,omitempty"`
	Schema     string      `json:"schema"`
	References []Reference `json:"references,omitempty"`
}

func (r *Registry) schemaByID(_ http.ResponseWriter, req *http.Request) (any, error) {
	id, err := parseID(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	var out idSchema
	err = r.read(func(st *state) error {
		vs, err := usages(st, id, true)
		if err != nil {
			return err
		}
		c := vs[0].content
		out = idSchema{Schema: c.Schema, References: c.References}
		if c.Type != typeAvro {
			out.Type = c.Type
		}
		return nil
	})
	return out, err
}

func (r *Registry) schemaTextByID(w http.ResponseWriter, req *http.Request) (any, error) {
	v, err := r.schemaByID(w, req)
	if err != nil {
		return nil, err
	}
	return rawSchema(v.(idSchema).Schema), nil
}

func (r *Registry) subjectsByID(_ http.ResponseWriter, req *http.Request) (any, error) {
	id, err := parseID(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	out := []string{}
	err = r.read(func(st *state) error {
		vs, err := usages(st, id, flag(req, "deleted"))
		for _, v := range vs {
			if len(out) == 0 || out[len(out)-1] != v.Subject {
				out = append(out, v.Subject)
			}
		}
		return err
	})
	return out, err
}

func (r *Registry) versionsByID(_ http.ResponseWriter, req *http.Request) (any, error) {
	id, err := parseID(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	type sv struct {
		Subject string `json:"subject"`
		Version int    `json:"version"`
	}
	out := []sv{}
	err = r.read(func(st *state) error {
		vs, err := usages(st, id, flag(req, "deleted"))
		for _, v := range vs {
			out = append(out, sv{v.Subject, v.Version})
		}
		return err
	})
	return out, err
}

func (r *Registry) checkCompatibility(w http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	ver := 0 // all versions, at the subject's level
	if s := req.PathValue("version"); s != "" {
		var err error
		if ver, err = parseVersion(s); err != nil {
			return nil, err
		}
	}
	var body SchemaRequest
	if err := decodeBody(w, req, &body); err != nil {
		return nil, err
	}
	c, err := body.content()
	if err != nil {
		return nil, err
	}
	var msgs []string
	err = r.read(func(st *state) error {
		cand, err := parseFor(st, c)
		if err != nil {
			return err
		}
		against := st.versions(subject, false)
		if ver != 0 {
			v, err := versionOf(st, subject, ver, false)
			if err != nil {
				return err
			}
			against = []*version{v}
		}
		msgs, err = compatibility(st, subject, cand, against, st.level(subject))
		return err
	})
	if err != nil {
		return nil, err
	}
	out := struct {
		Is       bool     `json:"is_compatible"`
		Messages []string `json:"messages,omitempty"`
	}{Is: len(msgs) == 0}
	if flag(req, "verbose") {
		out.Messages = msgs
		if out.Messages == nil {
			out.Messages = []string{}
		}
	}
	return out, nil
}

func (r *Registry) getConfig(_ http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var out struct {
		Level string `json:"compatibilityLevel"`
	}
	err := r.read(func(st *state) error {
		if _, ok := st.configs[subject]; subject != "" && !ok && !flag(req, "defaultToGlobal") {
			return errorf(http.StatusNotFound, codeSubjectCompatNotConfigured,
				"Subject '%s' does not have subject-level compatibility configured", subject)
		}
		out.Level = string(st.level(subject))
		return nil
	})
	return out, err
}

func (r *Registry) putConfig(w http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	if req.PathValue("subject") != "" && !validSubject(subject) {
		return nil, errorf(http.StatusUnprocessableEntity, codeInvalidSubject, "Invalid subject %q", subject)
	}
	var body struct {
		Level string `json:"compatibility"`
	}
	if err := decodeBody(w, req, &body); err != nil {
		return nil, err
	}
	l, ok := parseLevel(strings.ToUpper(body.Level))
	if !ok {
		return nil, errorf(http.StatusUnprocessableEntity, codeInvalidCompatibilityLevel,
			"Invalid compatibility level %q: use NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL or FULL_TRANSITIVE", body.Level)
	}
	if _, err := r.SetConfig(req.Context(), subject, string(l)); err != nil {
		return nil, err
	}
	body.Level = string(l)
	return body, nil
}

func (r *Registry) deleteConfig(_ http.ResponseWriter, req *http.Request) (any, error) {
	before, err := r.SetConfig(req.Context(), req.PathValue("subject"), "")
	if err != nil {
		return nil, err
	}
	return struct {
		Level string `json:"compatibilityLevel"`
	}{before}, nil
}

type modeBody struct {
	Mode string `json:"mode"`
}

func (r *Registry) getMode(_ http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	var out modeBody
	err := r.read(func(st *state) error {
		if _, ok := st.modes[subject]; subject != "" && !ok && !flag(req, "defaultToGlobal") {
			return errorf(http.StatusNotFound, codeSubjectModeNotConfigured,
				"Subject '%s' does not have subject-level mode configured", subject)
		}
		out.Mode = st.mode(subject)
		return nil
	})
	return out, err
}

func (r *Registry) putMode(w http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	if subject != "" && !validSubject(subject) {
		return nil, errorf(http.StatusUnprocessableEntity, codeInvalidSubject, "Invalid subject %q", subject)
	}
	var body modeBody
	if err := decodeBody(w, req, &body); err != nil {
		return nil, err
	}
	body.Mode = strings.ToUpper(body.Mode)
	if !validMode(body.Mode) {
		return nil, errorf(http.StatusUnprocessableEntity, codeInvalidMode,
			"Invalid mode %q: use READWRITE, READONLY or IMPORT", body.Mode)
	}
	if _, err := r.SetMode(req.Context(), subject, body.Mode); err != nil {
		return nil, err
	}
	return body, nil
}

func (r *Registry) deleteMode(_ http.ResponseWriter, req *http.Request) (any, error) {
	before, err := r.SetMode(req.Context(), req.PathValue("subject"), "")
	if err != nil {
		return nil, err
	}
	return modeBody{before}, nil
}
