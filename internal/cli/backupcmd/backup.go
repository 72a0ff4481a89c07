package backupcmd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
	"github.com/sluice-io/sluice/internal/cli/topicread"
)

// BackupOptions are the flags of `sluice backup`.
type BackupOptions struct {
	clientopts.Common
	Topic string
	To    string // directory, or s3://bucket/prefix
	Force bool   // replace a back-up already in To
	// Incremental adds a back-up of the records after the newest back-up
	// in To, built on it (see backup.ReadChain).
	Incremental bool
	S3          S3Flags
	// Target, when set, is used instead of To.
	Target backup.Target
}

// BackupCommand returns `sluice backup`.
func BackupCommand() *cobra.Command {
	o := BackupOptions{}
	cmd := &cobra.Command{
		Use:   "backup TOPIC --to DIR|s3://bucket/prefix",
		Short: "Write a topic's records and configs to a back-up directory or S3 bucket",
		Long: `Write every record of every partition of TOPIC, from its log start to the end
offset it has when the command starts, to LOCATION (a directory DIR, or
s3://bucket/prefix: see Object storage below): one data file per partition
(keys, values including null ones, headers, timestamps and the original
offsets) and manifest.json (the partition count, the configs that are not at
their default, per partition the offsets read, the record count and the file's
SHA-256). Each file appears only once whole (in a directory: written to a
temporary name, fsynced and renamed, readable by its owner only, mode 0600;
in S3: a multipart upload, completed); the manifest goes last, so a back-up
cut short has none and restore refuses it.

DIR is created if missing and must hold no files unless --force, which
replaces the back-up in it (its manifest.json and partition-*.rec files, and
the incremental back-ups' incr-* files), or --incremental.
Records produced while the back-up runs are not in it. A progress bar goes
to stderr when it is a terminal. The format is described in
internal/backup/format.go.

An s3:// LOCATION must hold no objects directly under the prefix unless
--force.

Consumer groups: the offsets that every consumer group has committed on
TOPIC, read when the command starts (before the end offsets, so that each
points into the back-up or at its end), are in the manifest with their
metadata; restore commits them on the restored topic.

Incremental back-ups: --incremental (or --since-last) adds to LOCATION a
back-up of only the records after the newest back-up already there (full or
incremental), from its end offset per partition (or the log start, if
retention deleted records since) to the end offset TOPIC has now, with the
group offsets of now. Its files are incr-SSSSSS-manifest.json and
incr-SSSSSS-partition-NNNNN.rec (SSSSSS: 1 for the first incremental on a
full back-up, then 2, ...), and its manifest names its base and every back-up
of the chain with their manifests' checksums. restore reads the whole chain.
The base must be a back-up of TOPIC with the same partition count and topic
id, made by this version of sluice (format version 2); otherwise take a full
back-up. A full back-up with --force replaces the chain. Run one back-up at a
time into a location: two at once write the same names, and restore refuses
what they leave (the files' checksums do not match).
` + s3Help,
		Example: `  sluice backup users --to /backups/users-2024-05-01
  sluice backup orders --to ./orders.bak --brokers kafka1:9092
  sluice backup users --to /backups/users --force
  sluice backup users --to /backups/users --incremental
  AWS_PROFILE=backup sluice backup users --to s3://my-backups/users/2024-05-01 --region eu-west-1
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... sluice backup users --to s3://backups/users --endpoint http://127.0.0.1:9000`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.SetStreams(cmd)
			o.Topic = args[0]
			return RunBackup(cmd.Context(), o)
		},
	}
	clientopts.AddFlags(cmd.Flags(), &o.Common)
	cmd.Flags().StringVar(&o.To, "to", "", "directory to write the back-up to (created if missing), or s3://bucket/prefix")
	cmd.Flags().BoolVar(&o.Force, "force", false, "replace a back-up that is already in the directory or under the prefix")
	cmd.Flags().BoolVar(&o.Incremental, "incremental", false, "back up only the records after the newest back-up in the location, as the next link of its chain")
	cmd.Flags().BoolVar(&o.Incremental, "since-last", false, "the same as --incremental")
	addS3Flags(cmd.Flags(), &o.S3)
	return cmd
}

func (o BackupOptions) target(ctx context.Context) (backup.Target, error) {
	if o.Target != nil {
		return o.Target, nil
	}
	if o.To == "" {
		return nil, errors.New("--to DIR or --to s3://bucket/prefix: say where to write the back-up")
	}
	if backup.IsS3(o.To) {
		return s3Target(ctx, o.To, o.S3)
	}
	return backup.NewDir(o.To), nil
}

