package backupcmd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluice-io/sluice/internal/backup"
	"github.com/sluice-io/sluice/internal/cli/clientopts"
)

// fetchGroups reads the offsets that every consumer group has committed on
// topic: the groups that ListGroups reports, then OffsetFetch for them.
// Partitions without a committed offset are left out, and so are groups
// with none on topic.
func fetchGroups(ctx context.Context, adm *kadm.Client, topic string) ([]backup.Group, error) {
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("list consumer groups: %w", err)
	}
	names := listed.Groups()
	if len(names) == 0 {
		return nil, nil
	}
	fetched := adm.FetchManyOffsets(ctx, names...)
	var out []backup.Group
	for _, g := range names {
		r, ok := fetched[g]
		if !ok {
			return nil, fmt.Errorf("offsets of consumer group %s: no answer", g)
		}
		if r.Err != nil {
			if errors.Is(r.Err, kerr.GroupIDNotFound) {
				continue // deleted since it was listed
			}
			return nil, fmt.Errorf("offsets of consumer group %s: %w", g, r.Err)
		}
		grp := backup.Group{Group: g}
		for p, o := range r.Fetched[topic] {
			if o.Err != nil {
				return nil, fmt.Errorf("offset of consumer group %s on %s partition %d: %w", g, topic, p, o.Err)
			}
			if o.At >= 0 {
				grp.Offsets = append(grp.Offsets, backup.GroupOffset{Partition: p, Offset: o.At, Metadata: o.Metadata})
			}
		}
		if len(grp.Offsets) > 0 {
			sort.Slice(grp.Offsets, func(i, j int) bool { return grp.Offsets[i].Partition < grp.Offsets[j].Partition })
			out = append(out, grp)
		}
	}
	return out, nil
}

// Active groups on the target, for --active-groups.
const (
	activeFail = "fail"
	activeSkip = "skip"
)

// translator maps the committed offsets of a back-up's groups to offsets
// of the restored topic. A committed offset c means "the next record to
// read is c": it maps to the restored offset of the first backed-up record
// with original offset >= c that the restored topic holds, or to the
// restored topic's end offset when there is none. The records are seen in
// offset order per partition (see at), so only the committed offsets are
// kept, not a map of every record.
type translator struct {
	mu    sync.Mutex
	want  map[int32][]int64 // per partition: the committed offsets, sorted, distinct
	next  map[int32]int     // per partition: the first of want not yet placed
	found map[int32]map[int64]int64
}

func newTranslator(groups []backup.Group) *translator {
	tr := &translator{want: map[int32][]int64{}, next: map[int32]int{}, found: map[int32]map[int64]int64{}}
	for _, g := range groups {
		for _, o := range g.Offsets {
			tr.want[o.Partition] = append(tr.want[o.Partition], o.Offset)
		}
	}
	for p, w := range tr.want {
		slices.Sort(w)
		tr.want[p] = slices.Compact(w)
		tr.found[p] = map[int64]int64{}
	}
	return tr
}

// at is called with each backed-up record that the restored topic holds,
// in offset order per partition, from one goroutine; it returns the
// function to call with the record's offset in the restored topic (nil
// when no committed offset maps to it). That function may be called on
// any goroutine.
func (tr *translator) at(partition int32, original int64) func(restored int64) {
	if tr == nil {
		return nil
	}
	w, i := tr.want[partition], tr.next[partition]
	j := i
	for j < len(w) && w[j] <= original {
		j++
	}
	if j == i {
		return nil
	}
	tr.next[partition] = j
	cs := w[i:j]
	return func(restored int64) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, c := range cs {
			tr.found[partition][c] = restored
		}
	}
}

// offset is the restored offset of committed offset c in partition; end
// is the partition's end offset after the restore.
func (tr *translator) offset(partition int32, c, end int64) int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if o, ok := tr.found[partition][c]; ok {
		return o
	}
	return end
}

// selectGroups is the back-up's groups that --groups matches (all when
// re is nil).
func selectGroups(groups []backup.Group, re *regexp.Regexp) []backup.Group {
	var out []backup.Group
	for _, g := range groups {
		if re == nil || re.MatchString(g.Group) {
			out = append(out, g)
		}
	}
	return out
}

// activeGroups returns, of groups, those with members on the target
// cluster, each with its state: committing offsets for them would be
// refused (Kafka takes commits without a generation only for an empty
// group) and would move a running consumer.
func activeGroups(ctx context.Context, adm *kadm.Client, groups []backup.Group) (map[string]string, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.Group
	}
	described, err := adm.DescribeGroups(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("describe consumer groups on the target: %w", err)
	}
	active := map[string]string{}
	for _, d := range described {
		if d.Err != nil {
			if errors.Is(d.Err, kerr.GroupIDNotFound) {
				continue
			}
			return nil, fmt.Errorf("describe consumer group %s on the target: %w", d.Group, d.Err)
		}
		if len(d.Members) > 0 || d.State != "" && d.State != "Empty" && d.State != "Dead" {
			active[d.Group] = d.State
		}
	}
	return active, nil
}

// activeError is the refusal for groups that are active on the target.
func activeError(active map[string]string) error {
	return fmt.Errorf("consumer %s active on the target cluster: %s; restoring offsets would move running consumers, so nothing was written. "+
		"Stop their consumers and run restore again, leave them out with --groups or --no-group-offsets, or use --active-groups=skip to restore the other groups",
		pluralGroups(len(active)), activeList(active))
}

// activeList is "group (state), ..." in group order.
func activeList(active map[string]string) string {
	var shown []string
	for _, g := range slices.Sorted(maps.Keys(active)) {
		shown = append(shown, fmt.Sprintf("%s (%s)", g, active[g]))
	}
	return strings.Join(shown, ", ")
}

func pluralGroups(n int) string {
	if n == 1 {
		return "group is"
	}
	return "groups are"
}

// commitGroups commits each group's translated offsets on topic; ends are
// the restored topic's end offsets. It returns a line per group for the
// summary.
func commitGroups(ctx context.Context, adm *kadm.Client, topic string, groups []backup.Group, tr *translator, ends map[int32]int64) ([]string, error) {
	var lines []string
	for _, g := range groups {
		offs := kadm.Offsets{}
		var moved int
		for _, o := range g.Offsets {
			at := tr.offset(o.Partition, o.Offset, ends[o.Partition])
			if at != o.Offset {
				moved++
			}
			offs.Add(kadm.Offset{Topic: topic, Partition: o.Partition, At: at, LeaderEpoch: -1, Metadata: o.Metadata})
		}
		resp, err := adm.CommitOffsets(ctx, g.Group, offs)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.IllegalGeneration) {
				return lines, fmt.Errorf("commit offsets of consumer group %s: %w (the group became active during the restore: stop its consumers and run restore again)", g.Group, err)
			}
			return lines, fmt.Errorf("commit offsets of consumer group %s: %w", g.Group, err)
		}
		lines = append(lines, fmt.Sprintf("group %s: %s committed, %d translated to other offsets", g.Group,
			clientopts.Count(len(g.Offsets), "offset", "offsets"), moved))
	}
	return lines, nil
}
