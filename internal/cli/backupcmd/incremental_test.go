package backupcmd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/topicread"
)

// orec is a record with its offset.
type orec struct {
	Offset int64
	rec
}

// recordsAt reads every partition of tp with the offsets.
func recordsAt(t *testing.T, addr, tp string) map[int32][]orec {
	t.Helper()
	cl := client(t, addr)
	tds, err := kadm.NewClient(cl).ListTopics(clitest.Ctx(t), tp)
	if err != nil || !tds.Has(tp) {
		t.Fatalf("list %s: %v", tp, err)
	}
	ranges, err := topicread.Ranges(clitest.Ctx(t), cl, tp, tds[tp].Partitions.Numbers())
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32][]orec{}
	err = topicread.Read(clitest.Ctx(t), cl, tp, ranges, func(r *kgo.Record) error {
		out[r.Partition] = append(out[r.Partition], orec{r.Offset, rec{Key: r.Key, Value: r.Value, KeyNull: r.Key == nil,
			ValueNull: r.Value == nil, Timestamp: r.Timestamp.UnixMilli(), Headers: r.Headers}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// produceBatch writes n records to each of the partitions of tp, of every
// shape, distinct per batch.
func produceBatch(t *testing.T, addr, tp string, partitions int32, batch, n int) {
	t.Helper()
	var rs []*kgo.Record
	for i := range n {
		for p := range partitions {
			r := &kgo.Record{Topic: tp, Partition: p, Key: fmt.Appendf(nil, "b%d-k%d", batch, i%5), Value: fmt.Appendf(nil, "b%d-p%d-%d", batch, p, i),
				Timestamp: ts0.Add(time.Duration(batch*1000+i) * time.Millisecond)}
			switch i % 4 {
			case 1:
				r.Value = nil
			case 2:
				r.Headers = []kgo.RecordHeader{{Key: "batch", Value: fmt.Append(nil, batch)}, {Key: "null", Value: nil}}
			case 3:
				r.Key = nil
			}
			rs = append(rs, r)
		}
	}
	produce(t, addr, rs, true)
}

// commit commits offsets (partition: offset) of tp for group, as an admin
// does for an empty group.
func commit(t *testing.T, addr, group, tp string, offsets map[int32]int64) {
	t.Helper()
	os := kadm.Offsets{}
	for p, o := range offsets {
		os.Add(kadm.Offset{Topic: tp, Partition: p, At: o, LeaderEpoch: -1, Metadata: fmt.Sprintf("%s@%d", group, o)})
	}
	if err := kadm.NewClient(client(t, addr)).CommitAllOffsets(clitest.Ctx(t), group, os); err != nil {
		t.Fatalf("commit %s: %v", group, err)
	}
}

// committed is group's committed offsets on tp.
func committed(t *testing.T, addr, group, tp string) map[int32]int64 {
	t.Helper()
	resp, err := kadm.NewClient(client(t, addr)).FetchOffsetsForTopics(clitest.Ctx(t), group, tp)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("fetch offsets of %s: %v", group, err)
	}
	out := map[int32]int64{}
	for p, o := range resp[tp] {
		if o.At >= 0 {
			out[p] = o.At
		}
	}
	return out
}

func runBackupInc(t *testing.T, addr, tp string, tg backup.Target, dir string) string {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: tp, To: dir, Target: tg, Incremental: true}); err != nil {
		t.Fatalf("backup --incremental: %v", err)
	}
	return io.Out.String()
}

// consumeAll reads tp as a member of group, from its committed offsets,
// until it has n records, and returns them by partition.
func consumeAll(t *testing.T, addr, group, tp string, n int) map[int32][]rec {
	t.Helper()
	cl := client(t, addr, kgo.ConsumerGroup(group), kgo.ConsumeTopics(tp), kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	out := map[int32][]rec{}
	got := 0
	ctx := clitest.Ctx(t)
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("group %s read %d records of %s, want %d: %v", group, got, tp, n, ctx.Err())
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("consume partition %d: %v", p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			out[r.Partition] = append(out[r.Partition], rec{Key: r.Key, Value: r.Value, KeyNull: r.Key == nil,
				ValueNull: r.Value == nil, Timestamp: r.Timestamp.UnixMilli(), Headers: r.Headers})
			got++
		})
	}
	cl.Close()
	return out
}