// RunBackup writes the back-up and prints a summary.
func RunBackup(ctx context.Context, o BackupOptions) error {
	tg, err := o.target(ctx)
	if err != nil {
		return err
	}
	if o.Incremental && o.Force {
		return errors.New("--incremental and --force: --incremental adds to the back-ups in the location, --force replaces them; choose one")
	}
	existing, err := tg.List()
	if err != nil {
		return fmt.Errorf("back-up %s: %w", tg, err)
	}
	var chain []*backup.Manifest
	if o.Incremental {
		chain, err = backup.ReadChain(tg, -1)
		if err != nil {
			if errors.Is(err, backup.ErrNoBackup) {
				return fmt.Errorf("--incremental: %s holds no back-up to build on; take a full back-up first (without --incremental)", tg)
			}
			return fmt.Errorf("--incremental: back-up %s: %w", tg, err)
		}
		base := chain[len(chain)-1]
		switch {
		case base.Version < 2:
			return fmt.Errorf("--incremental: the back-up in %s has format version %d, which has no id to build on; take a full back-up (without --incremental) into a new location", tg, base.Version)
		case base.Topic != o.Topic:
			return fmt.Errorf("--incremental: the back-up in %s is of topic %s, not %s", tg, base.Topic, o.Topic)
		case base.Sequence >= backup.MaxSequence:
			return fmt.Errorf("--incremental: %s already holds %d incremental back-ups, the most; take a full back-up into a new location", tg, base.Sequence)
		}
	} else if len(existing) > 0 && !o.Force {
		shown := strings.Join(existing[:min(len(existing), 3)], ", ")
		if len(existing) > 3 {
			shown += ", ..."
		}
		return fmt.Errorf("%s is not empty (%s); back up into an empty or new directory or prefix, use --incremental to add to the back-up in it, or use --force to replace it", tg, shown)
	}

	cl, md, err := o.Connect(ctx, []string{o.Topic})
	if err != nil {
		return err
	}
	defer cl.Close()
	parts, err := clientopts.Partitions(md, o.Topic)
	if err != nil {
		return err
	}
	var topicID string
	for _, t := range md.Topics {
		if t.Topic != nil && *t.Topic == o.Topic {
			topicID = clientopts.TopicID(t.TopicID)
		}
	}
	actx, cancel := context.WithTimeout(ctx, o.Wait())
	defer cancel()
	adm := kadm.NewClient(cl)
	tc, err := describeConfigs(actx, adm, o.Topic)
	if err != nil {
		return err
	}
	// The groups first: each committed offset is then at most the end
	// offset read next, so it points into the back-up or at its end.
	groups, err := fetchGroups(actx, adm, o.Topic)
	if err != nil {
		return err
	}
	ranges, err := topicread.Ranges(actx, cl, o.Topic, parts)
	if err != nil {
		return err
	}
	if chain != nil {
		if err := sinceBase(o.Topic, topicID, chain[len(chain)-1], parts, ranges); err != nil {
			return fmt.Errorf("--incremental: %w; take a full back-up (without --incremental) into a new location", err)
		}
	}
	return o.write(ctx, cl, tg, existing, chain, parts, ranges, tc, topicID, groups)
}

// sinceBase makes ranges start where base ended, and refuses a topic that
// is not the one base was made of.
func sinceBase(topic, topicID string, base *backup.Manifest, parts []int32, ranges map[int32]topicread.Range) error {
	if base.TopicID != "" && topicID != "" && base.TopicID != topicID {
		return fmt.Errorf("topic %s has id %s, the back-up in the location was made of id %s (deleted and re-created since?)", topic, topicID, base.TopicID)
	}
	if len(parts) != int(base.Partitions) {
		return fmt.Errorf("topic %s has %s, the back-up in the location %d", topic, clientopts.Count(len(parts), "partition", "partitions"), base.Partitions)
	}
	for _, p := range parts {
		r, end := ranges[p], base.Files[p].EndOffset
		if r.End < end {
			return fmt.Errorf("partition %d of %s ends at offset %d, before the back-up in the location, which ends at %d (deleted and re-created since?)", p, topic, r.End, end)
		}
		r.Start = max(r.Start, end)
		ranges[p] = r
	}
	return nil
}

