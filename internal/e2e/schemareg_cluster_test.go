package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/sluice-io/sluice/internal/schemareg"
)

// regInstance is a schema registry instance served over HTTP, a client of
// the brokers it was given as seeds.
type regInstance struct {
	name   string
	reg    *schemareg.Registry
	srv    *httptest.Server
	cl     *sr.Client
	closed bool
}

// openRegInstance opens a registry on seeds (as `sluice serve` does: no
// client options, the broker's own address) and serves it; it does not
// wait for it to be ready.
func openRegInstance(t *testing.T, name string, seeds ...string) *regInstance {
	t.Helper()
	reg, err := schemareg.Open(schemareg.Config{Brokers: seeds, Logger: logger(t).With("registry", name)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	ri := &regInstance{name: name, reg: reg, srv: srv, cl: cl}
	t.Cleanup(ri.close)
	return ri
}

func (ri *regInstance) close() {
	if ri.closed {
		return
	}
	ri.closed = true
	ri.srv.Close()
	ri.reg.Close()
}

func (ri *regInstance) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-ri.reg.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("registry %s not ready after 30s", ri.name)
	}
}

// eventually polls f until it returns nil and says how long that took;
// past within it fails with f's last error. (An HTTP client of a registry
// has no event to wait on: this is how such a client finds out.)
func eventually(t *testing.T, what string, within time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: still failing after %v: %v", what, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readOutcome names the result of a read: "found" or the HTTP status and
// Confluent error code.
func readOutcome(err error) string {
	var re *sr.ResponseError
	switch {
	case err == nil:
		return "found"
	case errors.As(err, &re):
		return fmt.Sprintf("%d/%d", re.StatusCode, re.ErrorCode)
	default:
		return err.Error()
	}
}

// registryDump is everything an instance serves of its subjects: every
// version of every subject with its id and schema, and every id's schema
// read by id.
func registryDump(ctx context.Context, cl *sr.Client) (string, error) {
	subjects, err := cl.Subjects(ctx)
	if err != nil {
		return "", err
	}
	sort.Strings(subjects)
	var b strings.Builder
	ids := map[int]bool{}
	for _, s := range subjects {
		ss, err := cl.Schemas(ctx, s)
		if err != nil {
			return "", fmt.Errorf("schemas of %s: %w", s, err)
		}
		for _, v := range ss {
			fmt.Fprintf(&b, "%s v%d id %d %s\n", v.Subject, v.Version, v.ID, v.Schema.Schema)
			ids[v.ID] = true
		}
	}
	sorted := make([]int, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	slices.Sort(sorted)
	for _, id := range sorted {
		s, err := cl.SchemaByID(ctx, id)
		if err != nil {
			return "", fmt.Errorf("id %d: %w", id, err)
		}
		fmt.Fprintf(&b, "id %d %s\n", id, s.Schema)
	}
	return b.String(), nil
}

// subjectListing is every version of subject with its id and schema.
func subjectListing(t *testing.T, ctx context.Context, cl *sr.Client, subject string) string {
	t.Helper()
	ss, err := cl.Schemas(ctx, subject)
	if err != nil {
		t.Fatalf("schemas of %s: %v", subject, err)
	}
	var b strings.Builder
	for _, v := range ss {
		fmt.Fprintf(&b, "v%d id %d %s\n", v.Version, v.ID, v.Schema.Schema)
	}
	return b.String()
}

// waitAgree waits until every instance serves the same subjects, versions
// and ids, with want versions of subject among them, and returns that.
func waitAgree(t *testing.T, ctx context.Context, subject string, want int, ins ...*regInstance) string {
	t.Helper()
	var dumps []string
	eventually(t, fmt.Sprintf("instances agree, %d versions of %s", want, subject), 10*time.Second, func() error {
		dumps = dumps[:0]
		for _, in := range ins {
			vs, err := in.cl.SubjectVersions(ctx, subject)
			if err != nil {
				return fmt.Errorf("%s: versions of %s: %w", in.name, subject, err)
			}
			if len(vs) != want {
				return fmt.Errorf("%s: versions of %s: %v, want %d", in.name, subject, vs, want)
			}
			d, err := registryDump(ctx, in.cl)
			if err != nil {
				return fmt.Errorf("%s: %w", in.name, err)
			}
			dumps = append(dumps, d)
		}
		for i := 1; i < len(dumps); i++ {
			if dumps[i] != dumps[0] {
				return fmt.Errorf("%s serves\n%s\n%s serves\n%s", ins[0].name, dumps[0], ins[i].name, dumps[i])
			}
		}
		return nil
	})
	return dumps[0]
}

// avroRecord is a record schema named Shared with field a and the given
// optional fields (each with a default, so that any two of them are
// BACKWARD compatible with each other).
func avroRecord(name string, optional ...string) string {
	fields := []string{`{"name":"a","type":"string"}`}
	for _, f := range optional {
		fields = append(fields, fmt.Sprintf(`{"name":%q,"type":"string","default":""}`, f))
	}
	return fmt.Sprintf(`{"type":"record","name":%q,"fields":[%s]}`, name, strings.Join(fields, ","))
}

// TestSchemaRegistryCluster: one schema registry per broker of a 3-node
// cluster (each with its own broker as its only seed, as `sluice serve`
// runs them), used through franz-go's sr client:
//   - they create _schemas with 3 replicas, compacted;
//   - a schema registered through one is readable through the others
//     after a short wait (a read right after the write may not find it:
//     an instance answers from what it has applied; logged);
//   - the same schema registered at once through all three gets one id
//     and one version; different schemas at once in one subject get
//     distinct consecutive versions and distinct ids, listed the same by
//     every instance;
//   - the leader of _schemas dies: the registries of the other two
//     brokers keep registering and reading, and agree (the first write
//     takes some 4 s: the registry's client looks up the new leader no
//     sooner than kgo's MetadataMinAge, 5 s by default, after its last
//     look, which still named the dead one);
//   - a registry reopened from scratch rebuilds the same state from
//     _schemas.
func TestSchemaRegistryCluster(t *testing.T) {
	begin := time.Now()
	phase := begin
	lap := func(what string) {
		t.Logf("%-40s %v", what, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}
	tc := startCluster(t, 3, map[string]string{"min.insync.replicas": "2"})
	lap("cluster started")
	// A registry creates _schemas with as many replicas as its first
	// Metadata lists brokers, up to 3. A broker's Open returns once the
	// controller has unfenced it, before its own metadata shows the others
	// unfenced (some 50 ms here): registries opened right away created
	// _schemas with 1 or 2 replicas in 5 of 8 tries, as they would in a
	// cluster whose `sluice serve`s start together (Confluent's registry
	// too takes min(3, live brokers)). Here the cluster has formed first.
	for _, tb := range tc.nodes {
		waitUntil(t, fmt.Sprintf("node %d's metadata has every broker unfenced", tb.b.NodeID()), func() bool {
			img := tb.b.Image()
			for _, other := range tc.nodes {
				if b, ok := img.Brokers[other.b.NodeID()]; !ok || b.Fenced {
					return false
				}
			}
			return true
		})
	}
	ctx := ctxT(t)
	ins := make([]*regInstance, 3)
	for i := range ins {
		ins[i] = openRegInstance(t, fmt.Sprintf("registry-%d", i+1), tc.addrs[i])
	}
	for _, in := range ins {
		in.waitReady(t)
	}
	lap("3 registries ready")

	// 1. _schemas: one partition, 3 replicas, compacted.
	adm := kadm.NewClient(tc.client())
	tds, err := adm.ListTopics(ctx, schemareg.DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	td, ok := tds[schemareg.DefaultTopic]
	if !ok || td.Err != nil || len(td.Partitions) != 1 {
		t.Fatalf("%s: %+v", schemareg.DefaultTopic, td)
	}
	if p := td.Partitions[0]; len(p.Replicas) != 3 {
		t.Fatalf("%s has replicas %v, want 3", schemareg.DefaultTopic, p.Replicas)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, schemareg.DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(schemareg.DefaultTopic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("configs of %s: %v %v", schemareg.DefaultTopic, err, rc.Err)
	}
	policy := "(unset)"
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			policy = c.MaybeValue()
		}
	}
	if policy != "compact" {
		t.Fatalf("%s: cleanup.policy %s, want compact", schemareg.DefaultTopic, policy)
	}

	// 2. Registered through instance 1, read through 2 and 3: right after
	// the write (whatever they have applied then), and once caught up.
	const lagSubjects = 5
	outcomes := map[string]int{}
	var missed []string
	var caughtUp []time.Duration
	for n := range lagSubjects {
		subject := fmt.Sprintf("lag-%d", n)
		schema := avroRecord(fmt.Sprintf("Lag%d", n))
		id, err := ins[0].cl.RegisterSchema(ctx, subject, sr.Schema{Schema: schema}, -1, -1)
		if err != nil {
			t.Fatalf("register %s through %s: %v", subject, ins[0].name, err)
		}
		// Read-your-writes at the writer: it answers once it applied it.
		if s, err := ins[0].cl.SchemaByID(ctx, id); err != nil || s.Schema != schema {
			t.Fatalf("%s right after its own write: id %d is %q (%v)", ins[0].name, id, s.Schema, err)
		}
		for _, in := range ins[1:] {
			_, errID := in.cl.SchemaByID(ctx, id)
			_, errVer := in.cl.SchemaByVersion(ctx, subject, 1)
			outcomes["by id "+readOutcome(errID)]++
			outcomes["by version "+readOutcome(errVer)]++
			if errID != nil || errVer != nil {
				missed = append(missed, fmt.Sprintf("write %d at %s", n+1, in.name))
			}
		}
		for _, in := range ins[1:] {
			caughtUp = append(caughtUp, eventually(t, fmt.Sprintf("%s reads %s", in.name, subject), 10*time.Second, func() error {
				s, err := in.cl.SchemaByID(ctx, id)
				if err != nil {
					return fmt.Errorf("by id %d: %w", id, err)
				}
				if s.Schema != schema {
					return fmt.Errorf("id %d is %s, want %s", id, s.Schema, schema)
				}
				ss, err := in.cl.SchemaByVersion(ctx, subject, 1)
				if err != nil {
					return fmt.Errorf("%s v1: %w", subject, err)
				}
				if ss.ID != id || ss.Schema.Schema != schema || ss.Version != 1 {
					return fmt.Errorf("%s v1 is %+v, want id %d %s", subject, ss, id, schema)
				}
				return nil
			}))
		}
	}
	t.Logf("reads at the other instances right after a write through %s (%d writes, 2 instances each): %v (missed: %v); caught up within %v",
		ins[0].name, lagSubjects, outcomes, missed, slices.Max(caughtUp).Round(time.Millisecond))
	lap("read through the others")

	// 3a. The same new schema through all three at once: one id, one
	// version.
	same := avroRecord("Same")
	ids, errs := make([]int, 3), make([]error, 3)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			ids[i], errs[i] = in.cl.RegisterSchema(ctx, "same", sr.Schema{Schema: same}, -1, -1)
		}()
	}
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("register the same schema through %s: %v", ins[i].name, err)
		}
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("the same schema registered at once got ids %v", ids)
	}
	waitAgree(t, ctx, "same", 1, ins...)
	for _, in := range ins {
		ss, err := in.cl.SchemaByVersion(ctx, "same", 1)
		if err != nil || ss.ID != ids[0] {
			t.Fatalf("%s: same v1 is %+v (%v), want id %d", in.name, ss, err, ids[0])
		}
	}
	lap("same schema through 3 at once")

	// 3b. Different schemas in one subject through all three at once
	// (two each): distinct consecutive versions, distinct ids, listed the
	// same everywhere. Each is compatible (BACKWARD, the default) with
	// every other, so a loser plans again against the winner and wins
	// later.
	baseID, err := ins[0].cl.RegisterSchema(ctx, "shared", sr.Schema{Schema: avroRecord("Shared")}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	const perInstance = 2
	type reg struct {
		schema string
		id     int
	}
	got := make([][]reg, 3)
	gate = make(chan struct{})
	for i, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			for n := range perInstance {
				schema := avroRecord("Shared", fmt.Sprintf("f%d_%d", i+1, n))
				id, err := in.cl.RegisterSchema(ctx, "shared", sr.Schema{Schema: schema}, -1, -1)
				if err != nil {
					errs[i] = fmt.Errorf("%s: %w", in.name, err)
					return
				}
				got[i] = append(got[i], reg{schema, id})
			}
		}()
	}
	close(gate)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent registrations in one subject: %v", err)
	}
	listing := waitAgree(t, ctx, "shared", 1+3*perInstance, ins...)
	shared := subjectListing(t, ctx, ins[0].cl, "shared")
	versions, err := ins[0].cl.Schemas(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	seenIDs := map[int]bool{}
	bySchema := map[string]sr.SubjectSchema{}
	for i, v := range versions {
		if v.Version != i+1 {
			t.Fatalf("versions of shared are not consecutive from 1:\n%s", listing)
		}
		if seenIDs[v.ID] {
			t.Fatalf("id %d used by two versions of shared:\n%s", v.ID, listing)
		}
		seenIDs[v.ID] = true
		bySchema[v.Schema.Schema] = v
	}
	if versions[0].ID != baseID {
		t.Fatalf("shared v1 has id %d, registered as %d", versions[0].ID, baseID)
	}
	for i, rs := range got {
		for _, r := range rs {
			if v, ok := bySchema[r.schema]; !ok || v.ID != r.id {
				t.Fatalf("%s was answered id %d for %s; the listing has %+v:\n%s", ins[i].name, r.id, r.schema, v, listing)
			}
		}
	}
	lap("6 schemas in one subject through 3")

	// 4. The leader of _schemas dies. Killed (its listener closed, its
	// work stopped, no controlled shutdown) unless it is the active
	// controller, which is stopped cleanly: a halted controller would
	// stay the quorum's leader without acting, a failure of another kind.
	img := tc.nodes[0].b.Image()
	leader := img.Topics[schemareg.DefaultTopic].Partitions[0].Leader
	down := tc.nodes[leader-1]
	watcher := tc.nodes[leader%3] // another node, to time the new leader's election
	elected := make(chan time.Duration, 1)
	stopWatch := make(chan struct{})
	var watching sync.WaitGroup
	t.Cleanup(func() { close(stopWatch); watching.Wait() }) // before the brokers close
	killedAt := time.Now()
	watching.Add(1)
	go func() {
		defer watching.Done()
		for {
			if p := watcher.b.Image().Topics[schemareg.DefaultTopic].Partitions[0]; p.Leader != leader && p.Leader >= 0 {
				elected <- time.Since(killedAt)
				return
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	how := "killed"
	if down.b.Meta().IsController() {
		how = "stopped (it is the controller)"
		down.stop()
	} else {
		down.srv.Close()
		<-down.done
		down.b.Halt()
		down.srv = nil
		t.Cleanup(func() {
			if err := down.b.Close(); err != nil {
				t.Errorf("close the killed broker: %v", err)
			}
		})
	}
	downReg := ins[leader-1]
	var alive []*regInstance
	var aliveNodes []*testBroker
	for i, in := range ins {
		if i != int(leader-1) {
			alive = append(alive, in)
			aliveNodes = append(aliveNodes, tc.nodes[i])
		}
	}
	t.Logf("leader of %s, node %d, %s", schemareg.DefaultTopic, leader, how)
	lap("leader down")

	// A write through each survivor (the first finds the new leader).
	var afterIDs []int
	for n, in := range alive {
		start := time.Now()
		id, err := in.cl.RegisterSchema(ctx, "after", sr.Schema{Schema: avroRecord("After", fmt.Sprintf("g%d", n))}, -1, -1)
		if err != nil {
			t.Fatalf("register through %s with node %d down: %v", in.name, leader, err)
		}
		afterIDs = append(afterIDs, id)
		t.Logf("registration through %s with the leader down took %v", in.name, time.Since(start).Round(time.Millisecond))
	}
	select {
	case d := <-elected:
		t.Logf("the new leader of %s was elected %v after the old one went down", schemareg.DefaultTopic, d.Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("registered through both survivors, but node %d does not see a new leader of %s", watcher.b.NodeID(), schemareg.DefaultTopic)
	}
	if afterIDs[0] == afterIDs[1] {
		t.Fatalf("two schemas registered with the leader down share id %d", afterIDs[0])
	}
	// The same schema through both survivors at once.
	errs = errs[:2]
	ids = ids[:2]
	gate = make(chan struct{})
	for i, in := range alive {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			ids[i], errs[i] = in.cl.RegisterSchema(ctx, "after-same", sr.Schema{Schema: avroRecord("AfterSame")}, -1, -1)
		}()
	}
	close(gate)
	wg.Wait()
	if err := errors.Join(errs...); err != nil || ids[0] != ids[1] {
		t.Fatalf("the same schema through both survivors at once: ids %v, %v", ids, err)
	}
	waitAgree(t, ctx, "after", 2, alive...)
	for _, in := range alive {
		if now := subjectListing(t, ctx, in.cl, "shared"); now != shared {
			t.Fatalf("after the failover %s lists shared as\n%s\nnot\n%s", in.name, now, shared)
		}
	}
	if p := aliveNodes[0].b.Image().Topics[schemareg.DefaultTopic].Partitions[0]; p.Leader == leader {
		t.Fatalf("%s still led by the dead node %d", schemareg.DefaultTopic, leader)
	} else {
		t.Logf("%s now: leader %d, replicas %v, isr %v", schemareg.DefaultTopic, p.Leader, p.Replicas, p.ISR)
	}
	lap("survivors register and agree")

	// The dead broker's own registry: what it does now is logged, not
	// checked (in `sluice serve` it dies with its broker). Its client
	// learned the other brokers from its seed's metadata.
	{
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, errRead := downReg.cl.SchemaByID(dctx, afterIDs[0])
		start := time.Now()
		_, errWrite := downReg.cl.RegisterSchema(dctx, "orphan", sr.Schema{Schema: avroRecord("Orphan")}, -1, -1)
		took := time.Since(start)
		_, errReadAfter := downReg.cl.SchemaByID(dctx, afterIDs[0])
		cancel()
		wrote := "ok"
		if errWrite != nil {
			wrote = readOutcome(errWrite)
		}
		t.Logf("%s, whose broker (its only seed) is down: a read of a survivor's write: %s; a write: %s after %v; the read again: %s",
			downReg.name, readOutcome(errRead), wrote, took.Round(time.Millisecond), readOutcome(errReadAfter))
		downReg.close()
	}
	lap("dead broker's registry tried")

	// 5. A registry reopened from scratch (from its surviving broker)
	// rebuilds the same state from _schemas. What to compare with: a
	// survivor's state once it applied a write of its own, so everything
	// before it (the dead broker's registry's write among it).
	if _, err := alive[1].cl.RegisterSchema(ctx, "fence", sr.Schema{Schema: avroRecord("Fence")}, -1, -1); err != nil {
		t.Fatal(err)
	}
	want, err := registryDump(ctx, alive[1].cl)
	if err != nil {
		t.Fatal(err)
	}
	alive[0].close()
	reopened := openRegInstance(t, alive[0].name+"-reopened", aliveNodes[0].addr)
	reopened.waitReady(t)
	if got, err := registryDump(ctx, reopened.cl); err != nil || got != want {
		t.Fatalf("reopened registry serves (%v)\n%s\nwant\n%s", err, got, want)
	}
	// A new registration through it gets an id no schema has.
	id, err := reopened.cl.RegisterSchema(ctx, "later", sr.Schema{Schema: avroRecord("Later")}, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(want, fmt.Sprintf("id %d ", id)) {
		t.Fatalf("the reopened registry handed out id %d again:\n%s", id, want)
	}
	waitAgree(t, ctx, "later", 1, reopened, alive[1])
	lap("reopened and rebuilt")
	t.Logf("total %v", time.Since(begin).Round(time.Millisecond))
}

// A registry whose topic has fewer replicas than min(3, brokers) (created
// while the cluster was forming, or before brokers were added) adds
// replicas by a reassignment, and keeps working meanwhile.
func TestSchemaRegistryAddsReplicas(t *testing.T) {
	tc := startCluster(t, 3, map[string]string{"min.insync.replicas": "1"})
	ctx := ctxT(t)
	adm := kadm.NewClient(tc.client())
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": &compact}, schemareg.DefaultTopic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create %s with one replica: %v %v", schemareg.DefaultTopic, err, resp.Err)
	}
	reg, err := schemareg.Open(schemareg.Config{Brokers: []string{tc.addrs[0]}, Logger: logger(t),
		ReplicationCheckInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() { srv.Close(); reg.Close() })
	select {
	case <-reg.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("registry not ready after 30s")
	}
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateSchema(ctx, "a-value", sr.Schema{Schema: avroRecord("A")}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, "_schemas with 3 replicas, all in sync", 30*time.Second, func() error {
		tds, err := adm.ListTopics(ctx, schemareg.DefaultTopic)
		if err != nil {
			return err
		}
		p := tds[schemareg.DefaultTopic].Partitions[0]
		if len(p.Replicas) != 3 || len(p.ISR) != 3 {
			return fmt.Errorf("replicas %v, in sync %v", p.Replicas, p.ISR)
		}
		return nil
	})
	t.Logf("3 replicas in sync %v after the registry was ready", took)
	if _, err := cl.CreateSchema(ctx, "b-value", sr.Schema{Schema: avroRecord("B")}); err != nil {
		t.Fatal(err)
	}
}
