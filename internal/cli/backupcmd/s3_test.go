package backupcmd

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/backup/s3test"
	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// s3Env points the AWS credential chain at srv.
func s3Env(t *testing.T, srv *s3test.Server) {
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
}

// eventsSource fills a 2-partition topic with 300 records of every shape.
func eventsSource(t *testing.T, addr string) map[int32][]rec {
	create(t, addr, "events", 2)
	var rs []*kgo.Record
	for i := range 300 {
		r := &kgo.Record{Topic: "events", Partition: int32(i % 2), Value: fmt.Appendf(nil, "e%d", i), Timestamp: ts0.Add(time.Duration(i) * time.Millisecond)}
		switch i % 4 {
		case 0:
			r.Key = fmt.Appendf(nil, "k%d", i%7)
		case 1:
			r.Key, r.Value = []byte{}, nil
		case 2:
			r.Headers = []kgo.RecordHeader{{Key: "a", Value: nil}, {Key: "b", Value: []byte{}}}
		}
		rs = append(rs, r)
	}
	produce(t, addr, rs, true)
	return records(t, addr, "events")
}

func sameRecords(t *testing.T, what string, got, want map[int32][]rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d partitions, want %d", what, len(got), len(want))
	}
	for p := range want {
		if len(got[p]) != len(want[p]) {
			t.Fatalf("%s: partition %d has %d records, want %d", what, p, len(got[p]), len(want[p]))
		}
		for i := range want[p] {
			if !reflect.DeepEqual(got[p][i], want[p][i]) {
				t.Fatalf("%s: partition %d record %d:\n got %+v\nwant %+v", what, p, i, got[p][i], want[p][i])
			}
		}
	}
}

