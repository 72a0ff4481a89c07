package kclient

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/server"
)

// handler serves ApiVersions (0-3) and Metadata (0-12); a Metadata request
// for the topic "slow" is answered only when release is closed.
type handler struct{ release chan struct{} }

func (h *handler) Supports(key, v int16) bool {
	return (key == 18 && v <= 3) || (key == 3 && v <= 12)
}

func (h *handler) Handle(_ context.Context, req *server.Request, reply func(server.Reply)) {
	switch m := req.Msg.(type) {
	case *kmsg.ApiVersionsRequest:
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(req.Version)
		resp.ApiKeys = []kmsg.ApiVersionsResponseApiKey{{ApiKey: 18, MaxVersion: 3}, {ApiKey: 3, MaxVersion: 12}}
		reply(server.Reply{Msg: resp})
	case *kmsg.MetadataRequest:
		resp := kmsg.NewPtrMetadataResponse()
		resp.SetVersion(req.Version)
		resp.ControllerID = int32(req.Version) // echo the version negotiated
		if len(m.Topics) == 1 && m.Topics[0].Topic != nil && *m.Topics[0].Topic == "slow" {
			go func() { <-h.release; reply(server.Reply{Msg: resp}) }()
			return
		}
		reply(server.Reply{Msg: resp})
	}
}

func serve(t *testing.T) (string, *handler) {
	t.Helper()
	h := &handler{release: make(chan struct{})}
	srv := server.New(h, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { close(h.release); srv.Close() })
	return ln.Addr().String(), h
}

func TestRequestNegotiatesVersions(t *testing.T) {
	addr, _ := serve(t)
	ctx := context.Background()
	c, err := Dial(ctx, addr, Options{ClientID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 { // several on one connection
		resp, err := c.Request(ctx, kmsg.NewPtrMetadataRequest())
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.(*kmsg.MetadataResponse).ControllerID; got != 12 {
			t.Fatalf("served at v%d, want v12 (the peer's max)", got)
		}
	}
	if _, err := c.Request(ctx, kmsg.NewPtrFetchRequest()); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Fetch to a peer without it: %v, want ErrUnsupported", err)
	}
	resp, err := c.RequestAt(ctx, kmsg.NewPtrMetadataRequest(), 4)
	if err != nil || resp.(*kmsg.MetadataResponse).ControllerID != 4 {
		t.Fatalf("RequestAt v4: %v %v", resp, err)
	}
}

func TestDeadlineBreaksTheConnection(t *testing.T) {
	addr, _ := serve(t)
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	slow := kmsg.NewPtrMetadataRequest()
	topic := "slow"
	slow.Topics = []kmsg.MetadataRequestTopic{{Topic: &topic}}
	if _, err := c.Request(ctx, slow); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow request: %v, want a deadline error", err)
	}
	// The late answer would be read as the next one's: the connection is
	// done.
	if _, err := c.Request(context.Background(), kmsg.NewPtrMetadataRequest()); err == nil {
		t.Fatal("request on a connection that timed out succeeded")
	}
}

func TestCloseFailsARequestInFlight(t *testing.T) {
	addr, _ := serve(t)
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	slow := kmsg.NewPtrMetadataRequest()
	topic := "slow"
	slow.Topics = []kmsg.MetadataRequestTopic{{Topic: &topic}}
	done := make(chan error, 1)
	go func() { _, err := c.Request(context.Background(), slow); done <- err }()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("request succeeded after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not fail the request in flight")
	}
}
