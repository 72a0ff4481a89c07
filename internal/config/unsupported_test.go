package config

import (
	"errors"
	"strings"
	"testing"
)

// TestUnsupportedBrokerConfigs: a broker config Sluice does not act on
// accepts its default only, written any way its type allows, as a static
// or a dynamic value; anything else is refused naming the config and why.
// On main min.insync.replicas=2, log.preallocate=true and the rest were
// accepted and ignored.
func TestUnsupportedBrokerConfigs(t *testing.T) {
	other := map[Type]string{TypeBoolean: "true", TypeInt: "12345", TypeLong: "12345", TypeShort: "123", TypeString: "x"}
	n := 0
	for _, d := range BrokerDefs() {
		if d.Unsupported == "" {
			continue
		}
		n++
		v := other[d.Type]
		if !d.NullDefault && sameValue(d.Type, v, d.Default) {
			v = "false"
		}
		err := ValidateBrokerConfigs(map[string]string{d.Name: v})
		if !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), d.Name) || !strings.Contains(err.Error(), d.Unsupported) {
			t.Errorf("%s=%s: got %v, want ErrInvalidValue naming it and why", d.Name, v, err)
		}
		if d.NullDefault {
			continue
		}
		for _, def := range []string{d.Default, " " + d.Default + " ", strings.ToUpper(d.Default)} {
			if err := ValidateBrokerConfigs(map[string]string{d.Name: def}); err != nil {
				t.Errorf("%s=%q (the default): %v", d.Name, def, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no Unsupported broker configs")
	}
	for _, tc := range []struct{ name, v string }{{"transaction.state.log.min.isr", "02"}, {"fetch.max.bytes", "57671680"}, {"log.preallocate", "False"}} {
		if err := ValidateBrokerConfigs(map[string]string{tc.name: tc.v}); err != nil {
			t.Errorf("%s=%s is the default: %v", tc.name, tc.v, err)
		}
	}
	for _, tc := range []struct{ name, v, hint string }{
		{"transaction.state.log.min.isr", "3", "only its default, 2, is accepted"},
		{"log.roll.jitter.ms", "0", "leave it unset"},
	} {
		if err := ValidateBrokerConfigs(map[string]string{tc.name: tc.v}); err == nil || !strings.Contains(err.Error(), tc.hint) {
			t.Errorf("%s=%s: got %v, want %q", tc.name, tc.v, err, tc.hint)
		}
	}
}

func TestConnectionConfigDefaults(t *testing.T) {
	for name, want := range map[string]string{
		"max.connections":                  "4096",
		"max.connections.per.ip":           "1000",
		"max.connections.per.ip.overrides": "",
		"connections.max.idle.ms":          "600000",
		"max.broker.partitions":            "100000",
	} {
		d, ok := BrokerDef(name)
		if !ok || d.Default != want || d.NullDefault {
			t.Errorf("%s: default %q (ok=%v), want %q", name, d.Default, ok, want)
		}
	}
	for _, tc := range []struct{ name, v string }{
		{"connections.max.idle.ms", "0"}, {"connections.max.idle.ms", "-2"},
		{"max.connections", "0"}, {"max.connections.per.ip", "-1"}, {"max.broker.partitions", "0"},
	} {
		if err := ValidateBrokerConfigs(map[string]string{tc.name: tc.v}); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s=%s: %v, want ErrInvalidValue", tc.name, tc.v, err)
		}
	}
}

func TestParseConnectionOverrides(t *testing.T) {
	good := map[string]map[string]int{
		"":                           {},
		"  ":                         {},
		"hostName:100,127.0.0.1:200": {"hostName": 100, "127.0.0.1": 200},
		" a : 1 , b:0 ":              {"a": 1, "b": 0},
		"::1:5,fe80::1%eth0:2":       {"::1": 5, "fe80::1%eth0": 2}, // split at the last ':'
		"a:1,a:2":                    {"a": 2},
	}
	for v, want := range good {
		got, err := ParseConnectionOverrides(v)
		if err != nil || len(got) != len(want) {
			t.Errorf("%q: %v, %v; want %v", v, got, err, want)
			continue
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%q: %s=%d, want %d", v, k, got[k], n)
			}
		}
	}
	for _, v := range []string{"a", ":5", "a:", "a:x", "a:-1", "a:1,", "a b:1", "a:2147483648"} {
		if _, err := ParseConnectionOverrides(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}
