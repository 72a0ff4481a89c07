package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Why minio-go and not the AWS SDK v2: one module (and a handful of small
// dependencies) instead of a dozen, PutObject of unknown size streams a
// multipart upload with a bounded buffer and aborts it on a read error,
// and its credentials package has the AWS chain (environment, shared
// credentials file and profile, IAM/instance metadata) as separate
// providers, so that we can say which one signed a refused request.

const (
	// S3Scheme starts a back-up location in object storage:
	// s3://bucket/prefix.
	S3Scheme = "s3://"

	// s3PartBytes is the size of a multipart upload's part, and what one
	// file being written holds in memory: parts are uploaded one at a
	// time as they fill. S3 allows 10,000 parts, so a file (one
	// partition's records) can be up to 10,000 × 16 MiB = 156 GiB; a
	// larger one fails with an error naming the limit.
	s3PartBytes = 16 << 20
	// s3MaxParts is S3's limit on the parts of a multipart upload.
	s3MaxParts = 10000
)

// S3Config says how to reach an S3-compatible store.
type S3Config struct {
	// Endpoint is the store's URL (http://127.0.0.1:7070) or host
	// (minio.example.com:9000, https); empty is AWS S3. A custom endpoint
	// is addressed path-style (endpoint/bucket/key), AWS virtual-host
	// style.
	Endpoint string
	// Region is the bucket's region; empty asks the store (AWS), or
	// us-east-1 for a custom endpoint that does not say.
	Region string
	// Creds, when set, replaces the AWS credential chain (for tests).
	Creds *credentials.Credentials
	// MaxRetries is how often a failed request is retried; 0 is
	// minio-go's default (10, with backoff up to about 10 s in all).
	MaxRetries int
}

// S3 is a Target under a prefix of an S3 bucket: a file name is the key
// prefix/name. A file being written is a multipart upload, which S3 makes
// visible whole when it completes (Close) and never when it is aborted
// (Abort, or an upload cut short: the store discards incomplete uploads
// according to the bucket's lifecycle rules, and lists them nowhere).
//
// S3's methods are safe for concurrent use; the context given to NewS3
// bounds every request.
type S3 struct {
	ctx    context.Context
	client *minio.Client
	bucket string
	prefix string // "" or ending in "/"
	loc    string // s3://bucket/prefix, for messages
	desc   string // where the store is, for messages
	creds  *sourceChain
}

// IsS3 says whether loc is an S3 location (s3://bucket/prefix).
func IsS3(loc string) bool { return strings.HasPrefix(loc, S3Scheme) }

// ParseS3 splits s3://bucket/prefix into the bucket and the prefix
// (without slashes at its ends; "" when there is none).
func ParseS3(loc string) (bucket, prefix string, err error) {
	if !IsS3(loc) {
		return "", "", fmt.Errorf("%q: want s3://bucket/prefix", loc)
	}
	rest := strings.TrimPrefix(loc, S3Scheme)
	bucket, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q: no bucket; write s3://bucket/prefix", loc)
	}
	if strings.Contains(prefix, "//") {
		return "", "", fmt.Errorf("%q: empty path element in the prefix", loc)
	}
	return bucket, prefix, nil
}

// parseEndpoint turns --endpoint into minio's host and TLS flag.
func parseEndpoint(ep string) (host string, secure bool, err error) {
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", false, fmt.Errorf("--endpoint %q: %v", ep, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", false, fmt.Errorf("--endpoint %q: scheme %q; use http:// or https://", ep, u.Scheme)
	}
	if u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return "", false, fmt.Errorf("--endpoint %q: want scheme://host[:port], without a path", ep)
	}
	return u.Host, u.Scheme == "https", nil
}

// NewS3 returns the Target at loc, s3://bucket/prefix. It makes no
// request: a missing bucket or refused credentials show in the first
// operation's error.
func NewS3(ctx context.Context, loc string, cfg S3Config) (*S3, error) {
	bucket, prefix, err := ParseS3(loc)
	if err != nil {
		return nil, err
	}
	host, secure, lookup := "s3.amazonaws.com", true, minio.BucketLookupAuto
	desc := "AWS S3"
	if cfg.Endpoint != "" {
		if host, secure, err = parseEndpoint(cfg.Endpoint); err != nil {
			return nil, err
		}
		lookup = minio.BucketLookupPath
		desc = cfg.Endpoint
	}
	region := cfg.Region
	if region == "" && cfg.Endpoint != "" {
		region = "us-east-1"
	}
	chain := newSourceChain()
	creds := cfg.Creds
	if creds == nil {
		creds = credentials.New(chain)
	} else {
		chain.set("the credentials given")
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       region,
		BucketLookup: lookup,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", desc, err)
	}
	s := &S3{ctx: ctx, client: client, bucket: bucket, loc: S3Scheme + bucket, desc: desc, creds: chain}
	if prefix != "" {
		s.prefix = prefix + "/"
		s.loc += "/" + prefix
	}
	return s, nil
}

