package schemareg_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/broker"
	"github.com/sluice-io/sluice/internal/schemareg"
	"github.com/sluice-io/sluice/internal/server"
	"github.com/sluice-io/sluice/internal/server/api"
)

func testLogger() *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// startBroker runs a single-node broker on 127.0.0.1 with data in a
// temporary directory, stopped at the end of the test.
func startBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	b, err := broker.Open(broker.Config{NodeID: 1, DataDir: t.TempDir(), Host: host, Port: int32(port),
		Logger: testLogger(), RetentionCheckInterval: time.Hour})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv := server.New(api.New(b, testLogger()), testLogger())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return ln.Addr().String()
}

// instance is a registry served over real HTTP.
type instance struct {
	reg *schemareg.Registry
	srv *httptest.Server
	cl  *sr.Client
}

func (in *instance) close() {
	in.srv.Close()
	in.reg.Close()
}

func openInstance(t *testing.T, brokers string) *instance {
	t.Helper()
	reg, err := schemareg.Open(schemareg.Config{Brokers: []string{brokers}, Logger: testLogger(),
		ClientOpts: []kgo.Opt{kgo.MetadataMinAge(50 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-reg.Ready():
	case <-time.After(60 * time.Second):
		reg.Close()
		t.Fatal("registry not ready after 60s")
	}
	srv := httptest.NewServer(reg.Handler())
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{reg: reg, srv: srv, cl: cl}
	t.Cleanup(in.close)
	return in
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// code returns the Confluent error code of err (0 if none).
func code(err error) int {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return 0
}

func wantCode(t *testing.T, what string, err error, want int) {
	t.Helper()
	if got := code(err); got != want {
		t.Fatalf("%s: error %v (code %d), want code %d", what, err, got, want)
	}
}

const (
	userV1      = `{"type":"record","name":"User","namespace":"com.example","fields":[{"name":"id","type":"long"}]}`
	userV2      = `{"type":"record","name":"User","namespace":"com.example","fields":[{"name":"id","type":"long"},{"name":"email","type":"string","default":""}]}`
	userBad     = `{"type":"record","name":"User","namespace":"com.example","fields":[{"name":"id","type":"long"},{"name":"age","type":"int"}]}`
	address     = `{"type":"record","name":"Address","namespace":"com.example","fields":[{"name":"city","type":"string"}]}`
	userWithRef = `{"type":"record","name":"Customer","namespace":"com.example","fields":[{"name":"id","type":"long"},{"name":"home","type":"com.example.Address"}]}`
)

// The registry through franz-go's sr client: register, look up, evolve,
// refuse an incompatible schema, config and mode, soft and permanent
// deletes, references, JSON schemas.
func TestRegistryWithFranzSR(t *testing.T) {
	in := openInstance(t, startBroker(t))
	ctx := ctxT(t)
	cl := in.cl

	id1, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userV1}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	again, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: "  " + userV1 + "\n"}, -1, -1)
	if err != nil || again != id1 {
		t.Fatalf("re-register: id %d err %v, want id %d", again, err, id1)
	}
	ss, err := cl.LookupSchema(ctx, "users-value", sr.Schema{Schema: userV1})
	if err != nil || ss.ID != id1 || ss.Version != 1 || ss.Subject != "users-value" {
		t.Fatalf("lookup: %+v %v", ss, err)
	}
	_, err = cl.LookupSchema(ctx, "users-value", sr.Schema{Schema: userV2})
	wantCode(t, "lookup of an unregistered schema", err, 40403)
	_, err = cl.LookupSchema(ctx, "nobody", sr.Schema{Schema: userV2})
	wantCode(t, "lookup in an unknown subject", err, 40401)

	// Evolve (BACKWARD, the default): a field with a default is fine.
	v2, err := cl.CreateSchema(ctx, "users-value", sr.Schema{Schema: userV2})
	if err != nil || v2.Version != 2 || v2.ID == id1 {
		t.Fatalf("v2: %+v %v", v2, err)
	}
	// A field without a default cannot read v2's data.
	_, err = cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userBad}, -1, -1)
	wantCode(t, "incompatible register", err, 409)
	var re *sr.ResponseError
	if errors.As(err, &re); re == nil || re.StatusCode != http.StatusConflict {
		t.Fatalf("incompatible register: %v, want HTTP 409", err)
	}
	res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), "users-value", -1, sr.Schema{Schema: userBad})
	if err != nil || res.Is || len(res.Messages) == 0 {
		t.Fatalf("check: %+v %v, want incompatible with messages", res, err)
	}
	res, err = cl.CheckCompatibility(ctx, "users-value", 1, sr.Schema{Schema: userV2})
	if err != nil || !res.Is {
		t.Fatalf("check v2 against v1: %+v %v", res, err)
	}
	_, err = cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: `{"type":"record"`}, -1, -1)
	wantCode(t, "invalid schema", err, 42201)

	// Config: NONE lets the incompatible one in.
	if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, "users-value"); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	if r := cl.Compatibility(ctx, "users-value"); r[0].Err != nil || r[0].Level != sr.CompatNone {
		t.Fatalf("compatibility: %+v", r[0])
	}
	if r := cl.Compatibility(ctx, "orders-value"); code(r[0].Err) != 40408 {
		t.Fatalf("unset subject compatibility: %v, want 40408", r[0].Err)
	}
	if r := cl.Compatibility(sr.WithParams(ctx, sr.DefaultToGlobal), "orders-value"); r[0].Err != nil || r[0].Level != sr.CompatBackward {
		t.Fatalf("defaultToGlobal: %+v", r[0])
	}
	v3, err := cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: userBad}, -1, -1)
	if err != nil {
		t.Fatalf("register under NONE: %v", err)
	}

	// Mode: READONLY refuses writes.
	if r := cl.SetMode(ctx, sr.ModeReadOnly, "users-value"); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	_, err = cl.RegisterSchema(ctx, "users-value", sr.Schema{Schema: `{"type":"record","name":"User","namespace":"com.example","fields":[]}`}, -1, -1)
	wantCode(t, "register in READONLY", err, 42205)
	err = cl.DeleteSchema(ctx, "users-value", 3, sr.SoftDelete)
	wantCode(t, "delete in READONLY", err, 42205)
	if r := cl.SetMode(ctx, sr.ModeReadWrite, "users-value"); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}

	// Deletes: permanent only after soft; deleted=true shows them.
	err = cl.DeleteSchema(ctx, "users-value", 3, sr.HardDelete)
	wantCode(t, "permanent before soft", err, 40407)
	if err := cl.DeleteSchema(ctx, "users-value", 3, sr.SoftDelete); err != nil {
		t.Fatal(err)
	}
	err = cl.DeleteSchema(ctx, "users-value", 3, sr.SoftDelete)
	wantCode(t, "second soft delete", err, 40406)
	if vs, err := cl.SubjectVersions(ctx, "users-value"); err != nil || fmt.Sprint(vs) != "[1 2]" {
		t.Fatalf("versions after soft delete: %v %v", vs, err)
	}
	if vs, err := cl.SubjectVersions(sr.WithParams(ctx, sr.ShowDeleted), "users-value"); err != nil || fmt.Sprint(vs) != "[1 2 3]" {
		t.Fatalf("versions with deleted: %v %v", vs, err)
	}
	_, err = cl.SchemaByVersion(ctx, "users-value", 3)
	wantCode(t, "get a soft-deleted version", err, 40402)
	if s, err := cl.SchemaByID(ctx, v3); err != nil || !strings.Contains(s.Schema, `"age"`) {
		t.Fatalf("a soft-deleted schema by id: %+v %v", s, err)
	}
	if err := cl.DeleteSchema(ctx, "users-value", 3, sr.HardDelete); err != nil {
		t.Fatal(err)
	}
	_, err = cl.SchemaByID(ctx, v3)
	wantCode(t, "a permanently deleted schema by id", err, 40403)

	// References: Customer uses Address by its full name.
	aid, err := cl.RegisterSchema(ctx, "address", sr.Schema{Schema: address}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	refs := []sr.SchemaReference{{Name: "com.example.Address", Subject: "address", Version: 1}}
	_, err = cl.RegisterSchema(ctx, "customer", sr.Schema{Schema: userWithRef}, -1, -1)
	wantCode(t, "a reference not declared", err, 42201)
	cid, err := cl.RegisterSchema(ctx, "customer", sr.Schema{Schema: userWithRef, References: refs}, -1, -1)
	if err != nil || cid == aid {
		t.Fatalf("register with a reference: %d %v", cid, err)
	}
	got, err := cl.SchemaByVersion(ctx, "customer", -1)
	if err != nil || len(got.References) != 1 || got.References[0] != refs[0] {
		t.Fatalf("customer: %+v %v", got, err)
	}
	_, err = cl.DeleteSubject(ctx, "address", sr.SoftDelete)
	wantCode(t, "delete a referenced subject", err, 42206)

	// Subjects, soft and permanent subject deletes.
	if s, err := cl.Subjects(ctx); err != nil || fmt.Sprint(s) != "[address customer users-value]" {
		t.Fatalf("subjects: %v %v", s, err)
	}
	_, err = cl.DeleteSubject(ctx, "customer", sr.HardDelete)
	wantCode(t, "permanent subject delete first", err, 40405)
	if vs, err := cl.DeleteSubject(ctx, "customer", sr.SoftDelete); err != nil || fmt.Sprint(vs) != "[1]" {
		t.Fatalf("soft delete subject: %v %v", vs, err)
	}
	_, err = cl.DeleteSubject(ctx, "customer", sr.SoftDelete)
	wantCode(t, "soft delete twice", err, 40404)
	if vs, err := cl.DeleteSubject(ctx, "customer", sr.HardDelete); err != nil || fmt.Sprint(vs) != "[1]" {
		t.Fatalf("permanent delete subject: %v %v", vs, err)
	}
	_, err = cl.SubjectVersions(sr.WithParams(ctx, sr.ShowDeleted), "customer")
	wantCode(t, "versions of a permanently deleted subject", err, 40401)

	// JSON Schema.
	js := `{"type":"object","properties":{"n":{"type":"integer"}},"additionalProperties":false}`
	jid, err := cl.RegisterSchema(ctx, "events-value", sr.Schema{Schema: js, Type: sr.TypeJSON}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := cl.SchemaByID(ctx, jid); err != nil || s.Type != sr.TypeJSON {
		t.Fatalf("JSON schema by id: %+v %v", s, err)
	}
	_, err = cl.RegisterSchema(ctx, "events-value", sr.Schema{Schema: `{"type":"object","properties":{"n":{"type":"string"}},"additionalProperties":false}`, Type: sr.TypeJSON}, -1, -1)
	wantCode(t, "incompatible JSON schema", err, 409)
	if types, err := cl.SupportedTypes(ctx); err != nil || len(types) != 2 {
		t.Fatalf("types: %v %v", types, err)
	}
}

// Raw HTTP: content types, error bodies, the /schema endpoints.
func TestRegistryHTTP(t *testing.T) {
	in := openInstance(t, startBroker(t))
	ctx := ctxT(t)
	if _, err := in.cl.RegisterSchema(ctx, "s", sr.Schema{Schema: `"string"`}, -1, -1); err != nil {
		t.Fatal(err)
	}
	do := func(method, path, ctype, accept, body string) (int, string, string) {
		req, _ := http.NewRequestWithContext(ctx, method, in.srv.URL+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), strings.TrimSpace(string(b))
	}
	cases := []struct {
		method, path, ctype, accept, body string
		status                            int
		wantCT, wantBody                  string
	}{
		{"GET", "/subjects", "", "", "", 200, "application/vnd.schemaregistry.v1+json", `["s"]`},
		{"GET", "/subjects", "", "application/json", "", 200, "application/json", `["s"]`},
		{"GET", "/subjects", "", "application/vnd.schemaregistry+json", "", 200, "application/vnd.schemaregistry+json", `["s"]`},
		{"GET", "/subjects/s/versions/latest/schema", "", "", "", 200, "", `"string"`},
		{"GET", "/subjects/s/versions/-1", "", "", "", 200, "", `{"subject":"s","version":1,"id":1,"schema":"\"string\""}`},
		{"GET", "/schemas/ids/1/versions", "", "", "", 200, "", `[{"subject":"s","version":1}]`},
		{"GET", "/subjects/s/versions/0", "", "", "", 422, "", `{"error_code":42202,`},
		{"GET", "/subjects/s/versions/x", "", "", "", 422, "", `{"error_code":42202,`},
		{"GET", "/subjects/nope/versions", "", "", "", 404, "", `{"error_code":40401,`},
		{"GET", "/subjects/s/versions/7", "", "", "", 404, "", `{"error_code":40402,`},
		{"GET", "/schemas/ids/99", "", "", "", 404, "", `{"error_code":40403,`},
		{"POST", "/subjects/s/versions", "text/plain", "", `{"schema":"\"int\""}`, 415, "", `{"error_code":415,`},
		{"POST", "/subjects/s/versions", "application/json", "", `{"schema":"\"string\""}`, 200, "", `{"id":1}`},
		{"PUT", "/config", "application/vnd.schemaregistry.v1+json", "", `{"compatibility":"SIDEWAYS"}`, 422, "", `{"error_code":42203,`},
		{"PUT", "/mode", "application/vnd.schemaregistry.v1+json", "", `{"mode":"SIDEWAYS"}`, 422, "", `{"error_code":42204,`},
		{"PUT", "/config", "application/vnd.schemaregistry.v1+json", "", `{"compatibility":"FULL"}`, 200, "", `{"compatibility":"FULL"}`},
		{"GET", "/config", "", "", "", 200, "", `{"compatibilityLevel":"FULL"}`},
		{"DELETE", "/config", "", "", "", 200, "", `{"compatibilityLevel":"FULL"}`},
		{"GET", "/config", "", "", "", 200, "", `{"compatibilityLevel":"BACKWARD"}`},
		{"POST", "/subjects/s/versions", "application/json", "", `{"schema":"\"int\""}`, 409, "", `{"error_code":409,`},
		{"POST", "/compatibility/subjects/s/versions/latest", "application/json", "", `{"schema":"\"bytes\""}`, 200, "", `{"is_compatible":true}`},
		{"GET", "/nowhere", "", "", "", 404, "", `{"error_code":404,`},
	}
	for _, c := range cases {
		status, ct, body := do(c.method, c.path, c.ctype, c.accept, c.body)
		if status != c.status || (c.wantCT != "" && ct != c.wantCT) || !strings.HasPrefix(body, c.wantBody) {
			t.Errorf("%s %s: %d %q %s, want %d %q %s", c.method, c.path, status, ct, body, c.status, c.wantCT, c.wantBody)
		}
	}
}

// Two instances on one cluster registering at once hand out the same ids
// and versions, and a restarted instance reloads everything from _schemas.
func TestRegistryInstancesAgreeAndRestart(t *testing.T) {
	brokers := startBroker(t)
	a, b := openInstance(t, brokers), openInstance(t, brokers)
	ctx := ctxT(t)
	if r := a.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	const perInstance = 12
	type result struct {
		schema string
		id     int
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	for i, in := range []*instance{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < perInstance; n++ {
				// Both write to the shared subject (versions race) and
				// every other schema is the same for both (ids race).
				schema := fmt.Sprintf(`{"type":"enum","name":"E%d","symbols":["A"]}`, n)
				if n%2 == 1 {
					schema = fmt.Sprintf(`{"type":"enum","name":"I%d_%d","symbols":["A"]}`, i, n)
				}
				id, err := in.cl.RegisterSchema(ctx, "shared", sr.Schema{Schema: schema}, -1, -1)
				if err != nil {
					t.Errorf("instance %d: %v", i, err)
					return
				}
				mu.Lock()
				results = append(results, result{schema, id})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// One id per schema, one schema per id.
	idOf, schemaOf := map[string]int{}, map[int]string{}
	for _, r := range results {
		if id, ok := idOf[r.schema]; ok && id != r.id {
			t.Fatalf("schema %s got ids %d and %d", r.schema, id, r.id)
		}
		if s, ok := schemaOf[r.id]; ok && s != r.schema {
			t.Fatalf("id %d is %s and %s", r.id, s, r.schema)
		}
		idOf[r.schema], schemaOf[r.id] = r.id, r.schema
	}
	// Both instances hold the same versions (each has applied the other's
	// writes once it applied a later record of its own).
	listing := func(in *instance) string {
		if _, err := in.cl.RegisterSchema(ctx, "fence", sr.Schema{Schema: `"string"`}, -1, -1); err != nil {
			t.Fatal(err)
		}
		ss, err := in.cl.Schemas(ctx, "shared")
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, s := range ss {
			fmt.Fprintf(&b, "%d:%d:%s\n", s.Version, s.ID, s.Schema.Schema)
		}
		return b.String()
	}
	la, lb := listing(a), listing(b)
	if la != lb {
		t.Fatalf("instances disagree:\n%s\nvs\n%s", la, lb)
	}
	if n := strings.Count(la, "\n"); n != len(idOf) {
		t.Fatalf("%d versions, want one per distinct schema (%d)", n, len(idOf))
	}
	// A soft delete and a config, then a restart.
	if err := a.cl.DeleteSchema(ctx, "shared", 1, sr.SoftDelete); err != nil {
		t.Fatal(err)
	}
	before := listing(a)
	a.close()
	b.close()
	c := openInstance(t, brokers)
	if after := listing(c); after != before {
		t.Fatalf("after a restart:\n%s\nwant\n%s", after, before)
	}
	if r := c.cl.Compatibility(ctx); r[0].Level != sr.CompatNone {
		t.Fatalf("global compatibility after a restart: %v", r[0].Level)
	}
	if vs, err := c.cl.SubjectVersions(sr.WithParams(ctx, sr.ShowDeleted), "shared"); err != nil || len(vs) != len(idOf) {
		t.Fatalf("versions with deleted after a restart: %v %v", vs, err)
	}
	if vs, _ := c.cl.SubjectVersions(ctx, "shared"); len(vs) != len(idOf)-1 {
		t.Fatalf("live versions after a restart: %v", vs)
	}
	// New registrations continue the ids.
	id, err := c.cl.RegisterSchema(ctx, "later", sr.Schema{Schema: `"bytes"`}, -1, -1)
	if err != nil || schemaOf[id] != "" {
		t.Fatalf("new id %d (%v) reuses %q", id, err, schemaOf[id])
	}
}

// A registry whose look at the cluster does not show _schemas yet, and
// whose creation of it is answered TOPIC_ALREADY_EXISTS (another instance
// created it in between, as happens when a cluster's registries start
// together), uses the topic. (Before, it took the answer for a failure and
// retried until its client's cached metadata expired, 5 s by default; here
// the look never shows the topic, so it never became ready.)
func TestRegistryStartsWhenAnotherCreatedItsTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, schemareg.DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	var creates atomic.Int32
	c.ControlKey(int16(kmsg.CreateTopics), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		creates.Add(1)
		return nil, nil, false // kfake answers TOPIC_ALREADY_EXISTS
	})
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		r := req.(*kmsg.MetadataRequest)
		if r.Topics != nil {
			return nil, nil, false // a look at named topics: kfake answers
		}
		// A look at every topic (the registry's before creating): not
		// there yet.
		resp := r.ResponseKind().(*kmsg.MetadataResponse)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = 0, host, int32(port)
		resp.Brokers = []kmsg.MetadataResponseBroker{b}
		resp.ControllerID = 0
		return resp, nil, true
	})
	reg, err := schemareg.Open(schemareg.Config{Brokers: []string{addr}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	select {
	case <-reg.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("not ready after 10s (%d CreateTopics answered TOPIC_ALREADY_EXISTS)", creates.Load())
	}
	if n := creates.Load(); n != 1 {
		t.Fatalf("%d CreateTopics, want 1", n)
	}
}