// unread is, of src, the records at or after each committed offset.
func unread(src map[int32][]orec, offsets map[int32]int64) (map[int32][]rec, int) {
	out := map[int32][]rec{}
	n := 0
	for p, rs := range src {
		for _, r := range rs {
			if c, ok := offsets[p]; !ok || r.Offset >= c {
				out[p] = append(out[p], r.rec)
				n++
			}
		}
	}
	return out, n
}

func contents(rs map[int32][]orec) map[int32][]rec {
	out := map[int32][]rec{}
	for p, l := range rs {
		for _, r := range l {
			out[p] = append(out[p], r.rec)
		}
	}
	return out
}

// TestIncrementalChain: a full back-up and two incrementals, with consumer
// groups committing in between, restored to a topic on a second broker
// that already holds records (so every offset moves): every record comes
// back, the groups' newest offsets are committed translated, and a
// consumer of a group resumes at exactly the records it had not read. A
// broken chain is refused before anything is written.
func TestIncrementalChain(t *testing.T) {
	src := clitest.Start(t, nil)
	create(t, src.Addr, "orders", 3)
	dir := filepath.Join(t.TempDir(), "orders.bak")

	produceBatch(t, src.Addr, "orders", 3, 1, 20)
	commit(t, src.Addr, "g1", "orders", map[int32]int64{0: 5, 1: 20, 2: 0})
	commit(t, src.Addr, "g2", "orders", map[int32]int64{0: 10})
	create(t, src.Addr, "elsewhere", 1)
	commit(t, src.Addr, "other", "elsewhere", map[int32]int64{0: 1}) // not on the topic: not backed up
	out, err := runBackup(t, src.Addr, "orders", dir, false)
	if err != nil || !strings.Contains(out, "backed up 60 records of orders (3 partitions, cleanup.policy delete, ") ||
		!strings.Contains(out, "bytes, the offsets of 2 consumer groups) to ") {
		t.Fatalf("full back-up: %v %q", err, out)
	}

	produceBatch(t, src.Addr, "orders", 3, 2, 10)
	commit(t, src.Addr, "g1", "orders", map[int32]int64{0: 25, 1: 22, 2: 3})
	if out := runBackupInc(t, src.Addr, "orders", nil, dir); !strings.HasPrefix(out, "incremental back-up 1 (on manifest.json): backed up 30 records of orders") {
		t.Fatalf("incremental 1: %q", out)
	}
	produceBatch(t, src.Addr, "orders", 3, 3, 5)
	g1 := map[int32]int64{0: 27, 1: 35, 2: 30}
	commit(t, src.Addr, "g1", "orders", g1)
	commit(t, src.Addr, "g3", "orders", map[int32]int64{1: 33})
	if out := runBackupInc(t, src.Addr, "orders", nil, dir); !strings.HasPrefix(out, "incremental back-up 2 (on incr-000001-manifest.json): backed up 15 records of orders") ||
		!strings.Contains(out, "the offsets of 3 consumer groups") {
		t.Fatalf("incremental 2: %q", out)
	}
	want := recordsAt(t, src.Addr, "orders")

	names, _ := backup.NewDir(dir).List()
	var wantNames []string
	for _, pre := range []string{"incr-000001-", "incr-000002-", ""} {
		wantNames = append(wantNames, pre+"manifest.json")
		for p := range 3 {
			wantNames = append(wantNames, pre+backup.DataFileName(int32(p)))
		}
	}
	slices.Sort(wantNames)
	if !slices.Equal(names, wantNames) {
		t.Fatalf("files %v, want %v", names, wantNames)
	}
	chain, err := backup.ReadChain(backup.NewDir(dir), -1)
	if err != nil || len(chain) != 3 {
		t.Fatalf("chain: %d links, %v", len(chain), err)
	}
	head := chain[2]
	if head.Sequence != 2 || *head.Base != backup.LinkTo(chain[1]) || head.Chain[0] != backup.LinkTo(chain[0]) || head.Records != 15 ||
		head.Files[1].StartOffset != 30 || head.Files[1].EndOffset != 35 || head.Files[1].FirstOffset != 30 {
		t.Fatalf("incremental 2's manifest: %+v", head)
	}
	if len(head.Groups) != 3 || head.Groups[0].Group != "g1" || head.Groups[0].Offsets[1] != (backup.GroupOffset{Partition: 1, Offset: 35, Metadata: "g1@35"}) {
		t.Fatalf("incremental 2's groups: %+v", head.Groups)
	}

	// Broken chains, each refused before anything is written.
	dst := clitest.Start(t, nil)
	refused := func(what, d, wantIn string) {
		t.Helper()
		_, err := runRestore(t, dst.Addr, "refused", d, false)
		if err == nil || !strings.Contains(err.Error(), wantIn) || !strings.Contains(err.Error(), "nothing was written") {
			t.Fatalf("%s: %v, want %q", what, err, wantIn)
		}
		if exists(t, dst.Addr, "refused") {
			t.Fatalf("%s: the topic was created", what)
		}
	}
	broken := copyDir(t, dir)
	os.Remove(filepath.Join(broken, "incr-000001-manifest.json"))
	refused("base missing", broken, "incr-000001-manifest.json: missing (link 1 of the chain); incr-000002-manifest.json (back-up "+head.ID+") is built on it and cannot be restored")
	broken = copyDir(t, dir)
	m1 := *chain[1]
	m1.CreatedAt = "2000-01-01T00:00:00Z"
	if err := backup.WriteManifestAs(backup.NewDir(broken), "incr-000001-manifest.json", &m1); err != nil {
		t.Fatal(err)
	}
	refused("base modified", broken, "incr-000001-manifest.json: replaced or modified since the next back-up was made on it")
	broken = copyDir(t, dir)
	os.Remove(filepath.Join(broken, "manifest.json"))
	refused("full back-up missing", broken, "manifest.json: missing (link 0 of the chain)")
	broken = copyDir(t, dir)
	f := filepath.Join(broken, "incr-000001-partition-00002.rec")
	b, _ := os.ReadFile(f)
	b[len(b)/2] ^= 1
	os.WriteFile(f, b, 0o600)
	refused("base data damaged", broken, "incr-000001-partition-00002.rec: damaged")

	// Restore into a topic that holds 4 records per partition already:
	// the back-up's records are appended, 4 offsets later.
	create(t, dst.Addr, "copy", 3)
	produceBatch(t, dst.Addr, "copy", 3, 9, 4)
	out, err = runRestore(t, dst.Addr, "copy", dir, true)
	if err != nil || !strings.Contains(out, "(cleanup.policy delete, 3 partitions, 105 records, a chain of 3 back-ups) from "+dir+" into copy: wrote 105 records") ||
		!strings.Contains(out, "committed the offsets of 3 consumer groups") || !strings.Contains(out, "group g1: 3 offsets committed, 3 translated to other offsets") {
		t.Fatalf("restore: %v %q", err, out)
	}
	got := recordsAt(t, dst.Addr, "copy")
	for p := range int32(3) {
		if len(got[p]) != 39 || !reflect.DeepEqual(contents(map[int32][]orec{p: got[p][4:]})[p], contents(want)[p]) {
			t.Fatalf("partition %d: %d records; restored records differ from the source's", p, len(got[p]))
		}
	}
	// Offset c: the first record at or after c is 4 later; c at the end
	// (35) is the restored end (39).
	for g, w := range map[string]map[int32]int64{"g1": {0: 31, 1: 39, 2: 34}, "g2": {0: 14}, "g3": {1: 37}} {
		if c := committed(t, dst.Addr, g, "copy"); !reflect.DeepEqual(c, w) {
			t.Fatalf("group %s committed %v on the restored topic, want %v", g, c, w)
		}
	}
	resp, err := kadm.NewClient(client(t, dst.Addr)).FetchOffsetsForTopics(clitest.Ctx(t), "g1", "copy")
	if o, _ := resp.Lookup("copy", 2); err != nil || o.Metadata != "g1@30" {
		t.Fatalf("g1's metadata on partition 2: %q %v", o.Metadata, err)
	}
	wantUnread, n := unread(want, g1)
	if gotUnread := consumeAll(t, dst.Addr, "g1", "copy", n); !reflect.DeepEqual(gotUnread, wantUnread) {
		t.Fatalf("g1 resumed on the restored topic and read\n%+v\nwant\n%+v", gotUnread, wantUnread)
	}

	// An older point of the chain: the full back-up alone, with its
	// groups' offsets (g1 at 5, 20, 0), into a new topic.
	seq := 0
	c, _ := clitest.Common(dst.Addr, nil)
	if err := RunRestore(clitest.Ctx(t), RestoreOptions{Common: c, Topic: "first", From: dir, Sequence: &seq}); err != nil {
		t.Fatal(err)
	}
	if got := recordsAt(t, dst.Addr, "first"); len(got[0]) != 20 || len(got[1]) != 20 {
		t.Fatalf("the full back-up alone restored %d and %d records", len(got[0]), len(got[1]))
	}
	if c := committed(t, dst.Addr, "g1", "first"); !reflect.DeepEqual(c, map[int32]int64{0: 5, 1: 20, 2: 0}) {
		t.Fatalf("g1 from the full back-up: %v", c)
	}

	// --no-group-offsets and --groups.
	c, _ = clitest.Common(dst.Addr, nil)
	if err := RunRestore(clitest.Ctx(t), RestoreOptions{Common: c, Topic: "nogroups", From: dir, NoGroupOffsets: true}); err != nil {
		t.Fatal(err)
	}
	c, _ = clitest.Common(dst.Addr, nil)
	if err := RunRestore(clitest.Ctx(t), RestoreOptions{Common: c, Topic: "somegroups", From: dir, Groups: "^g[23]$"}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"g1", "g2", "g3"} {
		if c := committed(t, dst.Addr, g, "nogroups"); len(c) != 0 {
			t.Fatalf("--no-group-offsets: %s has %v", g, c)
		}
		if c := committed(t, dst.Addr, g, "somegroups"); len(c) == 0 == (g != "g1") {
			t.Fatalf("--groups ^g[23]$: %s has %v", g, c)
		}
	}

	// A restore cut short is completed: the records already there are
	// not written again, and the offsets are translated through them.
	create(t, dst.Addr, "again", 3)
	var first []*kgo.Record
	for _, r := range want[0][:32] { // the full back-up, incremental 1 and some of 2
		first = append(first, &kgo.Record{Topic: "again", Partition: 0, Key: r.Key, Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp), Headers: r.Headers})
	}
	produce(t, dst.Addr, first, true)
	commit(t, dst.Addr, "g1", "again", map[int32]int64{0: 0, 1: 0, 2: 0})
	out, err = runRestore(t, dst.Addr, "again", dir, false)
	if err != nil || !strings.Contains(out, "wrote 73 records; 32 were already there; committed the offsets of 3 consumer groups") {
		t.Fatalf("restore cut short, again: %v %q", err, out)
	}
	if c := committed(t, dst.Addr, "g1", "again"); !reflect.DeepEqual(c, g1) {
		t.Fatalf("g1 after completing a restore: %v, want %v", c, g1)
	}
	if c := committed(t, dst.Addr, "g2", "again"); !reflect.DeepEqual(c, map[int32]int64{0: 10}) {
		t.Fatalf("g2 after completing a restore: %v", c)
	}
	if !reflect.DeepEqual(records(t, dst.Addr, "again"), contents(want)) {
		t.Fatal("the completed restore differs")
	}

	// The topic deleted and re-created: no incremental on the old chain.
	if _, err := kadm.NewClient(client(t, src.Addr)).DeleteTopic(clitest.Ctx(t), "orders"); err != nil {
		t.Fatal(err)
	}
	create(t, src.Addr, "orders", 3)
	c, _ = clitest.Common(src.Addr, nil)
	err = RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: "orders", To: dir, Incremental: true})
	if err == nil || !strings.Contains(err.Error(), "the back-up in the location was made of id "+head.TopicID+" (deleted and re-created since?); take a full back-up") {
		t.Fatalf("incremental of a re-created topic: %v", err)
	}
}

