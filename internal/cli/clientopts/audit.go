package clientopts

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/audit"
)

// OpenCounter starts the audit counter of a pipeline stage (`--audit` of
// collect, mirror and sink): the counts go to topic ("" the default) on
// brokers, as client id clientID, and creating or finding the counts
// topic may take timeout.
func OpenCounter(ctx context.Context, stage, topic string, brokers []string, clientID string, timeout time.Duration, log *slog.Logger) (*audit.Counter, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return audit.NewCounter(cctx, audit.CounterOptions{Stage: stage, Topic: topic, Logger: log,
		NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
			return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID(clientID), kgo.DialTimeout(timeout)}, opts...)...)
		}})
}
