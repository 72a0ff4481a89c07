package consume

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestFormats(t *testing.T) {
	r := &kgo.Record{Topic: "t", Partition: 2, Offset: 7, Timestamp: time.UnixMilli(1700000000123),
		Key: []byte("k"), Value: []byte("v<&>"), Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}}}
	for _, tc := range []struct{ format, want string }{
		{"%v", "v<&>\n"},
		{"%k:%v", "k:v<&>\n"},
		{`%k:%v\n`, "k:v<&>\n"}, // not doubled
		{`%t|%p|%o|%T|%h|%%|\t|\r|\\|\q`, "t|2|7|1700000000123|a=1,b=|%|\t|\r|\\|\\q\n"},
		{"", "\n"},
		{"json", `{"topic":"t","partition":2,"offset":7,"timestamp":1700000000123,"key":"k","value":"v<&>","headers":[{"key":"a","value":"1"},{"key":"b","value":null}]}` + "\n"},
	} {
		f, err := newFormatter(tc.format)
		if err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		if got := string(f.append(nil, r)); got != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.format, got, tc.want)
		}
	}
	bin := &kgo.Record{Topic: "t", Key: nil, Value: []byte{0xff, 0x00}, Timestamp: time.UnixMilli(0)}
	f, _ := newFormatter("json")
	if got, want := string(f.append(nil, bin)), `{"topic":"t","partition":0,"offset":0,"timestamp":0,"key":null,"value_base64":"/wA=","headers":[]}`+"\n"; got != want {
		t.Errorf("binary:\n got %s\nwant %s", got, want)
	}
	for _, bad := range []string{"%", "%x", "a%"} {
		if _, err := newFormatter(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