// TestRestoreActiveGroup: a group with a member on the target is not
// overwritten: restore refuses, saying what to do, or with
// --active-groups=skip restores the other groups.
func TestRestoreActiveGroup(t *testing.T) {
	b := clitest.Start(t, nil)
	create(t, b.Addr, "orders", 1)
	produceBatch(t, b.Addr, "orders", 1, 1, 10)
	commit(t, b.Addr, "busy", "orders", map[int32]int64{0: 4})
	commit(t, b.Addr, "idle", "orders", map[int32]int64{0: 6})
	dir := filepath.Join(t.TempDir(), "orders.bak")
	if _, err := runBackup(t, b.Addr, "orders", dir, false); err != nil {
		t.Fatal(err)
	}

	// A member of busy, consuming another topic, stays in the group.
	create(t, b.Addr, "side", 1)
	member := client(t, b.Addr, kgo.ConsumerGroup("busy"), kgo.ConsumeTopics("side"), kgo.FetchMaxWait(100*time.Millisecond))
	ctx, cancel := context.WithCancel(clitest.Ctx(t))
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			member.PollFetches(ctx)
		}
	}()
	adm := kadm.NewClient(client(t, b.Addr))
	for {
		d, err := adm.DescribeGroups(clitest.Ctx(t), "busy")
		if err == nil && d["busy"].State == "Stable" {
			break
		}
		select {
		case <-clitest.Ctx(t).Done():
			t.Fatalf("busy never became stable: %v %+v", err, d)
		case <-time.After(50 * time.Millisecond):
		}
	}

	_, err := runRestore(t, b.Addr, "copy", dir, false)
	if err == nil || !strings.Contains(err.Error(), "consumer group is active on the target cluster: busy (Stable); restoring offsets would move running consumers, so nothing was written. "+
		"Stop their consumers and run restore again, leave them out with --groups or --no-group-offsets, or use --active-groups=skip") {
		t.Fatalf("restore with an active group: %v", err)
	}
	if exists(t, b.Addr, "copy") {
		t.Fatal("a refused restore created its topic")
	}
	c, io := clitest.Common(b.Addr, nil)
	if err := RunRestore(clitest.Ctx(t), RestoreOptions{Common: c, Topic: "copy", From: dir, ActiveGroups: "skip"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(io.Err.String(), "warning: consumer group is active on the target cluster: busy (Stable); not restoring their offsets") {
		t.Fatalf("stderr %q", io.Err.String())
	}
	if c := committed(t, b.Addr, "idle", "copy"); !reflect.DeepEqual(c, map[int32]int64{0: 6}) {
		t.Fatalf("idle: %v", c)
	}
	if c := committed(t, b.Addr, "busy", "copy"); len(c) != 0 {
		t.Fatalf("busy was overwritten: %v", c)
	}
}

// TestCompactedGroupOffsets: restore of a compacted back-up leaves out
// deleted keys (and their records), so later offsets move back; each
// committed offset maps to the first restored record at or after it.
func TestCompactedGroupOffsets(t *testing.T) {
	src := clitest.Start(t, nil)
	compactedSource(t, src.Addr)
	srcRecs := recordsAt(t, src.Addr, "users")
	commits := map[int32]int64{}
	for p, rs := range srcRecs {
		commits[p] = rs[len(rs)/2].Offset // the middle of the partition
	}
	commit(t, src.Addr, "readers", "users", commits)
	dir := filepath.Join(t.TempDir(), "users.bak")
	if _, err := runBackup(t, src.Addr, "users", dir, false); err != nil {
		t.Fatal(err)
	}
	dst := clitest.Start(t, nil)
	if _, err := runRestore(t, dst.Addr, "users", dir, false); err != nil {
		t.Fatal(err)
	}
	got := recordsAt(t, dst.Addr, "users")
	// What restore writes: every record of each key whose latest record
	// is not a tombstone, in order.
	wantAt := map[int32]int64{}
	for p, rs := range srcRecs {
		latest := map[string]bool{}
		for _, r := range rs {
			latest[string(r.Key)] = !r.ValueNull
		}
		var written []orec
		for _, r := range rs {
			if latest[string(r.Key)] {
				written = append(written, r)
			}
		}
		if len(written) != len(got[p]) {
			t.Fatalf("partition %d: %d records restored, want %d", p, len(got[p]), len(written))
		}
		wantAt[p] = got[p][len(got[p])-1].Offset + 1
		for i, r := range written {
			if r.Offset >= commits[p] {
				wantAt[p] = got[p][i].Offset
				break
			}
		}
		if wantAt[p] == commits[p] {
			t.Fatalf("partition %d: committed offset %d did not move: the test proves nothing", p, commits[p])
		}
	}
	if c := committed(t, dst.Addr, "readers", "users"); !reflect.DeepEqual(c, wantAt) {
		t.Fatalf("readers on the restored topic: %v, want %v (source %v)", c, wantAt, commits)
	}
}

// TestRestoreV1Backup restores a back-up of format version 1, written by
// the commit before version 2 (testdata/v1-orders), and refuses to build
// an incremental on it.
func TestRestoreV1Backup(t *testing.T) {
	dir := copyDir(t, "testdata/v1-orders")
	b := clitest.Start(t, nil)
	mustRestore(t, b.Addr, "orders", dir, "restored orders (cleanup.policy delete, 2 partitions, 40 records) from "+dir+" into orders: wrote 40 records")
	want := map[int32][]rec{}
	for i := range 40 {
		r := rec{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "order-%d", i), Timestamp: 1_700_000_000_000 + int64(i),
			Headers: []kgo.RecordHeader{{Key: "n", Value: fmt.Append(nil, i)}}}
		if i%7 == 3 {
			r.Value, r.ValueNull = nil, true
		}
		want[int32(i%2)] = append(want[int32(i%2)], r)
	}
	sameRecords(t, "restored version 1", records(t, b.Addr, "orders"), want)

	c, _ := clitest.Common(b.Addr, nil)
	err := RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: "orders", To: dir, Incremental: true})
	if err == nil || !strings.Contains(err.Error(), "has format version 1, which has no id to build on; take a full back-up (without --incremental) into a new location") {
		t.Fatalf("incremental on a version-1 back-up: %v", err)
	}
	err = RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: "orders", To: t.TempDir(), Incremental: true})
	if err == nil || !strings.Contains(err.Error(), "holds no back-up to build on; take a full back-up first (without --incremental)") {
		t.Fatalf("incremental on nothing: %v", err)
	}
}

