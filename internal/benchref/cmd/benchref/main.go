// Command benchref serves franz-go's in-memory fake Kafka broker (kfake) as
// the reference for `sluice bench` figures: it prints "listening on ADDR"
// and serves until SIGTERM or Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluice-io/sluice/internal/benchref"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to serve the Kafka protocol on (port 0 picks one)")
	partitions := flag.Int("partitions", 6, "partitions of topics created without a count")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen, *partitions); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, listen string, partitions int) error {
	addr, stopBroker, err := benchref.StartOn(ctx, listen, partitions)
	if err != nil {
		return err
	}
	defer stopBroker()
	fmt.Printf("listening on %s\n", addr)
	<-ctx.Done()
	return nil
}
