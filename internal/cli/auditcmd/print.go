package auditcmd

import (
	"fmt"
	"io"
	"time"

	"github.com/sluice-io/sluice/internal/audit"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// row is one line of the report, a broker's or a partition's.
type row struct {
	Broker          *int32  `json:"broker,omitempty"`
	Partitions      []int32 `json:"partitions,omitempty"` // of a broker: those it leads
	Partition       *int32  `json:"partition,omitempty"`
	Leader          *int32  `json:"leader,omitempty"`
	Sent            uint64  `json:"sent"`
	Acked           uint64  `json:"acked"`
	Seen            uint64  `json:"seen"`
	Lost            uint64  `json:"lost"`    // counted lost during the run
	Late            uint64  `json:"late"`    // of them, consumed later
	Missing         uint64  `json:"missing"` // lost - late: still missing at the end
	Duplicated      uint64  `json:"duplicated"`
	OutOfOrder      uint64  `json:"out_of_order"`
	ProduceErrors   uint64  `json:"produce_errors"`
	Unexpected      uint64  `json:"unexpected"`
	Undecodable     uint64  `json:"undecodable"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	SinceLastSeenMs float64 `json:"since_last_seen_ms"`
}

func newRow(s *audit.Stats, since time.Duration) row {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return row{Sent: s.Sent, Acked: s.Acked, Seen: s.Seen, Lost: s.Lost, Late: s.Late, Missing: s.Missing(),
		Duplicated: s.Duplicated, OutOfOrder: s.OutOfOrder, ProduceErrors: s.ProduceErrors, Unexpected: s.Unexpected,
		Undecodable: s.Undecodable, P50Ms: ms(s.Latency(0.5)), P99Ms: ms(s.Latency(0.99)), MaxMs: ms(s.MaxLatency()),
		SinceLastSeenMs: ms(since)}
}

type jsonOut struct {
	Instance   string   `json:"instance"`
	Topic      string   `json:"topic"`
	ElapsedMs  float64  `json:"elapsed_ms"`
	OK         bool     `json:"ok"`
	Problems   []string `json:"problems"`
	Brokers    []row    `json:"brokers"`
	Partitions []row    `json:"partitions"`
}

func jsonReport(r audit.Report, problems []string) jsonOut {
	out := jsonOut{Instance: r.Instance, Topic: r.Topic, ElapsedMs: float64(r.Elapsed.Milliseconds()), OK: len(problems) == 0,
		Problems: problems, Brokers: []row{}, Partitions: []row{}}
	if out.Problems == nil {
		out.Problems = []string{}
	}
	for _, b := range r.Brokers {
		x := newRow(&b.Stats, b.SinceLastSeen)
		x.Broker, x.Partitions = &b.Broker, b.Partitions
		out.Brokers = append(out.Brokers, x)
	}
	for _, p := range r.Partitions {
		x := newRow(&p.Stats, p.SinceLastSeen)
		x.Partition, x.Leader = &p.Partition, &p.Leader
		out.Partitions = append(out.Partitions, x)
	}
	return out
}

var columns = []string{"SENT", "SEEN", "LOST", "DUPLICATED", "OUT-OF-ORDER", "PRODUCE-ERRORS", "P50", "P99", "LAST-SEEN"}

func cells(s *audit.Stats, since time.Duration) []string {
	last := "never"
	if s.Seen > 0 {
		last = round(since).String() + " ago"
	}
	lat := func(q float64) string {
		if s.Seen == 0 {
			return "-"
		}
		return round(s.Latency(q)).String()
	}
	return []string{fmt.Sprint(s.Sent), fmt.Sprint(s.Seen), fmt.Sprint(s.Missing()), fmt.Sprint(s.Duplicated),
		fmt.Sprint(s.OutOfOrder), fmt.Sprint(s.ProduceErrors), lat(0.5), lat(0.99), last}
}

// printTable prints the brokers' lines, then the partitions'.
func printTable(w io.Writer, r audit.Report) error {
	var rows [][]string
	for _, b := range r.Brokers {
		ps := clientopts.Int32s(b.Partitions)
		if ps == "" {
			ps = "none"
		}
		rows = append(rows, append([]string{leaderName(b.Broker), ps}, cells(&b.Stats, b.SinceLastSeen)...))
	}
	if err := clientopts.Table(w, append([]string{"BROKER", "PARTITIONS"}, columns...), rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	rows = rows[:0]
	for _, p := range r.Partitions {
		rows = append(rows, append([]string{fmt.Sprint(p.Partition), leaderName(p.Leader)}, cells(&p.Stats, p.SinceLastSeen)...))
	}
	if err := clientopts.Table(w, append([]string{"PARTITION", "LEADER"}, columns...), rows); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\ntopic %s, instance %s, %s\n", r.Topic, r.Instance, round(r.Elapsed))
	return err
}
