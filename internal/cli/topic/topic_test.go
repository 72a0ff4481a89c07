package topic

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

// kafkaTopicID is a topic id as Kafka's Uuid.toString prints it.
var kafkaTopicID = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

func TestTopicLifecycle(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)

	c, io := clitest.Common(b.Addr, nil)
	if err := RunCreate(ctx, CreateOptions{Common: c, Topics: []string{"orders"}, Partitions: 3, Replicas: 1,
		Configs: []string{"retention.ms=86400000"}}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if got, want := io.Out.String(), "created topic orders (3 partitions, replication factor 1)\n"; got != want {
		t.Fatalf("create printed %q, want %q", got, want)
	}
	c, io = clitest.Common(b.Addr, nil)
	if err := RunCreate(ctx, CreateOptions{Common: c, Topics: []string{"events"}, Partitions: -1, Replicas: -1}); err != nil {
		t.Fatalf("create with broker defaults: %v", err)
	}
	if got, want := io.Out.String(), "created topic events (1 partition, replication factor 1)\n"; got != want {
		t.Fatalf("create printed %q, want %q", got, want)
	}
	c, _ = clitest.Common(b.Addr, nil)
	err := RunCreate(ctx, CreateOptions{Common: c, Topics: []string{"orders"}, Partitions: 1, Replicas: 1})
	// Said once: the code's name and the broker's message, not kerr's
	// description of the code as well.
	if err == nil || err.Error() != "create topic orders: TOPIC_ALREADY_EXISTS: Topic 'orders' already exists." {
		t.Fatalf("create twice: %v", err)
	}
	c, _ = clitest.Common(b.Addr, nil)
	if err := RunCreate(ctx, CreateOptions{Common: c, Topics: []string{"x"}, Partitions: 1, Replicas: 1, Configs: []string{"novalue"}}); err == nil {
		t.Fatal("create with a bad -c: no error")
	}

	// list
	c, io = clitest.Common(b.Addr, nil)
	if err := RunList(ctx, ListOptions{Common: c}); err != nil {
		t.Fatalf("list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(io.Out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || strings.Fields(lines[1])[0] != "events" ||
		strings.Join(strings.Fields(lines[2]), " ") != "orders 3 1" {
		t.Fatalf("list table:\n%s", io.Out)
	}
	c, io = clitest.Common(b.Addr, nil)
	if err := RunList(ctx, ListOptions{Common: c, Output: "json"}); err != nil {
		t.Fatalf("list -o json: %v", err)
	}
	var listed []listedTopic
	if err := json.Unmarshal(io.Out.Bytes(), &listed); err != nil || len(listed) != 2 || listed[1].Name != "orders" || listed[1].Partitions != 3 {
		t.Fatalf("list json %v:\n%s", err, io.Out)
	}
	// Topic ids as Kafka's tools print them: URL-safe base64, no padding.
	if id := listed[1].ID; !kafkaTopicID.MatchString(id) {
		t.Fatalf("topic id %q is not as Kafka prints it", id)
	}
	c, _ = clitest.Common(b.Addr, nil)
	if err := RunList(ctx, ListOptions{Common: c, Output: "yaml"}); err == nil {
		t.Fatal("-o yaml: no error")
	}

	// describe
	describeJSON := func() DescribedTopic {
		t.Helper()
		c, io := clitest.Common(b.Addr, nil)
		if err := RunDescribe(ctx, DescribeOptions{Common: c, Topic: "orders", Output: "json"}); err != nil {
			t.Fatalf("describe: %v", err)
		}
		var d DescribedTopic
		if err := json.Unmarshal(io.Out.Bytes(), &d); err != nil {
			t.Fatalf("describe json: %v\n%s", err, io.Out)
		}
		return d
	}
	d := describeJSON()
	if d.Name != "orders" || len(d.Partitions) != 3 || d.Replicas != 1 || d.ID != listed[1].ID {
		t.Fatalf("describe: %+v", d)
	}
	for i, p := range d.Partitions {
		if p.Partition != int32(i) || p.Leader != 1 || p.LogStartOffset != 0 || p.LogEndOffset != 0 || p.SizeBytes != 0 || p.Error != "" {
			t.Fatalf("partition %d: %+v", i, p)
		}
	}
	if len(d.Configs) != 1 || d.Configs[0].Key != "retention.ms" || *d.Configs[0].Value != "86400000" || d.Configs[0].Source != "DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("non-default configs: %+v", d.Configs)
	}
	c, io = clitest.Common(b.Addr, nil)
	if err := RunDescribe(ctx, DescribeOptions{Common: c, Topic: "orders"}); err != nil {
		t.Fatalf("describe table: %v", err)
	}
	for _, want := range []string{"NAME", "orders", "retention.ms", "86400000", "DYNAMIC_TOPIC_CONFIG", "PARTITION", "LOG-START", "LOG-END", "SIZE"} {
		if !strings.Contains(io.Out.String(), want) {
			t.Fatalf("describe table lacks %q:\n%s", want, io.Out)
		}
	}

	// alter-config
	c, io = clitest.Common(b.Addr, nil)
	if err := RunAlterConfig(ctx, AlterConfigOptions{Common: c, Topic: "orders", Set: []string{"cleanup.policy=compact"},
		Delete: []string{"retention.ms"}}); err != nil {
		t.Fatalf("alter-config: %v", err)
	}
	if got, want := io.Out.String(), "altered topic orders: set cleanup.policy=compact, deleted retention.ms\n"; got != want {
		t.Fatalf("alter-config printed %q, want %q", got, want)
	}
	d = describeJSON()
	if len(d.Configs) != 1 || d.Configs[0].Key != "cleanup.policy" || *d.Configs[0].Value != "compact" {
		t.Fatalf("configs after alter: %+v", d.Configs)
	}
	// Deleting a config that is not set on the topic fails, as kafka-configs
	// does, and changes nothing (the -c with it is not applied either).
	for _, tc := range []struct{ key, want string }{
		{"nosuch.key", "--delete nosuch.key: topic orders has no config nosuch.key"},
		{"retention.ms", "--delete retention.ms: it is not set on topic orders (its value comes from DEFAULT_CONFIG); nothing to delete"},
	} {
		c, io = clitest.Common(b.Addr, nil)
		err := RunAlterConfig(ctx, AlterConfigOptions{Common: c, Topic: "orders", Set: []string{"segment.ms=100000"}, Delete: []string{tc.key}})
		if err == nil || err.Error() != tc.want || io.Out.String() != "" {
			t.Fatalf("--delete %s: %v, printed %q; want error %q", tc.key, err, io.Out, tc.want)
		}
	}
	if d = describeJSON(); len(d.Configs) != 1 {
		t.Fatalf("configs after refused deletes: %+v", d.Configs)
	}
	c, _ = clitest.Common(b.Addr, nil)
	if err := RunAlterConfig(ctx, AlterConfigOptions{Common: c, Topic: "orders", Set: []string{"retention.ms=soon"}}); err == nil ||
		!strings.Contains(err.Error(), "INVALID_CONFIG") {
		t.Fatalf("alter-config with a bad value: %v", err)
	}

	// add-partitions
	c, io = clitest.Common(b.Addr, nil)
	if err := RunAddPartitions(ctx, AddPartitionsOptions{Common: c, Topic: "orders", Num: 2}); err != nil {
		t.Fatalf("add-partitions: %v", err)
	}
	if got, want := io.Out.String(), "added 2 partitions to topic orders: 3 -> 5\n"; got != want {
		t.Fatalf("add-partitions printed %q, want %q", got, want)
	}
	if d = describeJSON(); len(d.Partitions) != 5 {
		t.Fatalf("%d partitions after adding 2 to 3", len(d.Partitions))
	}
	c, io = clitest.Common(b.Addr, nil)
	if err := RunAddPartitions(ctx, AddPartitionsOptions{Common: c, Topic: "orders", Num: 1}); err != nil {
		t.Fatalf("add-partitions: %v", err)
	}
	if got, want := io.Out.String(), "added 1 partition to topic orders: 5 -> 6\n"; got != want {
		t.Fatalf("add-partitions printed %q, want %q", got, want)
	}

	// delete
	c, io = clitest.Common(b.Addr, nil)
	if err := RunDelete(ctx, DeleteOptions{Common: c, Topics: []string{"orders", "events"}}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got, want := io.Out.String(), "deleted topic orders\ndeleted topic events\n"; got != want {
		t.Fatalf("delete printed %q, want %q", got, want)
	}
	c, io = clitest.Common(b.Addr, nil)
	if err := RunList(ctx, ListOptions{Common: c}); err != nil || strings.TrimSpace(io.Out.String()) != "NAME  PARTITIONS  REPLICAS" {
		t.Fatalf("list after delete: %v\n%s", err, io.Out)
	}
}

func TestMissingTopic(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	want := "topic nope does not exist; create it with `sluice topic create nope`"
	c, _ := clitest.Common(b.Addr, nil)
	for name, run := range map[string]func() error{
		"describe": func() error { return RunDescribe(ctx, DescribeOptions{Common: c, Topic: "nope"}) },
		"alter-config": func() error {
			return RunAlterConfig(ctx, AlterConfigOptions{Common: c, Topic: "nope", Set: []string{"retention.ms=1"}})
		},
		"add-partitions": func() error { return RunAddPartitions(ctx, AddPartitionsOptions{Common: c, Topic: "nope", Num: 1}) },
	} {
		if err := run(); err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %q", name, err, want)
		}
	}
	if err := RunDelete(ctx, DeleteOptions{Common: c, Topics: []string{"nope"}}); err == nil || err.Error() != "topic nope does not exist" {
		t.Errorf("delete: %v", err)
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