// TestS3RoundTrip backs a topic up to s3:// with the command line and
// the environment's credentials, and restores it into a new topic.
func TestS3RoundTrip(t *testing.T) {
	srv := s3test.Start(t)
	s3Env(t, srv)
	b := clitest.Start(t, nil)
	t.Setenv("SLUICE_BROKERS", b.Addr)
	want := eventsSource(t, b.Addr)
	loc := "s3://" + srv.Bucket + "/events/2024-05-01"

	out, err := execute(t, BackupCommand(), "", "events", "--to", loc, "--endpoint", srv.Endpoint)
	if err != nil || !strings.HasPrefix(out, "backed up 300 records of events (2 partitions, cleanup.policy delete, ") || !strings.HasSuffix(out, " to "+loc+"\n") {
		t.Fatalf("backup: %v %q", err, out)
	}
	var keys []string
	for o := range srv.Client().ListObjects(t.Context(), srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		keys = append(keys, o.Key)
	}
	if w := []string{"events/2024-05-01/manifest.json", "events/2024-05-01/partition-00000.rec", "events/2024-05-01/partition-00001.rec"}; !slices.Equal(keys, w) {
		t.Fatalf("objects: %v, want %v", keys, w)
	}
	if _, err := execute(t, BackupCommand(), "", "events", "--to", loc, "--endpoint", srv.Endpoint); err == nil ||
		!strings.Contains(err.Error(), loc+" is not empty (manifest.json, partition-00000.rec, partition-00001.rec)") {
		t.Fatalf("backup into a non-empty prefix: %v", err)
	}

	out, err = execute(t, RestoreCommand(), "", "events-copy", "--from", loc, "--endpoint", srv.Endpoint)
	if err != nil || !strings.Contains(out, "from "+loc+" into events-copy: wrote 300 records; 0 were already there") {
		t.Fatalf("restore: %v %q", err, out)
	}
	sameRecords(t, "restored from S3", records(t, b.Addr, "events-copy"), want)

	// What to do next, when the location is wrong.
	if _, err := execute(t, RestoreCommand(), "", "x", "--from", "s3://"+srv.Bucket+"/nothing", "--endpoint", srv.Endpoint); err == nil ||
		!strings.Contains(err.Error(), "manifest.json: missing; the back-up is incomplete (interrupted?) or s3://backups/nothing holds no back-up") {
		t.Fatalf("restore from an empty prefix: %v", err)
	}
	if _, err := execute(t, BackupCommand(), "", "events", "--to", "s3://nobucket/x", "--endpoint", srv.Endpoint); err == nil ||
		!strings.Contains(err.Error(), "bucket nobucket does not exist at "+srv.Endpoint+": create it first") {
		t.Fatalf("backup to a missing bucket: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	if _, err := execute(t, RestoreCommand(), "", "x", "--from", loc, "--endpoint", srv.Endpoint); err == nil ||
		!strings.Contains(err.Error(), "signed with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment") {
		t.Fatalf("restore with a wrong secret: %v", err)
	}
	if exists(t, b.Addr, "x") {
		t.Fatal("a refused restore created its topic")
	}
}

// cutTarget is a Target whose writer of file cut calls at its first
// Write, then fails or goes on.
type cutTarget struct {
	backup.Target
	cut string
	at  func() error
}

func (c cutTarget) Create(name string) (io.WriteCloser, error) {
	w, err := c.Target.Create(name)
	if err != nil || name != c.cut {
		return w, err
	}
	return &cutWriter{WriteCloser: w, at: c.at}, nil
}

type cutWriter struct {
	io.WriteCloser
	at   func() error
	done bool
}

func (w *cutWriter) Write(p []byte) (int, error) {
	if !w.done {
		w.done = true
		if err := w.at(); err != nil {
			return 0, err
		}
	}
	return w.WriteCloser.Write(p)
}

func (w *cutWriter) Abort() error { return backup.Abort(w.WriteCloser) }

// TestS3Interrupted: a back-up cut short in the middle of a data file,
// by an error (the upload is aborted) or by the store dying (SIGKILL,
// then restarted on the same directory), leaves no manifest and no part
// of the file; restore refuses it; a new back-up over it works.
func TestS3Interrupted(t *testing.T) {
	srv := s3test.Start(t)
	s3Env(t, srv)
	b := clitest.Start(t, nil)
	want := eventsSource(t, b.Addr)
	for _, how := range []string{"error", "kill"} {
		loc := "s3://" + srv.Bucket + "/" + how
		tg, err := backup.NewS3(context.Background(), loc, backup.S3Config{Endpoint: srv.Endpoint, MaxRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		at := func() error { return fmt.Errorf("cut short") }
		if how == "kill" {
			at = func() error { srv.Kill(); return nil }
		}
		c, _ := clitest.Common(b.Addr, nil)
		err = RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: "events", Target: cutTarget{Target: tg, cut: backup.DataFileName(1), at: at}})
		if err == nil {
			t.Fatalf("%s: the back-up succeeded", how)
		}
		if how == "kill" {
			srv.Restart()
		}
		names, err := tg.List()
		if err != nil || !slices.Equal(names, []string{backup.DataFileName(0)}) {
			t.Fatalf("%s: files after the interruption: %v %v, want only the first data file", how, names, err)
		}
		if how == "error" {
			for u := range srv.Client().ListIncompleteUploads(t.Context(), srv.Bucket, how+"/", true) {
				t.Fatalf("%s: an upload is left in progress: %+v", how, u)
			}
		}
		c, _ = clitest.Common(b.Addr, nil)
		err = RunRestore(clitest.Ctx(t), RestoreOptions{Common: c, Topic: "restored-" + how, From: loc, S3: S3Flags{Endpoint: srv.Endpoint}})
		if err == nil || !strings.Contains(err.Error(), "manifest.json: missing; the back-up is incomplete (interrupted?)") || !strings.HasSuffix(err.Error(), "nothing was written") {
			t.Fatalf("%s: restore of an interrupted back-up: %v", how, err)
		}
		if exists(t, b.Addr, "restored-"+how) {
			t.Fatalf("%s: restore of an interrupted back-up created the topic", how)
		}

		// Again, over the remains.
		c, _ = clitest.Common(b.Addr, nil)
		if err := RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: "events", To: loc, S3: S3Flags{Endpoint: srv.Endpoint}}); err == nil || !strings.Contains(err.Error(), "use --force") {
			t.Fatalf("%s: backup over the remains without --force: %v", how, err)
		}
		c, _ = clitest.Common(b.Addr, nil)
		if err := RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: "events", To: loc, Force: true, S3: S3Flags{Endpoint: srv.Endpoint}}); err != nil {
			t.Fatalf("%s: backup again: %v", how, err)
		}
		c, _ = clitest.Common(b.Addr, nil)
		if err := RunRestore(clitest.Ctx(t), RestoreOptions{Common: c, Topic: "restored-" + how, From: loc, S3: S3Flags{Endpoint: srv.Endpoint}}); err != nil {
			t.Fatalf("%s: restore: %v", how, err)
		}
		sameRecords(t, how+": restored", records(t, b.Addr, "restored-"+how), want)
	}
}