func (o BackupOptions) write(ctx context.Context, cl *kgo.Client, tg backup.Target, existing []string, chain []*backup.Manifest, parts []int32,
	ranges map[int32]topicread.Range, tc *topicConfigs, topicID string, groups []backup.Group) error {
	// Replacing: the old manifests go first, so that a run cut short
	// leaves no back-up that looks whole.
	seq := 0
	if chain != nil {
		seq = chain[len(chain)-1].Sequence + 1
	} else {
		for _, name := range existing {
			if backup.IsChainFile(name) && strings.HasSuffix(name, backup.ManifestName) {
				if err := tg.Remove(name); err != nil {
					return fmt.Errorf("back-up %s: %w", tg, err)
				}
			}
		}
	}
	var total int64
	for _, r := range ranges {
		total += max(r.End-r.Start, 0)
	}
	bar := newProgress(o.Stderr(), total, "backup "+o.Topic)
	defer bar.done()
	now := time.Now()
	id, err := backup.NewID(now)
	if err != nil {
		return err
	}
	m := &backup.Manifest{Topic: o.Topic, TopicID: topicID, CreatedAt: now.UTC().Format(time.RFC3339Nano),
		Partitions: int32(len(parts)), CleanupPolicy: tc.effective["cleanup.policy"], TimestampType: tc.effective["message.timestamp.type"],
		Configs: tc.nonDefault, ConfigSources: tc.sources, ID: id, Sequence: seq, Groups: groups}
	for _, l := range chain {
		m.Chain = append(m.Chain, backup.LinkTo(l))
	}
	if len(m.Chain) > 0 {
		m.Base = &m.Chain[len(m.Chain)-1]
	}
	if m.CleanupPolicy == "" {
		m.CleanupPolicy = "delete"
	}
	if m.TimestampType == "" {
		m.TimestampType = "CreateTime"
	}
	written := map[string]bool{}
	var bytes int64
	for _, p := range parts {
		if int(p) != len(m.Files) {
			return fmt.Errorf("topic %s: partitions are not numbered 0 to %d", o.Topic, len(parts)-1)
		}
		f, err := o.writePartition(ctx, cl, tg, backup.ChainDataFileName(seq, p), p, ranges[p], bar)
		if err != nil {
			return interrupted(ctx, err)
		}
		m.Files = append(m.Files, f)
		m.Records += f.Records
		bytes += f.Bytes
		written[f.Name] = true
	}
	// Data files of a replaced back-up that this one does not have.
	if chain == nil {
		for _, name := range existing {
			if backup.IsChainFile(name) && !strings.HasSuffix(name, backup.ManifestName) && !written[name] {
				if err := tg.Remove(name); err != nil {
					return fmt.Errorf("back-up %s: %w", tg, err)
				}
			}
		}
	}
	name := backup.ChainManifestName(seq)
	if err := backup.WriteManifestAs(tg, name, m); err != nil {
		return fmt.Errorf("back-up %s: %s: %w", tg, name, err)
	}
	bar.done()
	kind := "backed up"
	if seq > 0 {
		kind = fmt.Sprintf("incremental back-up %d (on %s): backed up", seq, m.Base.Manifest)
	}
	withGroups := ""
	if len(groups) > 0 {
		withGroups = ", the offsets of " + clientopts.Count(len(groups), "consumer group", "consumer groups")
	}
	fmt.Fprintf(o.Stdout(), "%s %s of %s (%s, cleanup.policy %s, %s%s) to %s\n",
		kind, clientopts.Count(m.Records, "record", "records"), o.Topic, clientopts.Count(len(parts), "partition", "partitions"),
		m.CleanupPolicy, clientopts.Count(bytes, "byte", "bytes"), withGroups, tg)
	return nil
}

func (o BackupOptions) writePartition(ctx context.Context, cl *kgo.Client, tg backup.Target, name string, p int32, r topicread.Range, bar *progress) (backup.File, error) {
	w, err := tg.Create(name)
	if err != nil {
		return backup.File{}, fmt.Errorf("back-up %s: %s: %w", tg, name, err)
	}
	fw, err := backup.NewFileWriter(w, p)
	if err == nil {
		err = topicread.Read(ctx, cl, o.Topic, map[int32]topicread.Range{p: r}, func(kr *kgo.Record) error {
			if err := fw.Write(toBackup(kr)); err != nil {
				return fmt.Errorf("back-up %s: %s: %w", tg, name, err)
			}
			bar.add(1)
			return nil
		})
	}
	var wr backup.Written
	if err == nil {
		wr, err = fw.Finish()
	}
	if err != nil {
		backup.Abort(w)
		return backup.File{}, err
	}
	if err := w.Close(); err != nil {
		return backup.File{}, fmt.Errorf("back-up %s: %s: %w", tg, name, err)
	}
	return backup.File{Partition: p, Name: name, StartOffset: r.Start, EndOffset: r.End, FirstOffset: wr.FirstOffset,
		LastOffset: wr.LastOffset, Records: wr.Records, Bytes: wr.Bytes, SHA256: wr.SHA256}, nil
}
