package backup

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sluice-io/sluice/internal/backup/s3test"
)

func newS3(t *testing.T, srv *s3test.Server, loc string) *S3 {
	t.Helper()
	tg, err := NewS3(t.Context(), loc, S3Config{Endpoint: srv.Endpoint, Creds: srv.Creds(), MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// incomplete lists the multipart uploads in progress under prefix.
func incomplete(t *testing.T, srv *s3test.Server, prefix string) []string {
	t.Helper()
	var keys []string
	for u := range srv.Client().ListIncompleteUploads(context.Background(), srv.Bucket, prefix, true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		keys = append(keys, u.Key)
	}
	return keys
}

func TestS3Target(t *testing.T) {
	srv := s3test.Start(t)
	tg := newS3(t, srv, "s3://"+srv.Bucket+"/a/b/")
	if tg.String() != "s3://backups/a/b" {
		t.Fatalf("String: %s", tg)
	}
	testTargetContract(t, tg)
	if ups := incomplete(t, srv, ""); len(ups) != 0 {
		t.Fatalf("aborted uploads left in progress: %v", ups)
	}

	// The prefix is a directory: neighbours and objects below it are not
	// the target's.
	c := srv.Client()
	for _, key := range []string{"a/b/x", "a/b/sub/y", "a/bc", "a/z", "top"} {
		if _, err := c.PutObject(t.Context(), srv.Bucket, key, strings.NewReader(key), int64(len(key)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if names, err := tg.List(); err != nil || !slices.Equal(names, []string{"x"}) {
		t.Fatalf("list: %v %v", names, err)
	}
	root := newS3(t, srv, "s3://"+srv.Bucket)
	if names, err := root.List(); err != nil || !slices.Equal(names, []string{"top"}) {
		t.Fatalf("list of the bucket: %v %v", names, err)
	}
}

func TestS3Locations(t *testing.T) {
	for loc, want := range map[string][2]string{
		"s3://b":          {"b", ""},
		"s3://b/":         {"b", ""},
		"s3://b/p":        {"b", "p"},
		"s3://b/p/q/":     {"b", "p/q"},
		"s3:///p":         {"error", "no bucket"},
		"/dir":            {"error", "want s3://"},
		"s3://b/p//q":     {"error", "empty path element"},
		"s3://b/2024-5-1": {"b", "2024-5-1"},
	} {
		b, p, err := ParseS3(loc)
		if want[0] == "error" {
			if err == nil || !strings.Contains(err.Error(), want[1]) {
				t.Errorf("%s: %v, want an error with %q", loc, err, want[1])
			}
			continue
		}
		if err != nil || b != want[0] || p != want[1] {
			t.Errorf("%s: %q %q %v, want %q", loc, b, p, err, want)
		}
	}
	for ep, want := range map[string]string{
		"http://127.0.0.1:7070": "127.0.0.1:7070 false",
		"minio.example.com":     "minio.example.com true",
		"https://h:9000/":       "h:9000 true",
		"ftp://h":               "error scheme",
		"http://h/path":         "error without a path",
	} {
		host, secure, err := parseEndpoint(ep)
		got := host + " " + map[bool]string{true: "true", false: "false"}[secure]
		if err != nil {
			got = "error " + err.Error()
		}
		if !strings.HasPrefix(want, "error") && got != want || strings.HasPrefix(want, "error") && !strings.Contains(got, strings.TrimPrefix(want, "error ")) {
			t.Errorf("--endpoint %s: %s, want %s", ep, got, want)
		}
	}
}

// TestS3Errors: a missing bucket and refused credentials say what to do.
func TestS3Errors(t *testing.T) {
	srv := s3test.Start(t)
	missing := newS3(t, srv, "s3://no-such-bucket/p")
	_, err := missing.List()
	if err == nil || !strings.Contains(err.Error(), "bucket no-such-bucket does not exist at "+srv.Endpoint+": create it first") {
		t.Fatalf("list of a missing bucket: %v", err)
	}
	if _, err := missing.Open(ManifestName); err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "create it first") {
		t.Fatalf("open in a missing bucket: %v", err)
	}
	w, _ := missing.Create("x")
	w.Write([]byte("x"))
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "create it first") {
		t.Fatalf("write to a missing bucket: %v", err)
	}

	// Credentials from the environment, wrong.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	env, err := NewS3(t.Context(), "s3://"+srv.Bucket+"/p", S3Config{Endpoint: srv.Endpoint, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.List(); err == nil || !strings.Contains(err.Error(), "signed with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment") {
		t.Fatalf("list with a wrong secret: %v", err)
	}
	// From the shared credentials file, right, under a profile.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	file := t.TempDir() + "/credentials"
	writeFile(t, file, "[default]\naws_access_key_id = nobody\naws_secret_access_key = x\n[ci]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = "+srv.SecretKey+"\n")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	t.Setenv("AWS_PROFILE", "ci")
	prof, _ := NewS3(t.Context(), "s3://"+srv.Bucket+"/p", S3Config{Endpoint: srv.Endpoint, MaxRetries: 1})
	if _, err := prof.List(); err != nil {
		t.Fatalf("list with the profile's credentials: %v", err)
	}
	t.Setenv("AWS_PROFILE", "")
	def, _ := NewS3(t.Context(), "s3://"+srv.Bucket+"/p", S3Config{Endpoint: srv.Endpoint, MaxRetries: 1})
	if _, err := def.List(); err == nil || !strings.Contains(err.Error(), "signed with profile default of the shared credentials file "+file) {
		t.Fatalf("list with the default profile's credentials: %v", err)
	}
	static, _ := NewS3(t.Context(), "s3://"+srv.Bucket, S3Config{Endpoint: srv.Endpoint, MaxRetries: 1, Creds: credentials.NewStaticV4("k", "s", "")})
	if _, err := static.List(); err == nil || !strings.Contains(err.Error(), "refused the request for s3://backups") {
		t.Fatalf("list with wrong static credentials: %v", err)
	}
}

// TestS3Crash: the store dies during an upload; restarted, it shows
// nothing of the file, and the old one of that name is intact.
func TestS3Crash(t *testing.T) {
	srv := s3test.Start(t)
	tg := newS3(t, srv, "s3://"+srv.Bucket+"/crash")
	w, _ := tg.Create("f")
	w.Write([]byte("old"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w, _ = tg.Create("f")
	// More than a part: one is uploaded, the rest buffered.
	if _, err := w.Write(bytes.Repeat([]byte{'n'}, s3PartBytes+1000)); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if err := w.Close(); err == nil {
		t.Fatal("an upload completed with the store killed")
	}
	srv.Restart()
	if names, err := tg.List(); err != nil || !slices.Equal(names, []string{"f"}) {
		t.Fatalf("list after the crash: %v %v", names, err)
	}
	rc, err := tg.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(rc)
	rc.Close()
	if b.String() != "old" {
		t.Fatalf("after a crashed rewrite: %d bytes", b.Len())
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestS3Put: files of known size, one under a part and one of two parts
// (read at offsets), are read back whole; a reader shorter than its size
// publishes nothing.
func TestS3Put(t *testing.T) {
	srv := s3test.Start(t)
	tg := newS3(t, srv, "s3://"+srv.Bucket+"/put")
	small := []byte("a small file")
	big := bytes.Repeat([]byte("0123456789abcdef"), (s3PartBytes+s3PartBytes/2)/16)
	if err := tg.Put("small", bytes.NewBuffer(small), int64(len(small))); err != nil {
		t.Fatal(err)
	}
	if err := tg.Put("big", io.NewSectionReader(bytes.NewReader(big), 0, int64(len(big))), int64(len(big))); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{"small": small, "big": big} {
		rc, err := tg.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s read back: %d bytes, want %d (%v)", name, len(got), len(want), err)
		}
	}
	if err := tg.Put("short", bytes.NewBufferString("abc"), 10); err == nil {
		t.Fatal("a Put of 3 bytes announced as 10 succeeded")
	}
	if names, err := tg.List(); err != nil || !slices.Equal(names, []string{"big", "small"}) {
		t.Fatalf("list: %v %v", names, err)
	}
}
