// Package kv is `sluice kv`: a topic, compacted or not, used as a key-value
// store. Reads scan the topic from its start to the end offsets it has when
// the command starts and build the latest value of each key in memory (a
// tombstone, a record with a null value, removes the key); writes produce
// one record, to the partition of the key's hash, with acks=all.
package kv

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// Command returns `sluice kv` and its subcommands.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Use a (compacted) topic as a key-value store: get, put, delete, scan",
		Long: `Use a topic as a key-value store, the latest record of each key being its
value. A topic with cleanup.policy=compact keeps that value forever and drops
the older ones; any topic works, but reads get slower as it grows.

get and scan read every partition from its start to the end offset it has when
the command starts (no consumer group), and keep the latest record of each key
in memory; a tombstone (a record with a null value) deletes the key. put and
delete produce one record with acks=all to the partition the key's hash picks
(murmur2, as Kafka's Java client and franz-go do), so a key always lands in the
same partition, and the record there is the key's value. A key with no record
in that partition (produced by a client with another partitioner) is looked up
in the others: the record with the latest timestamp wins.`,
		Example: `  sluice topic create users -p 3 -c cleanup.policy=compact
  sluice kv put users alice '{"plan":"pro"}'
  sluice kv get users alice
  sluice kv scan users --prefix al -o json
  sluice kv delete users alice`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(getCommand(), putCommand(), deleteCommand(), scanCommand())
	return cmd
}

// Output formats of get besides the table and JSON.
const outputValue = "value"

// GetOptions are the flags of `sluice kv get`.
type GetOptions struct {
	clientopts.Common
	Topic, Key string
	Output     string // value (the default), table or json
}

