package audit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/freeport"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// byteCount counts the bytes a client writes to and reads from brokers.
type byteCount struct{ w, r atomic.Int64 }

func (b *byteCount) OnBrokerWrite(_ kgo.BrokerMetadata, _ int16, n int, _, _ time.Duration, _ error) {
	b.w.Add(int64(n))
}

func (b *byteCount) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, n int, _, _ time.Duration, _ error) {
	b.r.Add(int64(n))
}

// selfCPU is this process's user+system CPU time.
func selfCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user+system CPU time from /proc (clock ticks of
// 10 ms, USER_HZ on Linux).
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// TestBenchAuditOverhead measures what the auditor costs at the default
// interval against `sluice serve` (a separate process, so that this
// process's CPU is the auditor's): its CPU, the broker's extra CPU, and the
// bytes/s on the wire. Set SLUICE_BENCH_AUDIT=1 (SLUICE_BENCH_AUDIT_SECONDS,
// default 30, the measured time; SLUICE_BENCH_AUDIT_PARTITIONS, default 12).
func TestBenchAuditOverhead(t *testing.T) {
	if os.Getenv("SLUICE_BENCH_AUDIT") == "" {
		t.Skip("a benchmark: set SLUICE_BENCH_AUDIT=1")
	}
	secs, partitions := 30, 12
	if v, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_AUDIT_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	if v, err := strconv.Atoi(os.Getenv("SLUICE_BENCH_AUDIT_PARTITIONS")); err == nil && v > 0 {
		partitions = v
	}
	window := time.Duration(secs) * time.Second
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sluice-io/sluice/cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := freeport.ForTest(t, "127.0.0.1")
	serve := exec.Command(bin, "serve", "--data-dir", filepath.Join(dir, "data"), "--listen", addr, "--http-listen", freeport.ForTest(t, "127.0.0.1"))
	serveLog, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer serveLog.Close()
	serve.Stderr = serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { serve.Process.Signal(syscall.SIGTERM); serve.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*window+time.Minute)
	defer cancel()
	admin, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	for {
		if _, err := kadm.NewClient(admin).CreateTopic(ctx, int32(partitions), 1, nil, DefaultTopic); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("create the audit topic: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the broker is starting
	}
	admin.Close()

	// The broker idle, for its own CPU without the auditor.
	idle := min(window, 10*time.Second)
	b0 := procCPU(t, serve.Process.Pid)
	time.Sleep(idle)
	brokerIdle := procCPU(t, serve.Process.Pid) - b0

	var bytes byteCount
	a, err := New(ctx, Options{NewClient: func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.WithHooks(&bytes)}, opts...)...)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Start(ctx)
	time.Sleep(3 * time.Second) // connections, first metadata
	s0, b1, w0, r0 := selfCPU(t), procCPU(t, serve.Process.Pid), bytes.w.Load(), bytes.r.Load()
	seen0 := a.Report().Brokers[0].Seen
	time.Sleep(window)
	self, broker := selfCPU(t)-s0, procCPU(t, serve.Process.Pid)-b1
	w, r := bytes.w.Load()-w0, bytes.r.Load()-r0
	rep := a.Report()
	br := rep.Brokers[0]
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sec := window.Seconds()
	brokerExtra := broker.Seconds()/sec - brokerIdle.Seconds()/idle.Seconds()
	t.Logf("audit overhead, %d partitions, interval %s, %s measured: auditor CPU %.2f%% of a core, broker CPU +%.2f%% of a core (idle %.2f%%), "+
		"wire %.0f B/s written + %.0f B/s read (%.0f B per heartbeat), %.1f heartbeats/s seen, latency p50 %s p99 %s, lost %d, live heap of the test process %.1f MiB",
		partitions, DefaultInterval, window, 100*self.Seconds()/sec, 100*brokerExtra, 100*brokerIdle.Seconds()/idle.Seconds(),
		float64(w)/sec, float64(r)/sec, float64(w+r)/float64(br.Seen-seen0), float64(br.Seen-seen0)/sec,
		br.Latency(0.5), br.Latency(0.99), br.Missing(), float64(ms.HeapAlloc)/(1<<20))
}
