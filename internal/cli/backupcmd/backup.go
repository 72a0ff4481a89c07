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
	S3    S3Flags
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
replaces the back-up in it (its manifest.json and partition-*.rec files).
Records produced while the back-up runs are not in it. A progress bar goes
to stderr when it is a terminal. The format is described in
internal/backup/format.go.

An s3:// LOCATION must hold no objects directly under the prefix unless
--force.
` + s3Help,
		Example: `  sluice backup users --to /backups/users-2024-05-01
  sluice backup orders --to ./orders.bak --brokers kafka1:9092
  sluice backup users --to /backups/users --force
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

// isBackupFile says whether name is a file that a back-up writes.
func isBackupFile(name string) bool {
	return name == backup.ManifestName || strings.HasPrefix(name, "partition-") && strings.HasSuffix(name, ".rec")
}

// RunBackup writes the back-up and prints a summary.
func RunBackup(ctx context.Context, o BackupOptions) error {
	tg, err := o.target(ctx)
	if err != nil {
		return err
	}
	existing, err := tg.List()
	if err != nil {
		return fmt.Errorf("back-up %s: %w", tg, err)
	}
	if len(existing) > 0 && !o.Force {
		shown := strings.Join(existing[:min(len(existing), 3)], ", ")
		if len(existing) > 3 {
			shown += ", ..."
		}
		return fmt.Errorf("%s is not empty (%s); back up into an empty or new directory or prefix, or use --force to replace the back-up in it", tg, shown)
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
	tc, err := describeConfigs(actx, kadm.NewClient(cl), o.Topic)
	if err != nil {
		return err
	}
	ranges, err := topicread.Ranges(actx, cl, o.Topic, parts)
	if err != nil {
		return err
	}
	return o.write(ctx, cl, tg, existing, parts, ranges, tc, topicID)
}

func (o BackupOptions) write(ctx context.Context, cl *kgo.Client, tg backup.Target, existing []string, parts []int32,
	ranges map[int32]topicread.Range, tc *topicConfigs, topicID string) error {
	// Replacing: the old manifest goes first, so that a run cut short
	// leaves no back-up that looks whole.
	for _, name := range existing {
		if name == backup.ManifestName {
			if err := tg.Remove(name); err != nil {
				return fmt.Errorf("back-up %s: %w", tg, err)
			}
		}
	}
	var total int64
	for _, r := range ranges {
		total += max(r.End-r.Start, 0)
	}
	bar := newProgress(o.Stderr(), total, "backup "+o.Topic)
	defer bar.done()
	m := &backup.Manifest{Topic: o.Topic, TopicID: topicID, CreatedAt: time.Now().UTC().Format(time.RFC3339Nano),
		Partitions: int32(len(parts)), CleanupPolicy: tc.effective["cleanup.policy"], TimestampType: tc.effective["message.timestamp.type"],
		Configs: tc.nonDefault, ConfigSources: tc.sources}
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
		f, err := o.writePartition(ctx, cl, tg, p, ranges[p], bar)
		if err != nil {
			return interrupted(ctx, err)
		}
		m.Files = append(m.Files, f)
		m.Records += f.Records
		bytes += f.Bytes
		written[f.Name] = true
	}
	// Data files of a replaced back-up that this one does not have.
	for _, name := range existing {
		if isBackupFile(name) && name != backup.ManifestName && !written[name] {
			if err := tg.Remove(name); err != nil {
				return fmt.Errorf("back-up %s: %w", tg, err)
			}
		}
	}
	if err := backup.WriteManifest(tg, m); err != nil {
		return fmt.Errorf("back-up %s: %s: %w", tg, backup.ManifestName, err)
	}
	bar.done()
	fmt.Fprintf(o.Stdout(), "backed up %s of %s (%s, cleanup.policy %s, %s) to %s\n",
		clientopts.Count(m.Records, "record", "records"), o.Topic, clientopts.Count(len(parts), "partition", "partitions"),
		m.CleanupPolicy, clientopts.Count(bytes, "byte", "bytes"), tg)
	return nil
}

func (o BackupOptions) writePartition(ctx context.Context, cl *kgo.Client, tg backup.Target, p int32, r topicread.Range, bar *progress) (backup.File, error) {
	name := backup.DataFileName(p)
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
