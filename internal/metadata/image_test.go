package metadata

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestTopicIDText(t *testing.T) {
	for range 100 {
		id := newUUID()
		b, err := id.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 22 || string(b) != id.String() {
			t.Fatalf("MarshalText = %q, String = %q", b, id.String())
		}
		var back TopicID
		if err := back.UnmarshalText(b); err != nil || back != id {
			t.Fatalf("UnmarshalText(%q) = %s, %v; want %s", b, back, err, id)
		}
	}

	// JSON shows the Kafka text form.
	id := TopicID{0: 0xff, 15: 0x01}
	b, err := json.Marshal(struct{ ID TopicID }{id})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"ID":"` + id.String() + `"}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}

	for _, bad := range []string{
		"", "short", strings.Repeat("A", 21), strings.Repeat("A", 23), strings.Repeat("A", 24),
		strings.Repeat("A", 21) + "=", strings.Repeat("A", 21) + "+", strings.Repeat("A", 21) + "/",
		// Non-zero unused bits in the last character: not a canonical form.
		strings.Repeat("A", 21) + "B",
	} {
		var id TopicID
		if err := id.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted: %s", bad, id)
		}
	}
}

func TestTopicIDIsZero(t *testing.T) {
	if !(TopicID{}).IsZero() || (TopicID{3: 1}).IsZero() {
		t.Error("IsZero")
	}
	if s := (TopicID{}).String(); s != "AAAAAAAAAAAAAAAAAAAAAA" {
		t.Errorf("zero id = %q", s)
	}
}

func TestValidTopicName(t *testing.T) {
	for _, name := range []string{"a", "A-z_0.9", "...", strings.Repeat("x", 249)} {
		if !validTopicName(name) {
			t.Errorf("%q refused", name)
		}
	}
	for _, name := range []string{"", ".", "..", strings.Repeat("x", 250), "a b", "a/b", "a\\b", "é", "a,b", "a\n"} {
		if validTopicName(name) {
			t.Errorf("%q accepted", name)
		}
	}
}

func TestCloneTopicIsDeep(t *testing.T) {
	orig := &Topic{
		Name:       "t",
		ID:         newUUID(),
		Partitions: newPartitions(0, 2, []int32{1, 2}),
		Configs:    map[string]string{"a": "1"},
	}
	c := cloneTopic(orig)
	c.Partitions[0].Replicas[0] = 9
	c.Partitions[1].ISR[1] = 9
	c.Partitions[0].Leader = 9
	c.Configs["a"] = "2"
	c.Partitions = append(c.Partitions, Partition{ID: 2})
	if orig.Partitions[0].Replicas[0] != 1 || orig.Partitions[1].ISR[1] != 2 || orig.Partitions[0].Leader != 1 ||
		orig.Configs["a"] != "1" || len(orig.Partitions) != 2 {
		t.Errorf("changing a clone changed the original: %+v", orig)
	}
}

func TestShallowCloneMaps(t *testing.T) {
	img := emptyImage()
	c := img.shallowClone()
	c.Brokers[1] = Broker{NodeID: 1}
	c.Topics["t"] = &Topic{}
	c.TopicsByID[TopicID{1}] = &Topic{}
	c.BrokerConfigs["k"] = "v"
	c.PerBrokerConfigs[1] = map[string]string{"k": "v"}
	if len(img.Brokers)+len(img.Topics)+len(img.TopicsByID)+len(img.BrokerConfigs)+len(img.PerBrokerConfigs) != 0 {
		t.Errorf("changing a clone's maps changed the original: %+v", img)
	}
}

func TestNewPartitionsDoNotAlias(t *testing.T) {
	replicas := []int32{3, 4}
	ps := newPartitions(5, 7, replicas)
	if len(ps) != 2 || ps[0].ID != 5 || ps[1].ID != 6 || ps[0].Leader != 3 {
		t.Fatalf("newPartitions = %+v", ps)
	}
	replicas[0] = 99
	ps[0].ISR[1] = 98
	if !slices.Equal(ps[0].Replicas, []int32{3, 4}) || !slices.Equal(ps[1].ISR, []int32{3, 4}) {
		t.Errorf("partitions alias their input or each other: %+v", ps)
	}
}
