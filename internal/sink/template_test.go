package sink_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-io/sluice/internal/sink"
	"github.com/sluice-io/sluice/internal/sink/format"
)

func TestTemplateRender(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 5*3600)) // 2026-01-01 22:04 UTC
	rec := func(v string) *format.Record {
		return &format.Record{Topic: "orders", Partition: 7, Offset: 9, Timestamp: ts, Value: []byte(v)}
	}
	for _, c := range []struct{ tmpl, value, want string }{
		{"", `{}`, ""},
		{"dt={{date}}/{{hour}}", `{}`, "dt=2026-01-01/22"},
		{"{{year}}/{{month}}/{{day}}/{{hour}}{{minute}}", `{}`, "2026/01/01/2204"},
		{"t={{topic}}/p={{partition}}", `{}`, "t=orders/p=7"},
		{"c={{field:country}}", `{"country":"fr"}`, "c=fr"},
		{"c={{field:country}}", `{"other":1}`, "c=" + sink.Missing},
		{"c={{field:country}}", `not json`, "c=" + sink.Missing},
		{"c={{field:country}}", `["country"]`, "c=" + sink.Missing},
		{"n={{field:n}}", `{"n":12.5}`, "n=12.5"},
		{"c={{field:country}}", `{"country":"../../etc"}`, "c=.._.._etc"},
		{"{{field:country}}", `{"country":".."}`, sink.Empty},
		{"{{field:country}}", `{"country":""}`, sink.Empty},
		{"{{field:country}}", `{"country":"a/b c\u00e9"}`, "a_b_c__"},
		{"{{field:o}}", `{"o":{"a":1}}`, "__a__1_"},
	} {
		tm, err := sink.ParseTemplate(c.tmpl)
		if err != nil {
			t.Fatalf("%q: %v", c.tmpl, err)
		}
		if got := tm.Render(rec(c.value)); got != c.want {
			t.Errorf("%q with %s: %q, want %q", c.tmpl, c.value, got, c.want)
		}
	}
	long, _ := sink.ParseTemplate("{{field:s}}")
	if got := long.Render(rec(`{"s":"` + strings.Repeat("a", 1000) + `"}`)); len(got) != 128 {
		t.Errorf("a 1000-byte field renders as %d bytes, want the 128 of the limit", len(got))
	}
}

func TestTemplateRefused(t *testing.T) {
	for _, s := range []string{"{{hour", "{{nope}}", "a//b", "/a", "a/", "..", ".", "a b", "{{field:}}", "x/../y"} {
		if _, err := sink.ParseTemplate(s); err == nil {
			t.Errorf("%q: parsed, want an error", s)
		}
	}
}
