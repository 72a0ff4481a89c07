package e2e

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestBenchLogDirMove measures a move between two log dirs on this machine's
// disk, for BENCHMARKS.md; it runs only with SLUICE_BENCH_MOVE_MB set (the
// partition's size in MiB). Figures, logged: the raw disk's sequential write
// (`sluice bench disk`, same run, same dir) as the reference; the move's
// rate, unthrottled; and the produce latency of an acks=all producer writing
// to the moving partition (1 KiB records, one at a time) before and during
// the move: its worst case is what the partition's close costs a client.
func TestBenchLogDirMove(t *testing.T) {
	mb, _ := strconv.Atoi(os.Getenv("SLUICE_BENCH_MOVE_MB"))
	if mb <= 0 {
		t.Skip("set SLUICE_BENCH_MOVE_MB to run the log dir move benchmark")
	}
	root := t.TempDir()
	dirs := []string{filepath.Join(root, "a"), filepath.Join(root, "b")}
	ctx := ctxT(t)
	out, err := runCLI(t, ctx, "bench", "disk", "--dir", root, "--size-mib", "1024", "-q")
	if err != nil {
		t.Fatalf("bench disk: %v\n%s", err, out)
	}
	var disk struct {
		MiBPerSec float64 `json:"mib_per_sec"`
	}
	var js string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "{") {
			js = l
		}
	}
	if err := json.Unmarshal([]byte(js), &disk); err != nil {
		t.Fatalf("bench disk output: %v\n%s", err, out)
	}
	tb := startLogDirs(t, dirs, "")
	adm := tb.admin()
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "bench"); err != nil {
		t.Fatal(err)
	}
	fill := tb.client(kgo.DefaultProduceTopic("bench"), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerLinger(5*time.Millisecond))
	rnd := rand.New(rand.NewPCG(5, 6))
	v := make([]byte, 1024)
	var wg sync.WaitGroup
	var fillErr error
	var mu sync.Mutex
	for range mb << 10 {
		for i := range v {
			v[i] = byte(rnd.Uint32())
		}
		wg.Add(1)
		fill.Produce(ctx, kgo.SliceRecord(slices.Clone(v)), func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				fillErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	fill.Close()
	if fillErr != nil {
		t.Fatal(fillErr)
	}
	// The probe: one acks=all record at a time, its latency recorded.
	probe := tb.client(kgo.DefaultProduceTopic("bench"))
	defer probe.Close()
	type sample struct {
		at  time.Time
		lat time.Duration
	}
	var (
		samples []sample
		errs    int
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			err := probe.ProduceSync(context.Background(), kgo.SliceRecord(v)).FirstErr()
			mu.Lock()
			if err != nil {
				errs++
			} else {
				samples = append(samples, sample{start, time.Since(start)})
			}
			mu.Unlock()
		}
	}()
	time.Sleep(2 * time.Second)
	where, _ := partitionDirsOf(t, adm, "bench")
	to := dirs[0]
	if where[0] == to {
		to = dirs[1]
	}
	req := kadm.AlterReplicaLogDirsReq{}
	req.Add(to, kadm.TopicsSet{"bench": {0: {}}})
	moveStart := time.Now()
	if _, err := adm.AlterBrokerReplicaLogDirs(ctx, 1, req); err != nil {
		t.Fatal(err)
	}
	for {
		w, futures := partitionDirsOf(t, adm, "bench")
		if w[0] == to && futures == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	moveTook := time.Since(moveStart)
	time.Sleep(time.Second)
	close(stop)
	<-done
	var idle, during []time.Duration
	for _, s := range samples {
		if s.at.Before(moveStart) {
			idle = append(idle, s.lat)
		} else if s.at.Before(moveStart.Add(moveTook)) {
			during = append(during, s.lat)
		}
	}
	slices.Sort(idle)
	slices.Sort(during)
	pct := func(d []time.Duration, q float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(q*float64(len(d))))]
	}
	size := float64(mb)
	rate := size / moveTook.Seconds()
	t.Logf("FIGURE raw disk %.0f MiB/s; move of %d MiB took %v: %.0f MiB/s (%.2fx the disk); probe produce acks=all idle p50 %v max %v (%d), during the move p50 %v p99 %v max %v (%d), %d errors",
		disk.MiBPerSec, mb, moveTook.Round(time.Millisecond), rate, rate/disk.MiBPerSec,
		pct(idle, 0.5), pct(idle, 1), len(idle), pct(during, 0.5), pct(during, 0.99), pct(during, 1), len(during), errs)
}
