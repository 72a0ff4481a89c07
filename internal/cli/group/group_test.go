package group

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clitest"
	"github.com/sluice-io/sluice/internal/cli/topic"
)

// static are the broker configs of these tests: no wait before the first
// rebalance, and a small offsets topic.
var static = map[string]string{
	"group.initial.rebalance.delay.ms": "0",
	"offsets.topic.num.partitions":     "3",
}

// start starts a broker for a test and returns its address.
var start = func(t *testing.T) string { return clitest.Start(t, static).Addr }

// node is the node id of the broker start starts.
var node int32 = 1

const (
	topicName  = "orders"
	partitions = 3
)

func createTopic(t *testing.T, addr, name string, n int32) {
	t.Helper()
	c, _ := clitest.Common(addr, nil)
	if err := topic.RunCreate(clitest.Ctx(t), topic.CreateOptions{Common: c, Topics: []string{name}, Partitions: n, Replicas: 1}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
}

// produce writes n records with timestamp ts to each partition of the topic.
func produce(t *testing.T, addr string, n int, ts time.Time) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rs []*kgo.Record
	for p := range int32(partitions) {
		for i := range n {
			rs = append(rs, &kgo.Record{Topic: topicName, Partition: p, Timestamp: ts, Value: fmt.Appendf(nil, "%d-%d", p, i)})
		}
	}
	if err := cl.ProduceSync(clitest.Ctx(t), rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func admin(t *testing.T, addr string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// consumer is a member of a group that polls in the background and commits
// only when told to.
type consumer struct {
	cl    *kgo.Client
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	seen  map[int32]int64 // partition -> highest offset polled
	first map[int32]int64 // partition -> lowest offset polled
}

func startConsumer(t *testing.T, addr, group, clientID string) *consumer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ClientID(clientID),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topicName), kgo.DisableAutoCommit(),
		kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(200*time.Millisecond),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	c := &consumer{cl: cl, done: make(chan struct{}), seen: map[int32]int64{}, first: map[int32]int64{}}
	go func() {
		defer close(c.done)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				c.mu.Lock()
				c.seen[r.Partition] = max(c.seen[r.Partition], r.Offset)
				if f, ok := c.first[r.Partition]; !ok || r.Offset < f {
					c.first[r.Partition] = r.Offset
				}
				c.mu.Unlock()
			})
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *consumer) close() {
	c.once.Do(c.cl.Close) // leaves the group
	<-c.done
}

func (c *consumer) polledFrom(p int32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.first[p]; ok {
		return o
	}
	return -1
}

func (c *consumer) polledUpTo(p int32) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.seen[p]; ok {
		return o
	}
	return -1
}

// waitFor polls cond every 50ms for up to 20 seconds.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func describeJSON(t *testing.T, addr, group string) (DescribedGroup, error) {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := RunDescribe(clitest.Ctx(t), DescribeOptions{Common: c, Group: group, Output: "json"}); err != nil {
		return DescribedGroup{}, err
	}
	var d DescribedGroup
	if err := json.Unmarshal(io.Out.Bytes(), &d); err != nil {
		t.Fatalf("describe json: %v\n%s", err, io.Out)
	}
	return d, nil
}

func reset(t *testing.T, addr string, o ResetOptions) (ResetResult, clitest.IO) {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	o.Common, o.Output = c, "json"
	if err := RunReset(clitest.Ctx(t), o); err != nil {
		t.Fatalf("reset %+v: %v", o, err)
	}
	var r ResetResult
	if err := json.Unmarshal(io.Out.Bytes(), &r); err != nil {
		t.Fatalf("reset json: %v\n%s", err, io.Out)
	}
	return r, io
}

// committed is what OffsetFetch answers for the group, per partition.
func committed(t *testing.T, adm *kadm.Client, group string) map[int32]int64 {
	t.Helper()
	fetched, err := adm.FetchOffsets(clitest.Ctx(t), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{} // newer Kafka's answer for an unknown group
	}
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	out := map[int32]int64{}
	fetched.Each(func(r kadm.OffsetResponse) {
		if r.Err != nil {
			t.Fatalf("fetch offset %s/%d: %v", r.Topic, r.Partition, r.Err)
		}
		if r.Topic == topicName && r.At >= 0 {
			out[r.Partition] = r.At
		}
	})
	return out
}

