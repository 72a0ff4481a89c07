package clientopts

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// closingListener accepts connections and closes each at once, before
// reading or writing anything: what a broker at its connection limit does.
func closingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestConnectionClosedAtAccept(t *testing.T) {
	addr := closingListener(t)
	c := Common{Brokers: []string{addr}, Timeout: 5 * time.Second}
	start := time.Now()
	_, _, err := c.Admin(ctx(t))
	if err == nil {
		t.Fatal("no error from a listener that closes every connection")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "cannot reach broker at "+addr+": the broker refused the connection (connection limit?)") ||
		strings.Contains(msg, "TLS") || strings.Contains(msg, "sluice serve` running") {
		t.Fatalf("got %q", msg)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestConnectionToTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors the CLI causes
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	c := Common{Brokers: []string{addr}, Timeout: 5 * time.Second}
	_, _, err := c.Admin(ctx(t))
	if err == nil {
		t.Fatal("no error from a TLS listener")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "cannot reach broker at "+addr+": the broker expects TLS") || strings.Contains(msg, "connection limit") {
		t.Fatalf("got %q", msg)
	}
}

func TestKafkaErrSaysItOnce(t *testing.T) {
	err := KafkaErr(kerr.TopicAlreadyExists, "Topic 'demo' already exists.")
	if got, want := err.Error(), "TOPIC_ALREADY_EXISTS: Topic 'demo' already exists."; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatal("errors.Is lost the Kafka error")
	}
	if got := KafkaErr(kerr.TopicAlreadyExists, "").Error(); got != kerr.TopicAlreadyExists.Error() {
		t.Fatalf("without a message: %q", got)
	}
	if KafkaErr(nil, "x") != nil {
		t.Fatal("nil error became an error")
	}
}

func TestCountAndTopicID(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0 partitions"}, {1, "1 partition"}, {2, "2 partitions"}} {
		if got := Count(tc.n, "partition", "partitions"); got != tc.want {
			t.Errorf("Count(%d) = %q", tc.n, got)
		}
	}
	// Kafka's Uuid.toString: URL-safe base64 without padding.
	id := [16]byte{0xfb, 0xff, 0xbf, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xff}
	if got, want := TopicID(id), "-_-_AQIDBAUGBwgJCgsM_w"; got != want {
		t.Fatalf("TopicID = %q, want %q", got, want)
	}
}
