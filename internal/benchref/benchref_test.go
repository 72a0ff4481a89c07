package benchref

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestStartServesKafkaAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr, stop, err := Start(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("addr %q", addr)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopic(ctx, -1, -1, nil, "t")
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v %v", err, resp.Err)
	}
	tds, err := adm.ListTopics(ctx, "t")
	if err != nil || len(tds["t"].Partitions) != 4 {
		t.Fatalf("want 4 default partitions: %v %+v", err, tds)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // idempotent
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	cl2, _ := kgo.NewClient(kgo.SeedBrokers(addr))
	defer cl2.Close()
	if err := cl2.Ping(pctx); err == nil {
		t.Fatal("still serving after stop")
	}
}

func TestStartOnBadAddress(t *testing.T) {
	if _, _, err := StartOn(context.Background(), "nope", 1); err == nil {
		t.Fatal("no error for a bad address")
	}
}