// TestS3Incremental: a full back-up and an incremental in S3 with the
// command line (--since-last), an incremental cut short in between (the
// chain stays whole: restore takes the newest complete back-up, and the
// next incremental replaces the remains), restored with the groups'
// offsets; a full back-up with --force replaces the chain.
func TestS3Incremental(t *testing.T) {
	srv := s3test.Start(t)
	s3Env(t, srv)
	b := clitest.Start(t, nil)
	t.Setenv("SLUICE_BROKERS", b.Addr)
	create(t, b.Addr, "orders", 2)
	produceBatch(t, b.Addr, "orders", 2, 1, 30)
	commit(t, b.Addr, "billing", "orders", map[int32]int64{0: 10, 1: 30})
	loc := "s3://" + srv.Bucket + "/orders"
	if out, err := execute(t, BackupCommand(), "", "orders", "--to", loc, "--endpoint", srv.Endpoint); err != nil ||
		!strings.Contains(out, "backed up 60 records of orders") {
		t.Fatalf("full back-up: %v %q", err, out)
	}
	produceBatch(t, b.Addr, "orders", 2, 2, 10)
	commit(t, b.Addr, "billing", "orders", map[int32]int64{0: 35, 1: 31})

	tg, err := backup.NewS3(context.Background(), loc, backup.S3Config{Endpoint: srv.Endpoint, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := clitest.Common(b.Addr, nil)
	err = RunBackup(clitest.Ctx(t), BackupOptions{Common: c, Topic: "orders", Incremental: true,
		Target: cutTarget{Target: tg, cut: backup.ChainDataFileName(1, 1), at: func() error { return fmt.Errorf("cut short") }}})
	if err == nil {
		t.Fatal("the cut incremental succeeded")
	}
	out, err := execute(t, RestoreCommand(), "", "after-cut", "--from", loc, "--endpoint", srv.Endpoint)
	if err != nil || !strings.Contains(out, "restored orders (cleanup.policy delete, 2 partitions, 60 records) from "+loc) {
		t.Fatalf("restore after a cut incremental: %v %q", err, out)
	}

	out, err = execute(t, BackupCommand(), "", "orders", "--to", loc, "--since-last", "--endpoint", srv.Endpoint)
	if err != nil || !strings.HasPrefix(out, "incremental back-up 1 (on manifest.json): backed up 20 records of orders") {
		t.Fatalf("incremental: %v %q", err, out)
	}
	var keys []string
	for o := range srv.Client().ListObjects(t.Context(), srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		keys = append(keys, o.Key)
	}
	if w := []string{"orders/incr-000001-manifest.json", "orders/incr-000001-partition-00000.rec", "orders/incr-000001-partition-00001.rec",
		"orders/manifest.json", "orders/partition-00000.rec", "orders/partition-00001.rec"}; !slices.Equal(keys, w) {
		t.Fatalf("objects: %v, want %v", keys, w)
	}
	want := recordsAt(t, b.Addr, "orders")

	dst := clitest.Start(t, nil)
	out, err = execute(t, RestoreCommand(), "", "orders-copy", "--from", loc, "--endpoint", srv.Endpoint, "--brokers", dst.Addr)
	if err != nil || !strings.Contains(out, "(cleanup.policy delete, 2 partitions, 80 records, a chain of 2 back-ups) from "+loc+" into orders-copy: wrote 80 records") {
		t.Fatalf("restore: %v %q", err, out)
	}
	sameRecords(t, "restored from S3", records(t, dst.Addr, "orders-copy"), contents(want))
	if c := committed(t, dst.Addr, "billing", "orders-copy"); !reflect.DeepEqual(c, map[int32]int64{0: 35, 1: 31}) {
		t.Fatalf("billing on the restored topic: %v", c)
	}

	out, err = execute(t, BackupCommand(), "", "orders", "--to", loc, "--force", "--endpoint", srv.Endpoint)
	if err != nil || !strings.Contains(out, "backed up 80 records of orders") {
		t.Fatalf("full back-up with --force: %v %q", err, out)
	}
	keys = nil
	for o := range srv.Client().ListObjects(t.Context(), srv.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		keys = append(keys, o.Key)
	}
	if w := []string{"orders/manifest.json", "orders/partition-00000.rec", "orders/partition-00001.rec"}; !slices.Equal(keys, w) {
		t.Fatalf("objects after --force: %v, want %v", keys, w)
	}
}