// String is s3://bucket/prefix.
func (s *S3) String() string { return s.loc }

func (s *S3) key(name string) string { return s.prefix + name }

// explain turns a store's refusal into a message that says what to do.
func (s *S3) explain(err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	code := resp.Code
	if resp.StatusCode == http.StatusForbidden {
		code = minio.AccessDenied
	}
	switch code {
	case minio.NoSuchBucket:
		return fmt.Errorf("bucket %s does not exist at %s: create it first (aws s3 mb s3://%s, mc mb, or the store's console), or check --endpoint and --region: %w",
			s.bucket, s.desc, s.bucket, err)
	case minio.AccessDenied, minio.InvalidAccessKeyID, "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId",
		"XAdminUserNotFound": // versitygw's answer to an unknown access key
		return fmt.Errorf("%s refused the request for %s (%s) signed with %s: check that these credentials are valid and may read and write the bucket, "+
			"or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE): %w", s.desc, s.loc, resp.Code, s.creds.source(), err)
	case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException":
		return fmt.Errorf("%s: bucket %s is in another region (%q); set --region to it: %w", s.desc, s.bucket, resp.Region, err)
	}
	return err
}

// Create starts a multipart upload of name. The writer streams through a
// pipe into minio-go's PutObject, which buffers one part (s3PartBytes) at
// a time; the upload completes, and the object appears, only on Close.
func (s *S3) Create(name string) (io.WriteCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	w := &s3Writer{pw: pw, name: s.loc + "/" + name, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		_, err := s.client.PutObject(s.ctx, s.bucket, s.key(name), pr, -1, minio.PutObjectOptions{
			PartSize:    s3PartBytes,
			ContentType: "application/octet-stream",
		})
		// A failed upload stops the writer's next Write. minio-go has
		// aborted the multipart upload when the error came from the
		// reader (Abort) or a part.
		w.err = s.explain(err)
		if err != nil {
			pr.CloseWithError(w.err)
		}
	}()
	return w, nil
}

// Put writes the file name from r, which has size bytes: one PUT up to
// s3PartBytes (atomic, as a multipart upload: the object appears whole or
// not at all), a multipart upload above. Without Create's pipe, and, for
// an r that reads at offsets and seeks (io.SectionReader), without a part
// buffer: the sink's uploads of files it already holds in memory.
func (s *S3) Put(name string, r io.Reader, size int64) error {
	if err := checkName(name); err != nil {
		return err
	}
	_, err := s.client.PutObject(s.ctx, s.bucket, s.key(name), r, size, minio.PutObjectOptions{
		PartSize:    s3PartBytes,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", s.loc, name, s.explain(err))
	}
	return nil
}

// errAborted ends the pipe of an aborted upload.
var errAborted = errors.New("backup: upload aborted")

// s3Writer is a file of S3 being written. It is used by one goroutine.
type s3Writer struct {
	pw     *io.PipeWriter
	name   string
	n      int64
	closed bool
	done   chan struct{} // closed when PutObject has returned
	err    error         // PutObject's, set before done is closed
}

func (w *s3Writer) Write(p []byte) (int, error) {
	if w.n+int64(len(p)) > s3PartBytes*s3MaxParts {
		return 0, fmt.Errorf("write %s: larger than %d bytes (%d parts of %d bytes), the most one S3 upload of this size takes", w.name,
			int64(s3PartBytes*s3MaxParts), s3MaxParts, s3PartBytes)
	}
	n, err := w.pw.Write(p)
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", w.name, err)
	}
	return n, nil
}

// Close ends the stream and waits for the upload to complete: when it
// returns nil the object is there, whole.
func (w *s3Writer) Close() error {
	if w.closed {
		return errors.New("back-up file already closed")
	}
	w.closed = true
	w.pw.Close()
	<-w.done
	if w.err != nil {
		return fmt.Errorf("write %s: %w", w.name, w.err)
	}
	return nil
}

