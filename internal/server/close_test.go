package server

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// holdFirst answers every request, the first only once release is closed.
type holdFirst struct {
	allVersions
	calls   atomic.Int32
	started chan struct{}
	release chan struct{}
}

func (h *holdFirst) Handle(ctx context.Context, req *Request, reply func(Reply)) {
	if h.calls.Add(1) == 1 {
		close(h.started)
		<-h.release
	}
	h.allVersions.Handle(ctx, req, reply)
}

// TestNoRequestHandledAfterClose: requests a client pipelined, already in
// the connection's read buffer when the server closes, are not handled
// (a produce would be appended by a broker that is shutting down, with no
// one to tell). Before the fix the reader went on with the frames it had
// buffered while its budget had room (all 8 handled in one run).
func TestNoRequestHandledAfterClose(t *testing.T) {
	for round := range 10 {
		h := &holdFirst{started: make(chan struct{}), release: make(chan struct{})}
		s := New(h, nil)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(ln)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// Eight requests in one write: the reader takes them into its
		// buffer together and handles the first.
		var b []byte
		for i := range 8 {
			f := frame(kmsg.NewPtrMetadataRequest(), int32(i), nil)
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		<-h.started
		closed := make(chan struct{})
		go func() {
			s.Close()
			close(closed)
		}()
		// Close has closed the connection once the client reads its end.
		c.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("round %d: waiting for the server to close the connection: %v", round, err)
		}
		close(h.release)
		<-closed
		c.Close()
		if n := h.calls.Load(); n != 1 {
			t.Fatalf("round %d: %d requests handled, want 1: those read after Close were handled", round, n)
		}
	}
}