// TestIncrementalFigures measures a full back-up and an incremental of
// the same topic, the incremental adding 5% to its records; run with -v
// for the figures. Only the sizes are checked.
func TestIncrementalFigures(t *testing.T) {
	b := clitest.Start(t, nil)
	create(t, b.Addr, "load", 4)
	value := strings.Repeat("x", 200)
	const total, more = 40_000, 2_000
	for batch := range total / 4_000 {
		var rs []*kgo.Record
		for i := range 4_000 {
			rs = append(rs, &kgo.Record{Topic: "load", Partition: int32(i % 4), Key: fmt.Appendf(nil, "k%d-%d", batch, i), Value: []byte(value)})
		}
		produce(t, b.Addr, rs, true)
	}
	dir := filepath.Join(t.TempDir(), "load.bak")
	start := time.Now()
	if _, err := runBackup(t, b.Addr, "load", dir, false); err != nil {
		t.Fatal(err)
	}
	fullTime, fullSize := time.Since(start), dirSize(t, dir)
	var rs []*kgo.Record
	for i := range more {
		rs = append(rs, &kgo.Record{Topic: "load", Partition: int32(i % 4), Key: fmt.Appendf(nil, "more-%d", i), Value: []byte(value)})
	}
	produce(t, b.Addr, rs, true)
	start = time.Now()
	runBackupInc(t, b.Addr, "load", nil, dir)
	incTime, incSize := time.Since(start), dirSize(t, dir)-fullSize
	t.Logf("full back-up: %d records, %d bytes of data files, %v; incremental: %d records, %d bytes, %v",
		total, fullSize, fullTime.Round(time.Millisecond), more, incSize, incTime.Round(time.Millisecond))
	if incSize*10 > fullSize {
		t.Fatalf("incremental of %d records is %d bytes, the full back-up of %d %d", more, incSize, total, fullSize)
	}
}