func getCommand() *cobra.Command {
	o := GetOptions{}
	cmd := &cobra.Command{
		Use:   "get TOPIC KEY",
		Short: "Print the latest value of a key",
		Long: `Print KEY's latest value in TOPIC and a newline. It exits with an error when
the key was never written or its latest record is a tombstone.

-o table or -o json print the value with its partition, offset, timestamp and
headers (json: null when null; value_base64 when not UTF-8).`,
		Example: `  sluice kv get users alice
  sluice kv get users alice -o json
  sluice kv get users alice > alice.json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic, o.Key = args[0], args[1]
			return RunGet(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	cmd.Flags().StringVarP(&o.Output, "output", "o", outputValue, "output format: value, table or json")
	return cmd
}

// ErrNotFound is what RunGet's error is (errors.Is) for a key that has no
// value.
var ErrNotFound = errors.New("key not found")

type notFound struct{ msg string }

func (e notFound) Error() string        { return e.msg }
func (e notFound) Is(target error) bool { return target == ErrNotFound }

// RunGet prints the key's latest value, or fails with ErrNotFound.
func RunGet(ctx context.Context, o GetOptions) error {
	switch o.Output {
	case "", outputValue, clientopts.OutputTable, clientopts.OutputJSON:
	default:
		return fmt.Errorf("-o %q: use value, table or json", o.Output)
	}
	key := []byte(o.Key)
	ix, err := load(ctx, o.Common, o.Topic, func(k []byte) bool { return bytes.Equal(k, key) })
	if err != nil {
		return err
	}
	e := ix.latest(o.Key)
	switch {
	case e == nil:
		return notFound{fmt.Sprintf("%s has no key %s (%s read from %s)", o.Topic, strconv.Quote(o.Key),
			clientopts.Count(ix.records, "record", "records"), clientopts.Count(ix.partitions, "partition", "partitions"))}
	case e.deleted:
		return notFound{fmt.Sprintf("key %s was deleted from %s (tombstone at partition %d, offset %d, %s)",
			strconv.Quote(o.Key), o.Topic, e.partition, e.offset, formatTime(e.timestamp))}
	}
	switch o.Output {
	case clientopts.OutputJSON:
		return clientopts.JSON(o.Stdout(), toJSON(e))
	case clientopts.OutputTable:
		return printTable(o.Stdout(), []*entry{e})
	}
	w := o.Stdout()
	if _, err := w.Write(e.value); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n")
	return err
}

// PutOptions are the flags of `sluice kv put`.
type PutOptions struct {
	clientopts.Common
	Topic, Key string
	Value      string   // "-": all of stdin
	Headers    []string // k=v
}

func putCommand() *cobra.Command {
	o := PutOptions{}
	cmd := &cobra.Command{
		Use:   "put TOPIC KEY VALUE|-",
		Short: "Set a key's value (- reads the value from stdin)",
		Long: `Produce one record with KEY and VALUE to TOPIC, with acks=all, to the partition
of the key's hash. With - as VALUE the value is all of stdin, byte for byte
(binary, newlines and all). The topic must exist.`,
		Example: `  sluice kv put users alice '{"plan":"pro"}'
  sluice kv put users bob - < bob.json
  sluice kv put users carol free -H source=cli -H by=ops`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic, o.Key, o.Value = args[0], args[1], args[2]
			return RunPut(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	cmd.Flags().StringArrayVarP(&o.Headers, "header", "H", nil, "record header k=v, repeatable")
	return cmd
}

// RunPut writes the value.
func RunPut(ctx context.Context, o PutOptions) error {
	var headers []kgo.RecordHeader
	for _, h := range o.Headers {
		k, v, err := clientopts.ParseKV("--header", h)
		if err != nil {
			return err
		}
		headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	value := []byte(o.Value)
	if o.Value == "-" {
		b, err := io.ReadAll(o.Stdin())
		if err != nil {
			return fmt.Errorf("read the value from stdin: %w", err)
		}
		value = b
	}
	r, err := produce(ctx, o.Common, o.Topic, &kgo.Record{Key: []byte(o.Key), Value: value, Headers: headers})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout(), "put %s in %s (partition %d, offset %d, %d bytes)\n", strconv.Quote(o.Key), o.Topic, r.Partition, r.Offset, len(value))
	return nil
}

// DeleteOptions are the flags of `sluice kv delete`.
type DeleteOptions struct {
	clientopts.Common
	Topic, Key string
}

func deleteCommand() *cobra.Command {
	o := DeleteOptions{}
	cmd := &cobra.Command{
		Use:     "delete TOPIC KEY",
		Aliases: []string{"rm", "del"},
		Short:   "Delete a key (write a tombstone)",
		Long: `Produce a tombstone for KEY (a record with a null value) to TOPIC, with
acks=all, to the partition of the key's hash. A compacted topic keeps it for
delete.retention.ms so that readers see the delete, then drops it and every
older record of the key. Deleting a key that has no value is not an error.`,
		Example: `  sluice kv delete users alice
  sluice kv rm users alice --brokers kafka1:9092`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic, o.Key = args[0], args[1]
			return RunDelete(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	return cmd
}

// RunDelete writes a tombstone for the key.
func RunDelete(ctx context.Context, o DeleteOptions) error {
	r, err := produce(ctx, o.Common, o.Topic, &kgo.Record{Key: []byte(o.Key), Value: nil})
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout(), "deleted %s in %s (tombstone at partition %d, offset %d)\n", strconv.Quote(o.Key), o.Topic, r.Partition, r.Offset)
	return nil
}

// produce writes one record with acks=all (and idempotence) to the
// partition of its key's hash.
func produce(ctx context.Context, c clientopts.Common, topic string, r *kgo.Record) (*kgo.Record, error) {
	cl, md, err := c.Connect(ctx, []string{topic},
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RecordDeliveryTimeout(c.Wait()),
		kgo.ProducerBatchMaxBytes(max(int32(len(r.Key)+len(r.Value))+64<<10, 1<<20)))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if _, err := clientopts.Partitions(md, topic); err != nil {
		return nil, err
	}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return nil, fmt.Errorf("produce to %s: %w", topic, err)
	}
	return r, nil
}

// ScanOptions are the flags of `sluice kv scan`.
type ScanOptions struct {
	clientopts.Common
	Topic  string
	Prefix string
	Output string
}

func scanCommand() *cobra.Command {
	o := ScanOptions{}
	cmd := &cobra.Command{
		Use:     "scan TOPIC",
		Aliases: []string{"ls", "list"},
		Short:   "Print every key's latest value, sorted by key",
		Long: `Print every key of TOPIC that has a value (tombstoned keys are left out),
sorted by key, with its partition, offset and timestamp. --prefix keeps the
keys that start with it. A summary goes to stderr.

In the table, keys and values that are not printable UTF-8 are shown quoted
with Go escapes; -o json prints key and value as strings, or key_base64 and
value_base64 when they are not UTF-8, with the headers.`,
		Example: `  sluice kv scan users
  sluice kv scan users --prefix team/ -o json
  sluice kv scan users -o json | jq -r '.[].key'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return RunScan(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	clientopts.AddOutputFlag(cmd.Flags(), &o.Output)
	cmd.Flags().StringVar(&o.Prefix, "prefix", "", "only keys that start with this")
	return cmd
}

// RunScan prints the live keys.
func RunScan(ctx context.Context, o ScanOptions) error {
	if err := clientopts.CheckOutput(o.Output); err != nil {
		return err
	}
	prefix := []byte(o.Prefix)
	ix, err := load(ctx, o.Common, o.Topic, func(k []byte) bool { return bytes.HasPrefix(k, prefix) })
	if err != nil {
		return err
	}
	live := ix.live()
	summary := clientopts.Count(len(live), "key", "keys")
	if o.Prefix != "" {
		summary += " with prefix " + strconv.Quote(o.Prefix)
	}
	summary += fmt.Sprintf(" in %s (%s read from %s", o.Topic, clientopts.Count(ix.records, "record", "records"),
		clientopts.Count(ix.partitions, "partition", "partitions"))
	if ix.keyless > 0 {
		summary += fmt.Sprintf("; %d without a key, left out", ix.keyless)
	}
	fmt.Fprintln(o.Stderr(), summary+")")
	if o.Output == clientopts.OutputJSON {
		out := make([]Entry, 0, len(live))
		for _, e := range live {
			out = append(out, toJSON(e))
		}
		return clientopts.JSON(o.Stdout(), out)
	}
	return printTable(o.Stdout(), live)
}

// Entry is a key's value in -o json.
type Entry struct {
	Key         *string       `json:"key,omitempty"`
	KeyBase64   string        `json:"key_base64,omitempty"`
	Value       *string       `json:"value,omitempty"`
	ValueBase64 string        `json:"value_base64,omitempty"`
	Partition   int32         `json:"partition"`
	Offset      int64         `json:"offset"`
	Timestamp   int64         `json:"timestamp"` // unix milliseconds
	Headers     []EntryHeader `json:"headers"`
}

// EntryHeader is a record header in -o json; Value is null when the
// header's value is null, and unset when it is in ValueBase64.
type EntryHeader struct {
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 string  `json:"value_base64,omitempty"`
}

func toJSON(e *entry) Entry {
	out := Entry{Partition: e.partition, Offset: e.offset, Timestamp: e.timestamp.UnixMilli(), Headers: []EntryHeader{}}
	if utf8.ValidString(e.key) {
		out.Key = &e.key
	} else {
		out.KeyBase64 = base64.StdEncoding.EncodeToString([]byte(e.key))
	}
	if utf8.Valid(e.value) {
		s := string(e.value)
		out.Value = &s
	} else {
		out.ValueBase64 = base64.StdEncoding.EncodeToString(e.value)
	}
	for _, h := range e.headers {
		eh := EntryHeader{Key: h.Key}
		switch {
		case h.Value == nil:
		case utf8.Valid(h.Value):
			s := string(h.Value)
			eh.Value = &s
		default:
			eh.ValueBase64 = base64.StdEncoding.EncodeToString(h.Value)
		}
		out.Headers = append(out.Headers, eh)
	}
	return out
}

func printTable(w io.Writer, es []*entry) error {
	rows := make([][]string, 0, len(es))
	for _, e := range es {
		rows = append(rows, []string{show(e.key), show(string(e.value)), strconv.Itoa(int(e.partition)),
			strconv.FormatInt(e.offset, 10), formatTime(e.timestamp)})
	}
	return clientopts.Table(w, []string{"KEY", "VALUE", "PARTITION", "OFFSET", "TIMESTAMP"}, rows)
}

// show returns s as is when it is printable UTF-8 (spaces allowed, but no
// tabs or newlines, which would break the table), else quoted.
func show(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return strconv.Quote(s)
	}
	return s
}

func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