func checkRows(t *testing.T, what string, r ResetResult, old, nw [partitions]int64) {
	t.Helper()
	if len(r.Partitions) != partitions {
		t.Fatalf("%s: %d partitions: %+v", what, len(r.Partitions), r)
	}
	for i, p := range r.Partitions {
		if p.Topic != topicName || p.Partition != int32(i) || p.OldOffset != old[i] || p.NewOffset != nw[i] {
			t.Fatalf("%s: partition %d: %+v, want old %d new %d", what, i, p, old[i], nw[i])
		}
	}
}

func checkCommitted(t *testing.T, what string, adm *kadm.Client, group string, want [partitions]int64) {
	t.Helper()
	got := committed(t, adm, group)
	for p := range int32(partitions) {
		if got[p] != want[p] || len(got) != partitions {
			t.Fatalf("%s: committed %v, want %v", what, got, want)
		}
	}
}

func TestGroupLifecycle(t *testing.T) {
	addr := start(t)
	ctx := clitest.Ctx(t)
	adm := admin(t, addr)
	createTopic(t, addr, topicName, partitions)
	const group = "orders-app"

	// Two members; wait until they share the three partitions.
	c1 := startConsumer(t, addr, group, "consumer-one")
	c2 := startConsumer(t, addr, group, "consumer-two")
	waitFor(t, "a stable group of two members owning every partition", func() (bool, string) {
		d, err := describeJSON(t, addr, group)
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, m := range d.Members {
			for _, tp := range m.Assigned {
				n += len(tp.Partitions)
			}
		}
		return d.State == "Stable" && len(d.Members) == 2 && n == partitions, fmt.Sprintf("%+v", d)
	})

	// Ten records per partition an hour ago, consumed and committed; five
	// more now, consumed but not committed: lag 5 per partition.
	old := time.Now().Add(-2 * time.Hour)
	produce(t, addr, 10, old)
	waitFor(t, "the members to poll offset 9 of every partition", func() (bool, string) {
		for p := range int32(partitions) {
			if max(c1.polledUpTo(p), c2.polledUpTo(p)) != 9 {
				return false, fmt.Sprintf("partition %d", p)
			}
		}
		return true, ""
	})
	for _, c := range []*consumer{c1, c2} {
		if err := c.cl.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	recent := time.Now().Add(-time.Minute)
	produce(t, addr, 5, recent)

	// list
	c, io := clitest.Common(addr, nil)
	if err := RunList(ctx, ListOptions{Common: c}); err != nil {
		t.Fatalf("list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(io.Out.String()), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "GROUP STATE PROTOCOL-TYPE MEMBERS" ||
		strings.Join(strings.Fields(lines[1]), " ") != "orders-app Stable consumer 2" {
		t.Fatalf("list table:\n%s", io.Out)
	}
	c, io = clitest.Common(addr, nil)
	if err := RunList(ctx, ListOptions{Common: c, Output: "json"}); err != nil {
		t.Fatalf("list -o json: %v", err)
	}
	var listed []ListedGroup
	if err := json.Unmarshal(io.Out.Bytes(), &listed); err != nil || len(listed) != 1 ||
		listed[0] != (ListedGroup{Group: group, State: "Stable", ProtocolType: "consumer", Members: 2}) {
		t.Fatalf("list json %v:\n%s", err, io.Out)
	}

	// describe
	d, err := describeJSON(t, addr, group)
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	if d.Group != group || d.State != "Stable" || d.ProtocolType != "consumer" || d.Protocol == "" || d.Coordinator != node ||
		len(d.Members) != 2 || d.TotalLag != 3*5 || len(d.Partitions) != partitions {
		t.Fatalf("describe: %+v", d)
	}
	clients := map[string]string{} // member id -> client id
	for _, m := range d.Members {
		if m.ClientHost == "" || len(m.Assigned) == 0 || m.Assigned[0].Topic != topicName {
			t.Fatalf("member: %+v", m)
		}
		clients[m.MemberID] = m.ClientID
	}
	for i, p := range d.Partitions {
		if p.Topic != topicName || p.Partition != int32(i) || p.CommittedOffset != 10 || p.LogEndOffset != 15 || p.Lag != 5 ||
			clients[p.MemberID] == "" || clients[p.MemberID] != p.ClientID || p.Error != "" {
			t.Fatalf("partition %d: %+v (members %v)", i, p, clients)
		}
	}
	c, io = clitest.Common(addr, nil)
	if err := RunDescribe(ctx, DescribeOptions{Common: c, Group: group}); err != nil {
		t.Fatalf("describe table: %v", err)
	}
	for _, want := range []string{"GROUP", "orders-app", "Stable", "TOTAL-LAG", "15", "MEMBER-ID", "CLIENT-ID", "consumer-one",
		"consumer-two", "ASSIGNED", "orders:", "COMMITTED", "LOG-END", "LAG"} {
		if !strings.Contains(io.Out.String(), want) {
			t.Fatalf("describe table lacks %q:\n%s", want, io.Out)
		}
	}

	// Refused while the group has members.
	c, io = clitest.Common(addr, nil)
	err = RunReset(ctx, ResetOptions{Common: c, Group: group, ToEarliest: true, DryRun: true})
	if err == nil || !strings.Contains(err.Error(), "group orders-app has 2 active member(s)") ||
		!strings.Contains(err.Error(), "stop the group's consumers") || io.Out.Len() != 0 {
		t.Fatalf("reset with members: %v\n%s", err, io.Out)
	}
	c, _ = clitest.Common(addr, nil)
	err = RunDelete(ctx, DeleteOptions{Common: c, Groups: []string{group}})
	if err == nil || !strings.Contains(err.Error(), "NON_EMPTY_GROUP") || !strings.Contains(err.Error(), "stop its consumers") {
		t.Fatalf("delete with members: %v", err)
	}
	checkCommitted(t, "after refused reset", adm, group, [partitions]int64{10, 10, 10})

	// Stop the consumers: the group becomes Empty, offsets stay.
	c1.close()
	c2.close()
	waitFor(t, "the group to become empty", func() (bool, string) {
		d, err := describeJSON(t, addr, group)
		return err == nil && d.State == "Empty" && len(d.Members) == 0, fmt.Sprintf("%+v %v", d, err)
	})
	if d, _ = describeJSON(t, addr, group); d.TotalLag != 15 || d.Partitions[0].MemberID != "" || d.Partitions[0].CommittedOffset != 10 {
		t.Fatalf("describe empty group: %+v", d)
	}

	ten, fifteen := [partitions]int64{10, 10, 10}, [partitions]int64{15, 15, 15}
	zero := [partitions]int64{}

	// --to-earliest: dry run, then for real.
	r, io := reset(t, addr, ResetOptions{Group: group, ToEarliest: true, DryRun: true})
	checkRows(t, "earliest dry run", r, ten, zero)
	if !r.DryRun || !strings.Contains(io.Err.String(), "dry run: nothing committed") {
		t.Fatalf("dry run: %+v, stderr %q", r, io.Err)
	}
	checkCommitted(t, "after a dry run", adm, group, ten)
	r, io = reset(t, addr, ResetOptions{Group: group, ToEarliest: true})
	checkRows(t, "earliest", r, ten, zero)
	if r.DryRun || io.Err.String() != "reset 3 partition(s) of group orders-app\n" {
		t.Fatalf("earliest: %+v, stderr %q", r, io.Err)
	}
	checkCommitted(t, "to earliest", adm, group, zero)

	// --to-latest on a named topic.
	r, _ = reset(t, addr, ResetOptions{Group: group, ToLatest: true, Topics: []string{topicName}, DryRun: true})
	checkRows(t, "latest dry run", r, zero, fifteen)
	checkCommitted(t, "after a dry run", adm, group, zero)
	reset(t, addr, ResetOptions{Group: group, ToLatest: true, Topics: []string{topicName}})
	checkCommitted(t, "to latest", adm, group, fifteen)

	// --to-datetime: between the two batches is offset 10; after both, the end.
	between := old.Add(30 * time.Minute).UTC().Format(time.RFC3339)
	r, _ = reset(t, addr, ResetOptions{Group: group, ToDatetime: between, DryRun: true})
	checkRows(t, "datetime dry run", r, fifteen, ten)
	checkCommitted(t, "after a dry run", adm, group, fifteen)
	reset(t, addr, ResetOptions{Group: group, ToDatetime: between})
	checkCommitted(t, "to datetime", adm, group, ten)
	r, _ = reset(t, addr, ResetOptions{Group: group, ToDatetime: fmt.Sprint(old.UnixMilli() - 1000), DryRun: true})
	checkRows(t, "datetime before everything", r, ten, zero)
	r, _ = reset(t, addr, ResetOptions{Group: group, ToDatetime: time.Now().Add(time.Hour).Format(time.RFC3339), DryRun: true})
	checkRows(t, "datetime after everything", r, ten, fifteen)

	// --to-offset, clamped to the log end.
	r, _ = reset(t, addr, ResetOptions{Group: group, ToOffset: "12", DryRun: true})
	checkRows(t, "offset dry run", r, ten, [partitions]int64{12, 12, 12})
	checkCommitted(t, "after a dry run", adm, group, ten)
	reset(t, addr, ResetOptions{Group: group, ToOffset: "12"})
	checkCommitted(t, "to offset", adm, group, [partitions]int64{12, 12, 12})
	r, io = reset(t, addr, ResetOptions{Group: group, ToOffset: "100"})
	checkRows(t, "offset past the end", r, [partitions]int64{12, 12, 12}, fifteen)
	if !strings.Contains(io.Err.String(), "orders/0: offset 100 is past the log end; using the log end 15") {
		t.Fatalf("clamp warning: %q", io.Err)
	}
	checkCommitted(t, "to offset past the end", adm, group, fifteen)

	// The table output.
	c, io = clitest.Common(addr, nil)
	if err := RunReset(ctx, ResetOptions{Common: c, Group: group, ToOffset: "3", DryRun: true}); err != nil {
		t.Fatalf("reset table: %v", err)
	}
	lines = strings.Split(strings.TrimSpace(io.Out.String()), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "TOPIC PARTITION OLD-OFFSET NEW-OFFSET" ||
		strings.Join(strings.Fields(lines[1]), " ") != "orders 0 15 3" {
		t.Fatalf("reset table:\n%s", io.Out)
	}

	// The group resumes at the reset offsets.
	reset(t, addr, ResetOptions{Group: group, ToOffset: "13"})
	c3 := startConsumer(t, addr, group, "consumer-three")
	waitFor(t, "a new member to resume at offset 13", func() (bool, string) {
		for p := range int32(partitions) {
			if c3.polledFrom(p) != 13 || c3.polledUpTo(p) != 14 {
				return false, fmt.Sprintf("partition %d polled from %d to %d", p, c3.polledFrom(p), c3.polledUpTo(p))
			}
		}
		return true, ""
	})
	c3.close()
	waitFor(t, "the group to become empty", func() (bool, string) {
		d, err := describeJSON(t, addr, group)
		return err == nil && d.State == "Empty", fmt.Sprintf("%+v %v", d, err)
	})

	// delete
	c, io = clitest.Common(addr, nil)
	if err := RunDelete(ctx, DeleteOptions{Common: c, Groups: []string{group}}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if io.Out.String() != "deleted group orders-app\n" {
		t.Fatalf("delete printed %q", io.Out)
	}
	if got := committed(t, adm, group); len(got) != 0 {
		t.Fatalf("offsets after delete: %v", got)
	}
	if _, err := describeJSON(t, addr, group); err == nil || err.Error() != "group orders-app does not exist; `sluice group list` shows the groups" {
		t.Fatalf("describe after delete: %v", err)
	}
	c, _ = clitest.Common(addr, nil)
	err = RunDelete(ctx, DeleteOptions{Common: c, Groups: []string{group}})
	if err == nil || !strings.Contains(err.Error(), "group orders-app does not exist (GROUP_ID_NOT_FOUND)") {
		t.Fatalf("delete twice: %v", err)
	}
	c, io = clitest.Common(addr, nil)
	if err := RunList(ctx, ListOptions{Common: c}); err != nil || strings.Join(strings.Fields(io.Out.String()), " ") != "GROUP STATE PROTOCOL-TYPE MEMBERS" {
		t.Fatalf("list after delete: %v\n%s", err, io.Out)
	}
}

// A group that only ever had offsets committed for it (no members).
func TestGroupWithoutMembers(t *testing.T) {
	addr := start(t)
	ctx := clitest.Ctx(t)
	adm := admin(t, addr)
	createTopic(t, addr, topicName, partitions)
	produce(t, addr, 4, time.Now())

	// A reset with --topic creates the offsets of a group never seen.
	r, _ := reset(t, addr, ResetOptions{Group: "fresh", ToEarliest: true, Topics: []string{topicName}})
	checkRows(t, "reset of a new group", r, [partitions]int64{-1, -1, -1}, [partitions]int64{})
	checkCommitted(t, "new group", adm, "fresh", [partitions]int64{})

	d, err := describeJSON(t, addr, "fresh")
	if err != nil {
		t.Fatalf("describe: %v", err)
	}
	if d.State != "Empty" || len(d.Members) != 0 || d.TotalLag != 3*4 || len(d.Partitions) != partitions ||
		d.Partitions[2] != (PartitionLag{Topic: topicName, Partition: 2, CommittedOffset: 0, LogEndOffset: 4, Lag: 4}) {
		t.Fatalf("describe: %+v", d)
	}
	c, io := clitest.Common(addr, nil)
	if err := RunDescribe(ctx, DescribeOptions{Common: c, Group: "fresh"}); err != nil || !strings.Contains(io.Out.String(), "MEMBERS: none") {
		t.Fatalf("describe table: %v\n%s", err, io.Out)
	}
	c, io = clitest.Common(addr, nil)
	if err := RunList(ctx, ListOptions{Common: c, Output: "json"}); err != nil {
		t.Fatalf("list: %v", err)
	}
	var listed []ListedGroup
	if err := json.Unmarshal(io.Out.Bytes(), &listed); err != nil || len(listed) != 1 || listed[0].Group != "fresh" ||
		listed[0].State != "Empty" || listed[0].Members != 0 {
		t.Fatalf("list json %v:\n%s", err, io.Out)
	}
}

func TestErrors(t *testing.T) {
	addr := start(t)
	ctx := clitest.Ctx(t)
	createTopic(t, addr, topicName, 1)
	c, _ := clitest.Common(addr, nil)

	if _, err := describeJSON(t, addr, "nope"); err == nil || err.Error() != "group nope does not exist; `sluice group list` shows the groups" {
		t.Errorf("describe unknown group: %v", err)
	}
	err := RunReset(ctx, ResetOptions{Common: c, Group: "nope", ToLatest: true})
	if err == nil || err.Error() != "group nope has no committed offsets to reset; name the topics to reset with --topic" {
		t.Errorf("reset unknown group without --topic: %v", err)
	}
	err = RunReset(ctx, ResetOptions{Common: c, Group: "nope", ToLatest: true, Topics: []string{"missing"}})
	if err == nil || err.Error() != "topic missing does not exist; create it with `sluice topic create missing`" {
		t.Errorf("reset a missing topic: %v", err)
	}
	err = RunDelete(ctx, DeleteOptions{Common: c, Groups: []string{"nope", "nada"}})
	if err == nil || !strings.Contains(err.Error(), "group nope does not exist (GROUP_ID_NOT_FOUND)") ||
		!strings.Contains(err.Error(), "group nada does not exist (GROUP_ID_NOT_FOUND)") {
		t.Errorf("delete unknown groups: %v", err)
	}

	for _, tc := range []struct {
		o    ResetOptions
		want string
	}{
		{ResetOptions{Group: "g"}, "say where to reset to: give one of --to-earliest, --to-latest, --to-datetime and --to-offset"},
		{ResetOptions{Group: "g", ToEarliest: true, ToOffset: "3"}, "give only one of --to-earliest, --to-latest, --to-datetime and --to-offset"},
		{ResetOptions{Group: "g", ToOffset: "-2"}, `--to-offset "-2": want an offset, 0 or more`},
		{ResetOptions{Group: "g", ToDatetime: "yesterday"}, `--to-datetime "yesterday": want RFC 3339 (2024-05-01T12:00:00Z) or unix milliseconds`},
		{ResetOptions{Group: "g", ToLatest: true, Topics: []string{"orders:0"}}, `--topic "orders:0": give just the topic's name; every partition of it is reset`},
		{ResetOptions{Group: "g", ToLatest: true, Output: "yaml"}, `-o "yaml": use table or json`},
	} {
		tc.o.Common = c
		if err := RunReset(ctx, tc.o); err == nil || err.Error() != tc.want {
			t.Errorf("reset %+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestUnreachable(t *testing.T) {
	addr := clitest.DeadAddr(t)
	c, _ := clitest.Common(addr, nil)
	err := RunList(clitest.Ctx(t), ListOptions{Common: c})
	if err == nil || !strings.HasPrefix(err.Error(), "cannot reach broker at "+addr+": ") ||
		!strings.HasSuffix(err.Error(), "is `sluice serve` running?") {
		t.Fatalf("got %v", err)
	}
}

func TestCommandTree(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(Command())

	addr := start(t)
	run := func(args ...string) (string, error) {
		cmd := Command()
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		var out bytes.Buffer
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		err := cmd.ExecuteContext(clitest.Ctx(t))
		return out.String(), err
	}
	for _, sub := range []string{"list", "describe", "reset-offsets", "delete"} {
		out, err := run(sub, "--help")
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--brokers") {
			t.Errorf("%s --help: %v\n%s", sub, err, out)
		}
	}
	if out, err := run("list", "-b", addr, "-o", "json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("list -o json: %v\n%s", err, out)
	}
	if _, err := run("reset-offsets", "g", "-b", addr, "--to-earliest", "--to-latest"); err == nil ||
		!strings.Contains(err.Error(), "give only one of") {
		t.Errorf("reset-offsets with two targets: %v", err)
	}
}
