package backupcmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/kv"
	"github.com/sluice-io/sluice/internal/cli/topic"
	"github.com/sluice-io/sluice/internal/cli/topicread"
)

func create(t *testing.T, addr, name string, partitions int32, configs ...string) {
	t.Helper()
	c, _ := clitest.Common(addr, nil)
	if err := topic.RunCreate(clitest.Ctx(t), topic.CreateOptions{Common: c, Topics: []string{name}, Partitions: partitions, Replicas: 1, Configs: configs}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

func client(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, addr string, rs []*kgo.Record, manual bool) {
	t.Helper()
	var opts []kgo.Opt
	if manual {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	if err := client(t, addr, opts...).ProduceSync(clitest.Ctx(t), rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// scan is `kv scan -o json` without the offsets, which differ between
// a topic and its restored copy.
func scan(t *testing.T, addr, tp string) []kv.Entry {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := kv.RunScan(clitest.Ctx(t), kv.ScanOptions{Common: c, Topic: tp, Output: "json"}); err != nil {
		t.Fatalf("scan %s: %v", tp, err)
	}
	var es []kv.Entry
	if err := json.Unmarshal(io.Out.Bytes(), &es); err != nil {
		t.Fatal(err)
	}
	for i := range es {
		es[i].Offset = 0
	}
	return es
}

// rec is a record's content without its offset.
type rec struct {
	Key, Value []byte
	KeyNull    bool
	ValueNull  bool
	Timestamp  int64
	Headers    []kgo.RecordHeader
}

// records reads every partition of tp.
func records(t *testing.T, addr, tp string) map[int32][]rec {
	t.Helper()
	cl := client(t, addr)
	adm := kadm.NewClient(cl)
	tds, err := adm.ListTopics(clitest.Ctx(t), tp)
	if err != nil || !tds.Has(tp) {
		t.Fatalf("list %s: %v", tp, err)
	}
	parts := tds[tp].Partitions.Numbers()
	ranges, err := topicread.Ranges(clitest.Ctx(t), cl, tp, parts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32][]rec{}
	err = topicread.Read(clitest.Ctx(t), cl, tp, ranges, func(r *kgo.Record) error {
		out[r.Partition] = append(out[r.Partition], rec{Key: r.Key, Value: r.Value, KeyNull: r.Key == nil, ValueNull: r.Value == nil,
			Timestamp: r.Timestamp.UnixMilli(), Headers: r.Headers})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameContent fails the test where got and want (scans) differ.
func sameContent(t *testing.T, what string, got, want []kv.Entry) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	gs, ws := strings.Split(string(g), "},{"), strings.Split(string(w), "},{")
	for i := range max(len(gs), len(ws)) {
		if i >= len(gs) || i >= len(ws) || gs[i] != ws[i] {
			t.Fatalf("%s: %d keys, want %d; first difference at key %d:\n got %s\nwant %s", what, len(got), len(want), i,
				gs[min(i, len(gs)-1)], ws[min(i, len(ws)-1)])
		}
	}
	t.Fatalf("%s: differs", what)
}

func runBackup(t *testing.T, addr, tp, dir string, force bool) (string, error) {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	err := RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: tp, To: dir, Force: force})
	return io.Out.String(), err
}

func runRestore(t *testing.T, addr, tp, dir string, force bool, configs ...string) (string, error) {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	err := RunRestore(clitest.Ctx(t), RestoreOptions{Common: c, Topic: tp, From: dir, Force: force, Configs: configs})
	return io.Out.String() + io.Err.String(), err
}

func mustRestore(t *testing.T, addr, tp, dir string, wantIn string) {
	t.Helper()
	out, err := runRestore(t, addr, tp, dir, false)
	if err != nil {
		t.Fatalf("restore into %s: %v", tp, err)
	}
	if !strings.Contains(out, wantIn) {
		t.Fatalf("restore into %s printed %q, want %q in it", tp, out, wantIn)
	}
}

func configsOf(t *testing.T, addr, tp string) map[string]string {
	t.Helper()
	rcs, err := kadm.NewClient(client(t, addr)).DescribeTopicConfigs(clitest.Ctx(t), tp)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range rcs[0].Configs {
		if c.Value != nil {
			out[c.Key] = *c.Value
		}
	}
	return out
}

func exists(t *testing.T, addr, tp string) bool {
	t.Helper()
	tds, err := kadm.NewClient(client(t, addr)).ListTopics(clitest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return tds.Has(tp)
}

var ts0 = time.UnixMilli(1_600_000_000_000)

// compactedSource fills a compacted topic: 120 keys, updated, some deleted,
// with headers, explicit timestamps, an empty value and a binary key.
func compactedSource(t *testing.T, addr string) {
	create(t, addr, "users", 3, "cleanup.policy=compact", "max.message.bytes=2000000", "retention.ms=-1")
	var rs []*kgo.Record
	n := 0
	add := func(k string, v []byte, hs ...kgo.RecordHeader) {
		n++
		rs = append(rs, &kgo.Record{Topic: "users", Key: []byte(k), Value: v, Timestamp: ts0.Add(time.Duration(n) * time.Second), Headers: hs})
	}
	for round := range 3 {
		for i := range 120 {
			add(fmt.Sprintf("user-%03d", i), fmt.Appendf(nil, "v%d-%d", round, i), kgo.RecordHeader{Key: "round", Value: fmt.Append(nil, round)})
		}
	}
	for i := 0; i < 120; i += 10 {
		add(fmt.Sprintf("user-%03d", i), nil) // deleted
	}
	add("empty", []byte{}, kgo.RecordHeader{Key: "null-header", Value: nil}, kgo.RecordHeader{Key: "", Value: []byte("x")})
	add("\x00\xffbinary", []byte{0, 1, 2, 0xff})
	add("deleted-only", nil)
	produce(t, addr, rs, false)
}

func TestCompactedRoundTrip(t *testing.T) {
	src := clitest.Start(t, nil)
	compactedSource(t, src.Addr)
	want := scan(t, src.Addr, "users")
	if len(want) != 120-12+2 {
		t.Fatalf("source holds %d keys", len(want))
	}
	dir := filepath.Join(t.TempDir(), "users.bak")
	out, err := runBackup(t, src.Addr, "users", dir, false)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	m, err := backup.ReadManifest(backup.NewDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	// Raw counts: 375 records were produced; a cleaner may have dropped
	// some of them, never a key's latest.
	if want := fmt.Sprintf("backed up %d records of users (3 partitions, cleanup.policy compact, %d bytes) to %s\n", m.Records, dirSize(t, dir), dir); out != want {
		t.Fatalf("backup printed %q, want %q", out, want)
	}
	if !kafkaTopicID.MatchString(m.TopicID) {
		t.Fatalf("manifest topic id %q is not as Kafka prints it (URL-safe base64, unpadded)", m.TopicID)
	}
	if m.Topic != "users" || m.Partitions != 3 || !m.Compacted() || m.Configs["max.message.bytes"] != "2000000" ||
		m.ConfigSources["cleanup.policy"] != "DYNAMIC_TOPIC_CONFIG" || m.Records > 375 || m.Records < 110 {
		t.Fatalf("manifest: %+v", m)
	}
	if _, err := runBackup(t, src.Addr, "users", dir, false); err == nil || !strings.Contains(err.Error(), dir+" is not empty (manifest.json, partition-00000.rec, partition-00001.rec, ...)") {
		t.Fatalf("backup into a non-empty directory: %v", err)
	}

	// Into an empty cluster, under another name: created like the source.
	dst := clitest.Start(t, nil)
	mustRestore(t, dst.Addr, "users-copy", dir, " and 0 tombstones;")
	sameContent(t, "restored into an empty cluster", scan(t, dst.Addr, "users-copy"), want)
	cfg := configsOf(t, dst.Addr, "users-copy")
	if cfg["cleanup.policy"] != "compact" || cfg["max.message.bytes"] != "2000000" || cfg["retention.ms"] != "-1" {
		t.Fatalf("restored topic's configs: %v", cfg)
	}
	if got := records(t, dst.Addr, "users-copy"); len(got) != 3 {
		t.Fatalf("restored partitions: %d", len(got))
	}

	// Twice: nothing to write.
	mustRestore(t, dst.Addr, "users-copy", dir, "wrote 0 records and 0 tombstones;")
	sameContent(t, "restored twice", scan(t, dst.Addr, "users-copy"), want)

	// Into a topic with extra keys, changed values and a key in another
	// partition than the back-up's.
	create(t, dst.Addr, "users-old", 3, "cleanup.policy=compact")
	var extra []*kgo.Record
	for i := range 50 {
		extra = append(extra, &kgo.Record{Topic: "users-old", Key: fmt.Appendf(nil, "stale-%d", i), Value: []byte("x")})
	}
	extra = append(extra,
		&kgo.Record{Topic: "users-old", Key: []byte("user-001"), Value: []byte("changed")},
		&kgo.Record{Topic: "users-old", Key: []byte("user-010"), Value: []byte("deleted in the back-up")},
		&kgo.Record{Topic: "users-old", Key: []byte("user-002"), Value: []byte("v2-2"), Headers: []kgo.RecordHeader{{Key: "round", Value: []byte("2")}}},
	)
	produce(t, dst.Addr, extra, false)
	mine := records(t, dst.Addr, "users-copy")
	var elsewhere *kgo.Record
	for p, rs := range mine {
		elsewhere = &kgo.Record{Topic: "users-old", Partition: (p + 1) % 3, Key: rs[0].Key, Value: rs[0].Value}
		break
	}
	produce(t, dst.Addr, []*kgo.Record{elsewhere}, true)
	out, err = runRestore(t, dst.Addr, "users-old", dir, false)
	if err != nil || !strings.Contains(out, " and 51 tombstones;") {
		t.Fatalf("restore over extra keys: %v %q", err, out)
	}
	sameContent(t, "restored over extra keys", scan(t, dst.Addr, "users-old"), want)
	mustRestore(t, dst.Addr, "users-old", dir, "wrote 0 records and 0 tombstones")

	// Partition counts must match.
	create(t, dst.Addr, "narrow", 2, "cleanup.policy=compact")
	if _, err := runRestore(t, dst.Addr, "narrow", dir, false); err == nil || !strings.Contains(err.Error(), "topic narrow has 2 partitions and the back-up 3") {
		t.Fatalf("restore into 2 partitions: %v", err)
	}
	// -c on creation.
	mustRestore(t, dst.Addr, "users-c", dir, "and 0 tombstones")
	if _, err := runRestore(t, dst.Addr, "users-d", dir, false, "retention.ms=1000", "max.message.bytes="); err != nil {
		t.Fatal(err)
	}
	if cfg := configsOf(t, dst.Addr, "users-d"); cfg["retention.ms"] != "1000" || cfg["max.message.bytes"] == "2000000" {
		t.Fatalf("configs with -c: %v", cfg)
	}

	// --force replaces a back-up.
	produce(t, src.Addr, []*kgo.Record{{Topic: "users", Key: []byte("late"), Value: []byte("1")}}, false)
	if out, err := runBackup(t, src.Addr, "users", dir, true); err != nil || !strings.Contains(out, fmt.Sprintf("backed up %d records", m.Records+1)) {
		t.Fatalf("backup --force: %v %q", err, out)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".rec") {
			fi, _ := e.Info()
			n += fi.Size()
		}
	}
	return n
}

// TestRecordsRoundTrip restores a non-compacted topic: every record comes
// back in its partition with its key, value (null or empty), headers and
// timestamp, keyless ones too.
func TestRecordsRoundTrip(t *testing.T) {
	src := clitest.Start(t, nil)
	create(t, src.Addr, "events", 2)
	var rs []*kgo.Record
	for i := range 300 {
		r := &kgo.Record{Topic: "events", Partition: int32(i % 2), Value: fmt.Appendf(nil, "e%d", i), Timestamp: ts0.Add(time.Duration(i) * time.Millisecond)}
		switch i % 5 {
		case 0:
			r.Key = fmt.Appendf(nil, "k%d", i%7)
		case 1:
			r.Key, r.Value = []byte{}, nil
		case 2:
			r.Headers = []kgo.RecordHeader{{Key: "a", Value: nil}, {Key: "b", Value: []byte{}}, {Key: "a", Value: []byte("dup")}}
		case 3:
			r.Value = []byte{}
		}
		rs = append(rs, r)
	}
	produce(t, src.Addr, rs, true)
	want := records(t, src.Addr, "events")
	dir := filepath.Join(t.TempDir(), "events.bak")
	if _, err := runBackup(t, src.Addr, "events", dir, false); err != nil {
		t.Fatal(err)
	}

	dst := clitest.Start(t, nil)
	mustRestore(t, dst.Addr, "events", dir, "wrote 300 records; 0 were already there")
	got := records(t, dst.Addr, "events")
	if !reflect.DeepEqual(got, want) {
		for p := range want {
			for i := range want[p] {
				if i >= len(got[p]) || !reflect.DeepEqual(got[p][i], want[p][i]) {
					t.Fatalf("partition %d record %d:\n got %+v\nwant %+v", p, i, got[p], want[p][i])
				}
			}
		}
		t.Fatal("restored records differ")
	}
	mustRestore(t, dst.Addr, "events", dir, "wrote 0 records; 300 were already there")

	// A restore cut short is completed.
	create(t, dst.Addr, "partial", 2)
	var first []*kgo.Record
	backup.ReadFile(backup.NewDir(dir), mustManifest(t, dir).Files[1], func(r *backup.Record) error {
		if len(first) < 20 {
			first = append(first, toProduce(r, "partial", 1))
		}
		return nil
	})
	produce(t, dst.Addr, first, true)
	mustRestore(t, dst.Addr, "partial", dir, "wrote 280 records; 20 were already there")
	if !reflect.DeepEqual(records(t, dst.Addr, "partial"), want) {
		t.Fatal("completed restore differs")
	}

	// Other records: refused, unless --force.
	produce(t, dst.Addr, []*kgo.Record{{Topic: "events", Partition: 1, Value: []byte("foreign")}}, true)
	_, err := runRestore(t, dst.Addr, "events", dir, false)
	if err == nil || !strings.Contains(err.Error(), "topic events already holds records that are not the back-up's: partition 1 (151 records; record 150 differs from the back-up's)") {
		t.Fatalf("restore into a topic with other records: %v", err)
	}
	out, err := runRestore(t, dst.Addr, "events", dir, true)
	if err != nil || !strings.Contains(out, "wrote 150 records; 150 were already there") {
		t.Fatalf("restore --force: %v %q", err, out)
	}
	if got := records(t, dst.Addr, "events"); len(got[1]) != 301 || len(got[0]) != 150 {
		t.Fatalf("after --force: %d and %d records", len(got[0]), len(got[1]))
	}
}

func mustManifest(t *testing.T, dir string) *backup.Manifest {
	t.Helper()
	m, err := backup.ReadManifest(backup.NewDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), filepath.Base(from))
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	return to
}

// TestDamagedBackup: a damaged or partial back-up is refused, naming the
// file, and nothing is written: a missing target is not created, an
// existing one keeps its records.
func TestDamagedBackup(t *testing.T) {
	b := clitest.Start(t, nil)
	compactedSource(t, b.Addr)
	good := filepath.Join(t.TempDir(), "users.bak")
	if _, err := runBackup(t, b.Addr, "users", good, false); err != nil {
		t.Fatal(err)
	}
	create(t, b.Addr, "existing", 3, "cleanup.policy=compact")
	produce(t, b.Addr, []*kgo.Record{{Topic: "existing", Key: []byte("stale"), Value: []byte("x")}}, false)
	before := records(t, b.Addr, "existing")

	data := backup.DataFileName(1)
	cases := []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"flipped byte", func(dir string) {
			p := filepath.Join(dir, data)
			bs, _ := os.ReadFile(p)
			bs[len(bs)/2] ^= 1
			os.WriteFile(p, bs, 0o644)
		}, data + ": damaged: checksum mismatch"},
		{"missing file", func(dir string) { os.Remove(filepath.Join(dir, data)) }, data + ": missing"},
		{"truncated", func(dir string) {
			p := filepath.Join(dir, data)
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-40)
		}, data + ": truncated"},
		{"no manifest", func(dir string) { os.Remove(filepath.Join(dir, backup.ManifestName)) }, backup.ManifestName + ": missing"},
		{"edited manifest", func(dir string) {
			p := filepath.Join(dir, backup.ManifestName)
			bs, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(bs, []byte(`"retention.ms": "-1"`), []byte(`"retention.ms": "1"`), 1), 0o644)
		}, backup.ManifestName + ": damaged: checksum mismatch"},
	}
	for _, tc := range cases {
		dir := copyDir(t, good)
		tc.damage(dir)
		for _, target := range []string{"fresh", "existing"} {
			_, err := runRestore(t, b.Addr, target, dir, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "nothing was written") {
				t.Fatalf("%s into %s: %v, want %q", tc.name, target, err, tc.want)
			}
		}
		if exists(t, b.Addr, "fresh") {
			t.Fatalf("%s: the target topic was created", tc.name)
		}
		if got := records(t, b.Addr, "existing"); !reflect.DeepEqual(got, before) {
			t.Fatalf("%s: the existing topic changed", tc.name)
		}
	}
	if _, err := runRestore(t, b.Addr, "fresh", filepath.Join(t.TempDir(), "nowhere"), false); err == nil || !strings.Contains(err.Error(), "--from ") {
		t.Fatalf("restore from a missing directory: %v", err)
	}
	// The good copy still restores.
	mustRestore(t, b.Addr, "existing", good, "and 1 tombstone;")
	sameContent(t, "restored after the refusals", scan(t, b.Addr, "existing"), scan(t, b.Addr, "users"))
}

// kafkaTopicID is a topic id as Kafka's Uuid.toString prints it.
var kafkaTopicID = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func TestExamples(t *testing.T) {
	for _, c := range []*cobra.Command{BackupCommand(), RestoreCommand()} {
		if c.Example == "" || c.Flags().Lookup("brokers") == nil {
			t.Errorf("%s: no Example or no --brokers", c.Name())
		}
	}
}

// execute runs cmd with args as a command line.
func execute(t *testing.T, cmd *cobra.Command, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(clitest.Ctx(t))
	return out.String(), err
}

func TestCommandLines(t *testing.T) {
	b := clitest.Start(t, nil)
	t.Setenv("SLUICE_BROKERS", b.Addr)
	create(t, b.Addr, "conf", 2, "cleanup.policy=compact")
	if _, err := execute(t, kv.Command(), "from\nstdin", "put", "conf", "k", "-", "-H", "a=1"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bak")
	if out, err := execute(t, BackupCommand(), "", "conf", "--to", dir); err != nil || !strings.HasPrefix(out, "backed up 1 record of conf (2 partitions,") {
		t.Fatalf("backup: %v %q", err, out)
	}
	if _, err := execute(t, BackupCommand(), "", "conf"); err == nil || !strings.Contains(err.Error(), "--to DIR") {
		t.Fatalf("backup without --to: %v", err)
	}
	if out, err := execute(t, RestoreCommand(), "", "conf2", "--from", dir, "-c", "retention.ms=5000"); err != nil || !strings.Contains(out, "wrote 1 record and 0 tombstones") {
		t.Fatalf("restore: %v %q", err, out)
	}
	if out, err := execute(t, kv.Command(), "", "get", "conf2", "k"); err != nil || out != "from\nstdin\n" {
		t.Fatalf("get: %v %q", err, out)
	}
	dead := clitest.DeadAddr(t)
	if _, err := execute(t, RestoreCommand(), "", "conf3", "--from", dir, "--brokers", dead); err == nil || !strings.Contains(err.Error(), "cannot reach broker at "+dead) {
		t.Fatalf("restore against a dead broker: %v", err)
	}
}