// Abort ends the stream with an error, which makes PutObject abort the
// multipart upload: nothing of it becomes visible, and an object already
// at that name stays as it was.
func (w *s3Writer) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.pw.CloseWithError(errAborted)
	<-w.done
	if w.err != nil && !errors.Is(w.err, errAborted) {
		// The upload had failed already; minio-go aborted it then.
		return nil
	}
	if w.err == nil {
		// BUG guard: PutObject completed although its reader failed.
		return fmt.Errorf("abort %s: the upload completed anyway", w.name)
	}
	return nil
}

// Open reads name. The object is fetched (its headers) here, so that a
// missing one is an error of Open, wrapping fs.ErrNotExist.
func (s *S3) Open(name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(s.ctx, s.bucket, s.key(name), minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat()
	}
	if err != nil {
		if obj != nil {
			obj.Close()
		}
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			// The answer to a HEAD has no body to tell a missing key
			// from a missing bucket: ask.
			if ok, berr := s.client.BucketExists(s.ctx, s.bucket); berr == nil && !ok {
				return nil, fmt.Errorf("open %s/%s: %w", s.loc, name, s.explain(minio.ErrorResponse{Code: minio.NoSuchBucket, BucketName: s.bucket, Message: "The specified bucket does not exist"}))
			}
			return nil, fmt.Errorf("open %s/%s: %w", s.loc, name, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("open %s/%s: %w", s.loc, name, s.explain(err))
	}
	return obj, nil
}

// List returns the names of the objects directly under the prefix,
// sorted; "directories" below it are left out, as Dir leaves out
// subdirectories. Uploads in progress are not objects and not listed.
func (s *S3) List() ([]string, error) {
	var names []string
	for obj := range s.client.ListObjects(s.ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s: %w", s.loc, s.explain(obj.Err))
		}
		name := strings.TrimPrefix(obj.Key, s.prefix)
		if name == "" || strings.HasSuffix(name, "/") || strings.Contains(name, "/") {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// Remove deletes name; S3 answers a delete of a missing key with success.
func (s *S3) Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := s.client.RemoveObject(s.ctx, s.bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil
		}
		return fmt.Errorf("remove %s/%s: %w", s.loc, name, s.explain(err))
	}
	return nil
}

// sourceChain is the AWS credential chain (environment, shared
// credentials file, IAM) that remembers which source gave the
// credentials in use, for messages.
type sourceChain struct {
	providers []namedProvider

	mu   sync.Mutex
	curr *namedProvider
	used string
}

type namedProvider struct {
	name string
	p    credentials.Provider
}

func newSourceChain() *sourceChain {
	file := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if file == "" {
		file = "~/.aws/credentials"
	}
	profile := os.Getenv("AWS_PROFILE")
	if profile == "" {
		profile = "default"
	}
	return &sourceChain{providers: []namedProvider{
		{"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment", &credentials.EnvAWS{}},
		{fmt.Sprintf("profile %s of the shared credentials file %s", profile, file), &credentials.FileAWSCredentials{}},
		{"the instance's IAM role (instance metadata)", &credentials.IAM{}},
	}}
}

func (c *sourceChain) set(used string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.used = used
}

// source says where the credentials in use came from.
func (c *sourceChain) source() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used == "" {
		return "no credentials (none in the environment, the shared credentials file or instance metadata; the request was anonymous)"
	}
	return c.used
}

// RetrieveWithCredContext takes the first source that has credentials,
// as minio-go's credentials.Chain does.
func (c *sourceChain) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	for i := range c.providers {
		np := &c.providers[i]
		v, _ := np.p.RetrieveWithCredContext(cc)
		if v.AccessKeyID == "" && v.SecretAccessKey == "" {
			continue
		}
		c.mu.Lock()
		c.curr, c.used = np, np.name
		c.mu.Unlock()
		return v, nil
	}
	c.set("")
	return credentials.Value{SignerType: credentials.SignatureAnonymous}, nil
}

// Retrieve is RetrieveWithCredContext without a context.
func (c *sourceChain) Retrieve() (credentials.Value, error) {
	return c.RetrieveWithCredContext(nil)
}

// IsExpired is the current source's; true before the first Retrieve.
func (c *sourceChain) IsExpired() bool {
	c.mu.Lock()
	curr := c.curr
	c.mu.Unlock()
	return curr == nil || curr.p.IsExpired()
}