// TestCompactedIncremental: a compacted topic's chain restores to the
// source's key-value content, with keys updated and deleted after the
// full back-up, into a new topic and over the restored copy of the full
// back-up alone (which then needs tombstones).
func TestCompactedIncremental(t *testing.T) {
	src := clitest.Start(t, nil)
	compactedSource(t, src.Addr)
	dir := filepath.Join(t.TempDir(), "users.bak")
	if _, err := runBackup(t, src.Addr, "users", dir, false); err != nil {
		t.Fatal(err)
	}
	dst := clitest.Start(t, nil)
	mustRestore(t, dst.Addr, "older", dir, "wrote ")

	var rs []*kgo.Record
	for i := range 30 {
		k := fmt.Sprintf("user-%03d", i*3)
		v := fmt.Appendf(nil, "later-%d", i)
		if i%4 == 0 {
			v = nil // deleted after the full back-up
		}
		rs = append(rs, &kgo.Record{Topic: "users", Key: []byte(k), Value: v, Timestamp: ts0.Add(time.Hour + time.Duration(i)*time.Second)})
	}
	rs = append(rs, &kgo.Record{Topic: "users", Key: []byte("new-key"), Value: []byte("new"), Timestamp: ts0.Add(2 * time.Hour)})
	produce(t, src.Addr, rs, false)
	if out := runBackupInc(t, src.Addr, "users", nil, dir); !strings.Contains(out, "backed up 31 records of users") {
		t.Fatalf("incremental: %q", out)
	}
	want := scan(t, src.Addr, "users")

	mustRestore(t, dst.Addr, "users", dir, "a chain of 2 back-ups")
	sameContent(t, "compacted chain into a new topic", scan(t, dst.Addr, "users"), want)
	out, err := runRestore(t, dst.Addr, "older", dir, false)
	if err != nil || !strings.Contains(out, "wrote ") {
		t.Fatalf("compacted chain over the full back-up's copy: %v %q", err, out)
	}
	sameContent(t, "compacted chain over the full back-up's copy", scan(t, dst.Addr, "older"), want)
}
