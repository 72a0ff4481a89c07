package cluster

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/cli/clitest"
)

func TestInfo(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	c, io := clitest.Common(b.Addr, nil)
	if err := RunInfo(ctx, InfoOptions{Common: c, Output: "json", Version: "v9.9.9"}); err != nil {
		t.Fatal(err)
	}
	var info Info
	if err := json.Unmarshal(io.Out.Bytes(), &info); err != nil {
		t.Fatalf("%v\n%s", err, io.Out)
	}
	if info.ClusterID == "" || info.Controller != 1 || info.Version != "v9.9.9" || len(info.Brokers) != 1 {
		t.Fatalf("info: %+v", info)
	}
	br := info.Brokers[0]
	if br.ID != 1 || br.Host+":"+itoa(br.Port) != b.Addr || br.Error != "" {
		t.Fatalf("broker: %+v (addr %s)", br, b.Addr)
	}
	if len(br.LogDirs) != 1 || br.LogDirs[0].Dir == "" || br.LogDirs[0].Error != "" || br.LogDirsError != "" {
		t.Fatalf("log dirs: %+v (%s)", br.LogDirs, br.LogDirsError)
	}
	apis := map[string]API{}
	for _, a := range br.APIs {
		apis[a.Name] = a
	}
	if a := apis["Produce"]; a.Key != 0 || a.Max < 3 {
		t.Fatalf("Produce: %+v in %+v", a, br.APIs)
	}
	if a, ok := apis["ApiVersions"]; !ok || a.Key != 18 || a.Min != 0 {
		t.Fatalf("ApiVersions: %+v", a)
	}

	c, io = clitest.Common(b.Addr, nil)
	if err := RunInfo(ctx, InfoOptions{Common: c, Version: "dev"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CLUSTER", info.ClusterID, "CONTROLLER", "SLUICE-VERSION  dev (this binary)", "1*", "APIS OF BROKER 1", "Produce", "Fetch", "DescribeCluster", "LOG DIRS", info.Brokers[0].LogDirs[0].Dir, "online"} {
		if !strings.Contains(io.Out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, io.Out)
		}
	}
}

// TestInfoLogDirInError: a log dir a broker reports in error (offline or
// full) shows with its error; on main cluster info showed no log dirs.
func TestInfoLogDirInError(t *testing.T) {
	c, io := clitest.Common("127.0.0.1:1", nil)
	info := Info{ClusterID: "c", Controller: 1, Version: "dev", Brokers: []Broker{{ID: 1, Host: "h", Port: 9092,
		LogDirs: []LogDir{{Dir: "/data", Error: kerr.KafkaStorageError.Error(), TotalBytes: 100, UsableBytes: 0}}}}}
	if err := printInfo(InfoOptions{Common: c}, info); err != nil {
		t.Fatal(err)
	}
	if out := io.Out.String(); !strings.Contains(out, "/data") || !strings.Contains(out, "KAFKA_STORAGE_ERROR") {
		t.Fatalf("no log dir in error in:\n%s", out)
	}
}

func TestUnreachable(t *testing.T) {
	addr := clitest.DeadAddr(t)
	c, _ := clitest.Common(addr, nil)
	err := RunInfo(clitest.Ctx(t), InfoOptions{Common: c})
	if err == nil || !strings.Contains(err.Error(), "cannot reach broker at "+addr) {
		t.Fatalf("got %v", err)
	}
}

func itoa(n int32) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestCordonUndrain: `cluster cordon` cordons a broker (cluster info shows
// it, in JSON and in the table), `cluster undrain` lifts it and points to
// balance; an unknown broker is refused.
func TestCordonUndrain(t *testing.T) {
	b := clitest.Start(t, nil)
	ctx := clitest.Ctx(t)
	cordoned := func() Broker {
		t.Helper()
		c, io := clitest.Common(b.Addr, nil)
		if err := RunInfo(ctx, InfoOptions{Common: c, Output: "json"}); err != nil {
			t.Fatal(err)
		}
		var info Info
		if err := json.Unmarshal(io.Out.Bytes(), &info); err != nil || len(info.Brokers) != 1 {
			t.Fatalf("%v\n%s", err, io.Out)
		}
		return info.Brokers[0]
	}
	if br := cordoned(); br.Cordoned || br.CordonedError != "" {
		t.Fatalf("a new broker is cordoned: %+v", br)
	}

	c, io := clitest.Common(b.Addr, nil)
	if err := RunCordon(ctx, c, []int32{1}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(io.Out.String(), "Broker 1 cordoned") {
		t.Errorf("cordon said:\n%s", io.Out)
	}
	if br := cordoned(); !br.Cordoned {
		t.Fatalf("after cordon: %+v", br)
	}
	c, io = clitest.Common(b.Addr, nil)
	if err := RunInfo(ctx, InfoOptions{Common: c}); err != nil {
		t.Fatal(err)
	}
	if out := io.Out.String(); !strings.Contains(out, "CORDONED") || !strings.Contains(out, "yes") {
		t.Errorf("the table does not show broker 1 cordoned:\n%s", out)
	}

	c, io = clitest.Common(b.Addr, nil)
	if err := RunUndrain(ctx, c, []int32{1}); err != nil {
		t.Fatal(err)
	}
	if out := io.Out.String(); !strings.Contains(out, "Broker 1 uncordoned") || !strings.Contains(out, "sluice cluster balance") {
		t.Errorf("undrain said:\n%s", out)
	}
	if br := cordoned(); br.Cordoned {
		t.Fatalf("after undrain: %+v", br)
	}

	c, _ = clitest.Common(b.Addr, nil)
	if err := RunCordon(ctx, c, []int32{9}); err == nil || !strings.Contains(err.Error(), "not in the cluster") {
		t.Errorf("cordon of unknown broker 9: %v", err)
	}
}
