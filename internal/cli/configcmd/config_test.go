package configcmd

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

func describeJSON(t *testing.T, addr string, r Resource, all bool) map[string]Described {
	t.Helper()
	c, io := clitest.Common(addr, nil)
	if err := RunDescribe(clitest.Ctx(t), DescribeOptions{Common: c, Resource: r, All: all, Output: "json"}); err != nil {
		t.Fatalf("describe %s: %v", r, err)
	}
	var ds []Described
	if err := json.Unmarshal(io.Out.Bytes(), &ds); err != nil {
		t.Fatalf("describe %s: %v\n%s", r, err, io.Out)
	}
	m := map[string]Described{}
	for _, d := range ds {
		m[d.Key] = d
	}
	return m
}

func str(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestTopicConfigs(t *testing.T) {
	b := clitest.Start(t, map[string]string{"log.segment.bytes": "2000000"})
	ctx := clitest.Ctx(t)
	c, _ := clitest.Common(b.Addr, nil)
	adm, _, err := c.Admin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": kmsg.StringPtr("60000")}, "orders")
	adm.Close()
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	r := Topic("orders")

	// --all: every config, with its value, source and default.
	all := describeJSON(t, b.Addr, r, true)
	if len(all) < 30 {
		t.Fatalf("--all: %d configs", len(all))
	}
	for key, want := range map[string]struct{ value, source, def string }{
		"retention.ms":   {"60000", "DYNAMIC_TOPIC_CONFIG", "log.retention.hours=168"},
		"cleanup.policy": {"delete", "DEFAULT_CONFIG", "delete"},
		"segment.bytes":  {"2000000", "STATIC_BROKER_CONFIG", "1073741824"},
	} {
		d, ok := all[key]
		if !ok || str(d.Value) != want.value || d.Source != want.source || str(d.Default) != want.def {
			t.Errorf("%s: %+v (value %s, default %s), want %+v", key, d, str(d.Value), str(d.Default), want)
		}
	}
	if syn := all["retention.ms"].Synonyms; len(syn) == 0 || syn[0].Source != "DYNAMIC_TOPIC_CONFIG" {
		t.Errorf("retention.ms synonyms: %+v", syn)
	}
	// Without --all: those set somewhere.
	set := describeJSON(t, b.Addr, r, false)
	if len(set) != 2 || set["retention.ms"].Source != "DYNAMIC_TOPIC_CONFIG" || set["segment.bytes"].Source != "STATIC_BROKER_CONFIG" {
		t.Fatalf("without --all: %+v", set)
	}
	c, io := clitest.Common(b.Addr, nil)
	if err := RunDescribe(ctx, DescribeOptions{Common: c, Resource: r}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(io.Out.String()), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "KEY VALUE SOURCE DEFAULT" ||
		strings.Join(strings.Fields(lines[1]), " ") != "retention.ms 60000 DYNAMIC_TOPIC_CONFIG log.retention.hours=168" {
		t.Fatalf("table:\n%s", io.Out)
	}

	// alter: set and delete in one request.
	c, io = clitest.Common(b.Addr, nil)
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: r, Set: []string{"cleanup.policy=compact"}, Delete: []string{"retention.ms"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := io.Out.String(), "altered topic orders: set cleanup.policy=compact, deleted retention.ms\n"; got != want {
		t.Fatalf("alter printed %q, want %q", got, want)
	}
	set = describeJSON(t, b.Addr, r, false)
	if len(set) != 2 || str(set["cleanup.policy"].Value) != "compact" || set["cleanup.policy"].Source != "DYNAMIC_TOPIC_CONFIG" {
		t.Fatalf("after alter: %+v", set)
	}
	// -o json.
	c, io = clitest.Common(b.Addr, nil)
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: r, Set: []string{"retention.ms=1000"}, Output: "json"}); err != nil {
		t.Fatal(err)
	}
	var altered Altered
	if err := json.Unmarshal(io.Out.Bytes(), &altered); err != nil || altered.ResourceType != "topic" || altered.ResourceName != "orders" ||
		len(altered.Set) != 1 || altered.Set[0] != (KV{"retention.ms", "1000"}) || altered.Deleted == nil {
		t.Fatalf("alter -o json: %v\n%s", err, io.Out)
	}

	// Deletes of what is not set fail, and nothing changes.
	for _, tc := range []struct {
		del  string
		want string
	}{
		{"nosuch.key", "--delete nosuch.key: topic orders has no config nosuch.key"},
		{"segment.bytes", "--delete segment.bytes: it is not set on topic orders (its value comes from STATIC_BROKER_CONFIG); nothing to delete"},
	} {
		c, io = clitest.Common(b.Addr, nil)
		err := RunAlter(ctx, AlterOptions{Common: c, Resource: r, Set: []string{"retention.ms=5"}, Delete: []string{tc.del}})
		if err == nil || err.Error() != tc.want || io.Out.Len() != 0 {
			t.Errorf("--delete %s: %v (printed %q), want %q", tc.del, err, io.Out, tc.want)
		}
	}
	if v := str(describeJSON(t, b.Addr, r, false)["retention.ms"].Value); v != "1000" {
		t.Fatalf("retention.ms %s after refused alters", v)
	}

	// Errors.
	c, _ = clitest.Common(b.Addr, nil)
	if err := RunDescribe(ctx, DescribeOptions{Common: c, Resource: Topic("nope")}); err == nil ||
		err.Error() != "topic nope does not exist; create it with `sluice topic create nope`" {
		t.Errorf("describe a missing topic: %v", err)
	}
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: Topic("nope"), Set: []string{"retention.ms=1"}}); err == nil ||
		err.Error() != "topic nope does not exist; create it with `sluice topic create nope`" {
		t.Errorf("alter a missing topic: %v", err)
	}
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: r, Set: []string{"retention.ms=soon"}}); err == nil ||
		!strings.HasPrefix(err.Error(), "alter configs of topic orders: INVALID_CONFIG: ") {
		t.Errorf("alter with a bad value: %v", err)
	}
	for _, o := range []AlterOptions{
		{Resource: r},
		{Resource: r, Set: []string{"novalue"}},
		{Resource: r, Set: []string{"a=1"}, Delete: []string{"a"}},
	} {
		o.Common = c
		if err := RunAlter(ctx, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestBrokerConfigs(t *testing.T) {
	b := clitest.Start(t, map[string]string{"num.partitions": "3"})
	ctx := clitest.Ctx(t)
	r := Resource{Type: kmsg.ConfigResourceTypeBroker, Name: "1"}
	all := describeJSON(t, b.Addr, r, true)
	if d := all["num.partitions"]; str(d.Value) != "3" || d.Source != "STATIC_BROKER_CONFIG" || str(d.Default) != "1" {
		t.Fatalf("num.partitions: %+v", d)
	}
	c, io := clitest.Common(b.Addr, nil)
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: r, Set: []string{"log.retention.ms=3600000"}}); err != nil {
		t.Fatal(err)
	}
	if got := io.Out.String(); got != "altered broker 1: set log.retention.ms=3600000\n" {
		t.Fatalf("printed %q", got)
	}
	d := describeJSON(t, b.Addr, r, false)["log.retention.ms"]
	if str(d.Value) != "3600000" || !strings.HasPrefix(d.Source, "DYNAMIC_") {
		t.Fatalf("log.retention.ms after alter: %+v", d)
	}
	c, _ = clitest.Common(b.Addr, nil)
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: r, Delete: []string{"log.retention.ms"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := describeJSON(t, b.Addr, r, false)["log.retention.ms"]; ok {
		t.Fatal("log.retention.ms still set after --delete")
	}
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: r, Delete: []string{"num.partitions"}}); err == nil ||
		!strings.Contains(err.Error(), "not set on broker 1 (its value comes from STATIC_BROKER_CONFIG)") {
		t.Fatalf("--delete a static config: %v", err)
	}
	if err := RunDescribe(ctx, DescribeOptions{Common: c, Resource: Resource{Type: kmsg.ConfigResourceTypeBroker, Name: "7"}}); err == nil ||
		!strings.HasPrefix(err.Error(), "configs of broker 7: ") {
		t.Fatalf("describe broker 7: %v", err)
	}
	// "broker default": the cluster-wide configs, under a broker's own.
	def, err := parseResource("broker", "default")
	if err != nil {
		t.Fatal(err)
	}
	c, _ = clitest.Common(b.Addr, nil)
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: def, Set: []string{"log.retention.ms=7200000"}}); err != nil {
		t.Fatal(err)
	}
	if d := describeJSON(t, b.Addr, def, false)["log.retention.ms"]; str(d.Value) != "7200000" || d.Source != "DYNAMIC_DEFAULT_BROKER_CONFIG" {
		t.Fatalf("broker default's log.retention.ms: %+v", d)
	}
	if err := RunAlter(ctx, AlterOptions{Common: c, Resource: r, Set: []string{"log.retention.ms=3600000"}}); err != nil {
		t.Fatal(err)
	}
	if d := describeJSON(t, b.Addr, r, false)["log.retention.ms"]; str(d.Value) != "3600000" || d.Source != "DYNAMIC_BROKER_CONFIG" {
		t.Fatalf("broker 1's own log.retention.ms over the default: %+v", d)
	}
}

func TestParseResource(t *testing.T) {
	for _, tc := range []struct {
		kind, name string
		ok         bool
	}{
		{"topic", "orders", true}, {"broker", "1", true}, {"brokers", "2", true},
		{"broker", "default", true}, {"broker", "one", false}, {"group", "g", false}, {"topic", "", false},
	} {
		if _, err := parseResource(tc.kind, tc.name); (err == nil) != tc.ok {
			t.Errorf("%s %q: %v", tc.kind, tc.name, err)
		}
	}
}
