package bench

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progressEvery is how often the live line is refreshed.
const progressEvery = 500 * time.Millisecond

// showProgress says whether the live line is wanted: not with --quiet,
// and only when stderr is a terminal.
func (o Options) showProgress() bool {
	if o.Quiet {
		return false
	}
	f, ok := o.Stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// startProgress shows a live bar on stderr of m's records out of total
// (total <= 0: unknown), with the rates of the last interval and the
// latency quantiles so far. The returned func stops and clears it.
func startProgress(o Options, m *meter, label string, total int64, latency bool) (stop func()) {
	if !o.showProgress() {
		return func() {}
	}
	max := total
	if max <= 0 {
		max = -1
	}
	bar := progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(o.Stderr),
		progressbar.OptionSetDescription(label),
		progressbar.OptionSetWidth(20),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(max > 0),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(progressEvery/2),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		lastT, lastN, lastB := time.Now(), int64(0), int64(0)
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				n, b := m.records.Load(), m.bytes.Load()
				s := now.Sub(lastT).Seconds()
				desc := fmt.Sprintf("%s %9.0f rec/s %8.2f MiB/s", label, float64(n-lastN)/s, float64(b-lastB)/(1<<20)/s)
				if latency && m.hist.Count() > 0 {
					desc += fmt.Sprintf("  p50 %.2f p99 %.2f max %.2f ms",
						ms(m.hist.Quantile(0.5)), ms(m.hist.Quantile(0.99)), ms(m.hist.Max()))
				}
				if t := m.txns.Load(); t > 0 {
					desc += fmt.Sprintf("  %d txns", t)
				}
				if e := m.errors.Load(); e > 0 {
					desc += fmt.Sprintf("  %d errors", e)
				}
				lastT, lastN, lastB = now, n, b
				bar.Describe(desc)
				if max > 0 && n >= max {
					n = max - 1 // finishing clears the bar; stop() does that
				}
				bar.Set64(n)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		bar.Exit()
		bar.Clear()
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
