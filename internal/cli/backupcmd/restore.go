package backupcmd

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/cli/topicread"
)

// RestoreOptions are the flags of `sluice restore`.
type RestoreOptions struct {
	clientopts.Common
	Topic   string // the topic to restore into
	From    string // directory, or s3://bucket/prefix
	Force   bool
	S3      S3Flags
	Configs []string // key=value for a topic that restore creates; key= leaves key out
	// Sequence, when set, is the back-up of the chain to restore (0 the
	// full one, n the nth incremental); nil is the newest.
	Sequence *int
	// NoGroupOffsets leaves the consumer groups' offsets out; Groups,
	// when set, is a regular expression that selects the groups whose
	// offsets are restored; ActiveGroups is what to do with a group that
	// has members on the target: fail (the default) or skip.
	NoGroupOffsets bool
	Groups         string
	ActiveGroups   string
	// Source, when set, is used instead of From.
	Source backup.Target
}

// RestoreCommand returns `sluice restore`.
func RestoreCommand() *cobra.Command {
	o := RestoreOptions{}
	seq := 0
	cmd := &cobra.Command{
		Use:   "restore TOPIC --from DIR|s3://bucket/prefix",
		Short: "Restore a back-up into a topic (created when missing)",
		Long: `Restore the back-up in LOCATION (a directory DIR, or s3://bucket/prefix: see
Object storage below), written by sluice backup, into TOPIC, whose name
may differ from the backed-up topic's. Every file of the back-up is read and
checked first (manifest checksum, each data file's size, SHA-256, structure and
record count): a damaged or partial back-up is refused, naming the file, before
anything is written. A missing TOPIC is created with the back-up's partition
count and configs (-c changes or, with key=, leaves out a config); an existing
one must have the back-up's partition count. Each record goes to the partition
it was in, with its key, value (null stays null), headers and timestamp; its
offset is the target's next one.

Compacted topics (the back-up's cleanup.policy contains compact): TOPIC is
read first, then restore writes tombstones for the keys that TOPIC has in a
partition and the back-up does not, then the back-up's records of every key
whose latest record (value, headers, timestamp) differs from TOPIC's; keys
that are already the same are not written again. Afterwards every partition
holds the back-up's key-value content, whatever TOPIC held before.

Other topics: TOPIC must be empty, or hold the first records of the back-up
(a restore cut short), which are completed. A TOPIC with other records is
refused, since appending would mix or duplicate records; --force appends the
back-up's records to it anyway.

Run twice, restore is idempotent: the second run finds nothing to write
(except after --force on a non-compacted topic). A progress bar goes to
stderr when it is a terminal.

Incremental back-ups (sluice backup --incremental): restore takes the newest
back-up in LOCATION and every back-up it is built on, oldest first, after
checking that they form one chain (each link present, unmodified since the
next was made on it: the manifests' checksums; contiguous offsets) and every
data file of every link; a broken chain is refused before anything is
written. --sequence N restores the chain only up to back-up N (0: the full
one).

Consumer groups: after the records, restore commits on TOPIC the offsets
that the back-up recorded for each consumer group (the newest link's), unless
--no-group-offsets; --groups REGEX restores only the groups it matches.
Restore writes records at new offsets, so each committed offset C (the next
record the group would read) is translated: to the offset in TOPIC of the
first backed-up record with original offset >= C that TOPIC holds after the
restore (written now, or found already there by a restore cut short), or to
TOPIC's end offset when there is none. A consumer of the group then resumes
at exactly the records it had not read. (Compacted back-ups: records that
restore leaves out, of keys already up to date in TOPIC, deleted or without
a key, are not among them.) A group with members on the target cluster is
not overwritten: restore refuses before writing anything, naming the group,
or with --active-groups=skip leaves that group out with a warning. Each run
commits the offsets again: run twice, it moves back a group that consumed
from TOPIC in between.
` + s3Help,
		Example: `  sluice restore users --from /backups/users-2024-05-01
  sluice restore users-copy --from /backups/users-2024-05-01 --brokers dr-kafka:9092
  sluice restore orders --from ./orders.bak -c retention.ms=-1
  sluice restore orders --from ./orders.bak --force
  sluice restore orders --from ./orders.bak --groups '^billing-' --active-groups=skip
  sluice restore orders --from ./orders.bak --sequence 0 --no-group-offsets
  sluice restore users --from s3://my-backups/users/2024-05-01 --region eu-west-1
  sluice restore users --from s3://backups/users --endpoint http://127.0.0.1:9000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			if cmd.Flags().Changed("sequence") {
				o.Sequence = &seq
			}
			return RunRestore(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	cmd.Flags().StringVar(&o.From, "from", "", "directory holding the back-up, or s3://bucket/prefix")
	cmd.Flags().BoolVar(&o.Force, "force", false, "restore a non-compacted back-up into a topic that holds other records, appending")
	cmd.Flags().StringArrayVarP(&o.Configs, "config", "c", nil, "config key=value for a topic that restore creates (key=: leave it out), repeatable")
	cmd.Flags().IntVar(&seq, "sequence", 0, "restore the chain up to this back-up (0: the full one, N: the Nth incremental); default the newest")
	cmd.Flags().BoolVar(&o.NoGroupOffsets, "no-group-offsets", false, "do not restore the consumer groups' committed offsets")
	cmd.Flags().StringVar(&o.Groups, "groups", "", "restore the offsets only of the consumer groups that this regular expression matches")
	cmd.Flags().StringVar(&o.ActiveGroups, "active-groups", activeFail, "a group with members on the target: fail (write nothing) or skip (leave it out, with a warning)")
	addS3Flags(cmd.Flags(), &o.S3)
	return cmd
}

func (o RestoreOptions) source(ctx context.Context) (backup.Target, error) {
	if o.Source != nil {
		return o.Source, nil
	}
	if o.From == "" {
		return nil, errors.New("--from DIR or --from s3://bucket/prefix: say where the back-up is")
	}
	if backup.IsS3(o.From) {
		return s3Target(ctx, o.From, o.S3)
	}
	st, err := os.Stat(o.From)
	if err != nil {
		return nil, fmt.Errorf("--from %s: %w", o.From, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("--from %s: not a directory", o.From)
	}
	return backup.NewDir(o.From), nil
}

// digest identifies a record's content without its key: value (null
// apart from empty) and headers; the timestamp is kept beside it.
type digest [sha256.Size]byte

// state is a key's latest record in a partition.
type state struct {
	digest  digest
	ts      int64
	deleted bool
	records int64 // back-up only: how many records the key has
}

func (s state) same(t state, withTS bool) bool {
	if s.deleted || t.deleted {
		return s.deleted && t.deleted
	}
	return s.digest == t.digest && (!withTS || s.ts == t.ts)
}

func writeBytes(h hash.Hash, b []byte) {
	var n [9]byte
	if b == nil {
		n[0] = 1
		h.Write(n[:1])
		return
	}
	binary.BigEndian.PutUint64(n[1:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

func contentDigest(r *backup.Record, withKey, withTS bool) digest {
	h := sha256.New()
	if withKey {
		writeBytes(h, r.Key)
	}
	writeBytes(h, r.Value)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(r.Headers)))
	h.Write(n[:])
	for _, hd := range r.Headers {
		writeBytes(h, []byte(hd.Key))
		writeBytes(h, hd.Value)
	}
	if withTS {
		binary.BigEndian.PutUint64(n[:], uint64(r.Timestamp))
		h.Write(n[:])
	}
	var d digest
	h.Sum(d[:0])
	return d
}

type keyIndex map[int32]map[string]state

func (ix keyIndex) add(p int32, r *backup.Record, count bool) {
	m := ix[p]
	if m == nil {
		m = map[string]state{}
		ix[p] = m
	}
	k := string(r.Key)
	s := state{deleted: r.Value == nil, ts: r.Timestamp, records: m[k].records}
	if !s.deleted {
		s.digest = contentDigest(r, false, false)
	}
	if count {
		s.records++
	}
	m[k] = s
}

type tombstone struct {
	partition int32
	key       []byte
}

// plan is what restore writes.
type plan struct {
	compacted  bool
	tombstones []tombstone
	keys       map[int32]map[string]bool // compacted: the keys to write
	skip       map[int32]int64           // otherwise: records already in the partition
	skipAt     map[int32][]int64         // and their offsets there
	perPart    map[int32]int64           // the back-up's records per partition, whole chain
	records    int64                     // back-up records to write
	upToDate   int64                     // keys (compacted) or records already there
	keyless    int64                     // compacted: records without a key, not written
}

// RunRestore restores the back-up and prints a summary.
func RunRestore(ctx context.Context, o RestoreOptions) error {
	src, err := o.source(ctx)
	if err != nil {
		return err
	}
	overrides := map[string]*string{}
	for _, kv := range o.Configs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("-c %q: write it as key=value, or key= to leave the config out", kv)
		}
		if v == "" {
			overrides[k] = nil
		} else {
			overrides[k] = kmsg.StringPtr(v)
		}
	}
	refuse := func(err error) error {
		return fmt.Errorf("back-up %s: %w; nothing was written", src, err)
	}

	var groupRE *regexp.Regexp
	if o.Groups != "" {
		if groupRE, err = regexp.Compile(o.Groups); err != nil {
			return fmt.Errorf("--groups %q: %w", o.Groups, err)
		}
	}
	if o.ActiveGroups == "" {
		o.ActiveGroups = activeFail
	}
	if o.ActiveGroups != activeFail && o.ActiveGroups != activeSkip {
		return fmt.Errorf("--active-groups %q: want %s or %s", o.ActiveGroups, activeFail, activeSkip)
	}
	seq := -1
	if o.Sequence != nil {
		if seq = *o.Sequence; seq < 0 || seq > backup.MaxSequence {
			return fmt.Errorf("--sequence %d: want 0 (the full back-up) to %d", seq, backup.MaxSequence)
		}
	}

	// Everything in the back-up is read and checked before anything else.
	chain, err := backup.ReadChain(src, seq)
	if err != nil {
		return refuse(err)
	}
	m := chain[len(chain)-1]
	compacted := m.Compacted()
	bix := keyIndex{}
	var maxRecord, keyless, total int64
	perPart := map[int32]int64{}
	err = backup.VerifyChain(src, chain, func(_ int, p int32, r *backup.Record) error {
		total++
		perPart[p]++
		size := int64(len(r.Key) + len(r.Value))
		for _, h := range r.Headers {
			size += int64(len(h.Key) + len(h.Value))
		}
		maxRecord = max(maxRecord, size)
		if compacted {
			if r.Key == nil {
				keyless++
				return nil
			}
			bix.add(p, r, true)
		}
		return nil
	})
	if err != nil {
		return refuse(err)
	}

	cl, md, err := o.Connect(ctx, []string{o.Topic},
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(min(max(maxRecord+64<<10, 1<<20), 256<<20))),
		kgo.MaxBufferedRecords(4096))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	exists, nparts, err := topicState(md, o.Topic)
	if err != nil {
		return err
	}
	withTS := m.TimestampType != "LogAppendTime"
	pl := &plan{compacted: compacted, keyless: keyless, keys: map[int32]map[string]bool{}, skip: map[int32]int64{},
		skipAt: map[int32][]int64{}, perPart: perPart}
	var groups []backup.Group
	if !o.NoGroupOffsets {
		groups = selectGroups(m.Groups, groupRE)
	}
	if exists {
		if nparts != int(m.Partitions) {
			return fmt.Errorf("topic %s has %s and the back-up %d: each record goes back to its partition, so they must match; restore into a new topic instead",
				o.Topic, clientopts.Count(nparts, "partition", "partitions"), m.Partitions)
		}
		actx, cancel := context.WithTimeout(ctx, o.Wait())
		tc, err := describeConfigs(actx, adm, o.Topic)
		cancel()
		if err != nil {
			return err
		}
		if tc.effective["message.timestamp.type"] == "LogAppendTime" {
			withTS = false
		}
		if compacted && !hasCompact(tc.effective["cleanup.policy"]) {
			fmt.Fprintf(o.Stderr(), "note: the back-up is of a compacted topic and %s has cleanup.policy %s: it will keep superseded records\n",
				o.Topic, tc.effective["cleanup.policy"])
		}
		if err := o.planExisting(ctx, cl, src, chain, bix, withTS, pl); err != nil {
			return interrupted(ctx, err)
		}
	} else {
		o.planEmpty(total, bix, pl)
	}
	if len(groups) > 0 {
		actx, cancel := context.WithTimeout(ctx, o.Wait())
		active, err := activeGroups(actx, adm, groups)
		cancel()
		if err != nil {
			return err
		}
		if len(active) > 0 && o.ActiveGroups == activeFail {
			return activeError(active)
		}
		if len(active) > 0 {
			fmt.Fprintf(o.Stderr(), "warning: consumer %s active on the target cluster: %s; not restoring their offsets (--active-groups=skip)\n",
				pluralGroups(len(active)), activeList(active))
			groups = slices.DeleteFunc(groups, func(g backup.Group) bool { _, ok := active[g.Group]; return ok })
		}
	}
	var tr *translator
	if len(groups) > 0 {
		tr = newTranslator(groups)
	}

	if !exists {
		if err := o.create(ctx, adm, m, overrides); err != nil {
			return err
		}
	}
	written, err := o.produce(ctx, cl, src, chain, pl, tr)
	if err != nil {
		return interrupted(ctx, fmt.Errorf("restore into %s: %w (after writing %s; run restore again to complete it)", o.Topic, err, clientopts.Count(written, "record", "records")))
	}
	var groupLines []string
	if len(groups) > 0 {
		actx, cancel := context.WithTimeout(ctx, o.Wait())
		defer cancel()
		ends, err := adm.ListEndOffsets(actx, o.Topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return fmt.Errorf("restore into %s: the records are restored, but not the consumer groups' offsets: end offsets: %w; run restore again", o.Topic, err)
		}
		endOf := map[int32]int64{}
		ends.Each(func(l kadm.ListedOffset) { endOf[l.Partition] = l.Offset })
		if groupLines, err = commitGroups(actx, adm, o.Topic, groups, tr, endOf); err != nil {
			return fmt.Errorf("restore into %s: the records are restored, but not every consumer group's offsets: %w", o.Topic, err)
		}
	}

	kind := "compacted"
	if !compacted {
		kind = "cleanup.policy " + m.CleanupPolicy
	}
	records := func(n int64) string { return clientopts.Count(n, "record", "records") }
	from := ""
	if len(chain) > 1 {
		from = fmt.Sprintf(", a chain of %s", clientopts.Count(len(chain), "back-up", "back-ups"))
	}
	msg := fmt.Sprintf("restored %s (%s, %s, %s%s) from %s into %s: wrote %s", m.Topic, kind,
		clientopts.Count(m.Partitions, "partition", "partitions"), records(total), from, src, o.Topic, records(pl.records))
	if compacted {
		msg += fmt.Sprintf(" and %s; %s already up to date", clientopts.Count(len(pl.tombstones), "tombstone", "tombstones"),
			clientopts.Count(pl.upToDate, "key was", "keys were"))
		if pl.keyless > 0 {
			msg += fmt.Sprintf("; %s without a key left out (a compacted topic refuses them)", records(pl.keyless))
		}
	} else {
		msg += fmt.Sprintf("; %s already there", clientopts.Count(pl.upToDate, "was", "were"))
	}
	if len(groups) > 0 {
		msg += fmt.Sprintf("; committed the offsets of %s", clientopts.Count(len(groups), "consumer group", "consumer groups"))
	}
	fmt.Fprintln(o.Stdout(), msg)
	for _, l := range groupLines {
		fmt.Fprintln(o.Stdout(), l)
	}
	return nil
}

// planEmpty plans a restore into a topic that does not exist yet.
func (o RestoreOptions) planEmpty(total int64, bix keyIndex, pl *plan) {
	if !pl.compacted {
		pl.records = total
		return
	}
	for p, keys := range bix {
		for k, s := range keys {
			if s.deleted {
				pl.upToDate++ // absent already
				continue
			}
			if pl.keys[p] == nil {
				pl.keys[p] = map[string]bool{}
			}
			pl.keys[p][k] = true
			pl.records += s.records
		}
	}
}

// planExisting reads the target topic and plans what makes it hold the
// back-up's content; it refuses (writing nothing) when that cannot be done.
func (o RestoreOptions) planExisting(ctx context.Context, cl *kgo.Client, src backup.Target, chain []*backup.Manifest, bix keyIndex, withTS bool, pl *plan) error {
	m := chain[len(chain)-1]
	parts := make([]int32, m.Partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	lctx, cancel := context.WithTimeout(ctx, o.Wait())
	ranges, err := topicread.Ranges(lctx, cl, o.Topic, parts)
	cancel()
	if err != nil {
		return err
	}
	if pl.compacted {
		tix := keyIndex{}
		err := topicread.Read(ctx, cl, o.Topic, ranges, func(r *kgo.Record) error {
			if r.Key != nil {
				tix.add(r.Partition, toBackup(r), false)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, p := range slices.Sorted(maps.Keys(tix)) {
			for _, k := range slices.Sorted(maps.Keys(tix[p])) {
				if _, ok := bix[p][k]; !ok && !tix[p][k].deleted {
					pl.tombstones = append(pl.tombstones, tombstone{partition: p, key: []byte(k)})
				}
			}
		}
		for p, keys := range bix {
			for k, s := range keys {
				t, ok := tix[p][k]
				if !ok {
					t = state{deleted: true}
				}
				if s.same(t, withTS) {
					pl.upToDate++
					continue
				}
				if pl.keys[p] == nil {
					pl.keys[p] = map[string]bool{}
				}
				pl.keys[p][k] = true
				pl.records += s.records
			}
		}
		return nil
	}

	// Not compacted: compare each partition's records with the back-up's.
	have := map[int32][]digest{}
	haveAt := map[int32][]int64{}
	err = topicread.Read(ctx, cl, o.Topic, ranges, func(r *kgo.Record) error {
		have[r.Partition] = append(have[r.Partition], contentDigest(toBackup(r), true, withTS))
		haveAt[r.Partition] = append(haveAt[r.Partition], r.Offset)
		return nil
	})
	if err != nil {
		return err
	}
	var conflicts []string
	for _, f := range m.Files {
		p := f.Partition
		records := pl.perPart[p]
		target := have[p]
		var i int64
		diverge := int64(-1)
		if int64(len(target)) > records {
			diverge = records
		}
		if len(target) > 0 && diverge < 0 {
			err := backup.ReadPartition(src, chain, p, func(r *backup.Record) error {
				if i < int64(len(target)) && diverge < 0 && contentDigest(r, true, withTS) != target[i] {
					diverge = i
				}
				i++
				return nil
			})
			if err != nil {
				return fmt.Errorf("back-up %s: %w; nothing was written", src, err)
			}
		}
		switch {
		case diverge >= 0:
			conflicts = append(conflicts, fmt.Sprintf("partition %d (%d records; record %d differs from the back-up's)", p, len(target), diverge))
			pl.records += records
		default:
			pl.skip[p] = int64(len(target))
			pl.skipAt[p] = haveAt[p]
			pl.upToDate += int64(len(target))
			pl.records += records - int64(len(target))
		}
	}
	if len(conflicts) > 0 && !o.Force {
		return fmt.Errorf("topic %s already holds records that are not the back-up's: %s; restoring would mix or duplicate records, "+
			"so nothing was written. Restore into a new or empty topic, or use --force to append the back-up's records anyway",
			o.Topic, strings.Join(conflicts, ", "))
	}
	return nil
}

// create creates the target topic with the back-up's partition count and
// configs, and waits until every partition has a leader.
func (o RestoreOptions) create(ctx context.Context, adm *kadm.Client, m *backup.Manifest, overrides map[string]*string) error {
	configs := map[string]*string{}
	for k, v := range m.Configs {
		configs[k] = kmsg.StringPtr(v)
	}
	if _, ok := configs["cleanup.policy"]; !ok && m.CleanupPolicy != "" {
		configs["cleanup.policy"] = kmsg.StringPtr(m.CleanupPolicy)
	}
	for k, v := range overrides {
		if v == nil {
			delete(configs, k)
		} else {
			configs[k] = v
		}
	}
	cctx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	resp, err := adm.CreateTopic(cctx, m.Partitions, -1, configs, o.Topic)
	if err == nil {
		err = clientopts.KafkaErr(resp.Err, resp.ErrMessage)
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", o.Topic, err)
	}
	var shown []string
	for _, k := range slices.Sorted(maps.Keys(configs)) {
		shown = append(shown, k+"="+*configs[k])
	}
	fmt.Fprintf(o.Stderr(), "created topic %s (%s; %s)\n", o.Topic, clientopts.Count(m.Partitions, "partition", "partitions"), strings.Join(shown, ", "))
	for {
		tds, err := adm.ListTopics(cctx, o.Topic)
		if err == nil && tds.Has(o.Topic) && tds[o.Topic].Err == nil && len(tds[o.Topic].Partitions) == int(m.Partitions) {
			ready := true
			for _, pd := range tds[o.Topic].Partitions {
				ready = ready && pd.Leader >= 0 && pd.Err == nil
			}
			if ready {
				return nil
			}
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("topic %s was created but has no leader for every partition after %s", o.Topic, o.Wait())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// produce writes the plan: tombstones first, then the back-up's records,
// each to the partition it was in. It returns how many were written.
//
// tr, if not nil, is told the offset in the topic of each backed-up record
// that the topic holds afterwards: written now, or already there.
func (o RestoreOptions) produce(ctx context.Context, cl *kgo.Client, src backup.Target, chain []*backup.Manifest, pl *plan, tr *translator) (int64, error) {
	bar := newProgress(o.Stderr(), int64(len(pl.tombstones))+pl.records, "restore "+o.Topic)
	defer bar.done()
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu      sync.Mutex
		first   error
		written int64
		wg      sync.WaitGroup
	)
	send := func(r *kgo.Record, at func(int64)) error {
		if err := context.Cause(pctx); err != nil {
			return err
		}
		wg.Add(1)
		cl.Produce(pctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err == nil && at != nil {
				at(r.Offset)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("partition %d: %w", r.Partition, err)
					cancel(first)
				}
				return
			}
			written++
			bar.add(1)
		})
		return nil
	}
	finish := func() error {
		err := cl.Flush(pctx)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		if first != nil {
			return first
		}
		return err
	}
	count := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return written
	}

	now := time.Now()
	for _, t := range pl.tombstones {
		if err := send(&kgo.Record{Topic: o.Topic, Partition: t.partition, Key: t.key, Timestamp: now}, nil); err != nil {
			finish()
			return count(), err
		}
	}
	if err := finish(); err != nil {
		return count(), err
	}
	for p := range chain[len(chain)-1].Partitions {
		nothing := pl.compacted && len(pl.keys[p]) == 0 || !pl.compacted && pl.skip[p] >= pl.perPart[p]
		if nothing && (tr == nil || pl.compacted) {
			continue
		}
		var i int64
		err := backup.ReadPartition(src, chain, p, func(r *backup.Record) error {
			i++
			if pl.compacted {
				if r.Key == nil || !pl.keys[p][string(r.Key)] {
					return nil
				}
			} else if i <= pl.skip[p] {
				if at := tr.at(p, r.Offset); at != nil {
					at(pl.skipAt[p][i-1])
				}
				return nil
			}
			return send(toProduce(r, o.Topic, p), tr.at(p, r.Offset))
		})
		if err != nil {
			finish()
			return count(), err
		}
	}
	err := finish()
	return count(), err
}
