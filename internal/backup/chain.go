package backup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// A chain is a full back-up (sequence 0: manifest.json and
// partition-NNNNN.rec) and the incremental back-ups made on it, all in one
// Target. Incremental n (1, 2, ...) is incr-00000n-manifest.json and
// incr-00000n-partition-NNNNN.rec; its manifest names its base (n-1) and
// every link before it, each with its manifest's checksum, so that a link
// that is missing, replaced or modified breaks the chain visibly. Names
// are flat because a Target's are.

const (
	// MaxSequence is the highest incremental sequence: the six digits of
	// the file names.
	MaxSequence = 999_999
	// incrPrefix starts the names of an incremental back-up's files.
	incrPrefix = "incr-"
	// idRandomBytes is the random part of a back-up id, after its time.
	idRandomBytes = 4
)

// ChainManifestName is the manifest of the back-up with sequence seq.
func ChainManifestName(seq int) string {
	if seq == 0 {
		return ManifestName
	}
	return fmt.Sprintf("%s%06d-%s", incrPrefix, seq, ManifestName)
}

// ChainDataFileName is partition's data file in the back-up with sequence
// seq.
func ChainDataFileName(seq int, partition int32) string {
	if seq == 0 {
		return DataFileName(partition)
	}
	return fmt.Sprintf("%s%06d-%s", incrPrefix, seq, DataFileName(partition))
}

// IsChainFile says whether name is a file that a back-up of a chain
// writes (a manifest or a data file, full or incremental).
func IsChainFile(name string) bool {
	if rest, ok := strings.CutPrefix(name, incrPrefix); ok {
		seq, after, ok := strings.Cut(rest, "-")
		if _, err := strconv.Atoi(seq); err != nil || !ok || len(seq) != 6 {
			return false
		}
		name = after
	}
	return name == ManifestName || strings.HasPrefix(name, "partition-") && strings.HasSuffix(name, ".rec")
}

// NewID returns a new back-up id: the time, UTC, and random hex.
func NewID(now time.Time) (string, error) {
	b := make([]byte, idRandomBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("back-up id: %w", err)
	}
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b), nil
}

// ErrNoBackup is returned by Latest when the Target holds no manifest.
var ErrNoBackup = errors.New("backup: no back-up")

// noBackupError is ErrNoBackup with ReadManifest's message.
type noBackupError struct{ msg string }

func (e noBackupError) Error() string        { return e.msg }
func (e noBackupError) Is(target error) bool { return target == ErrNoBackup }

// Latest returns the sequence of the newest back-up in t: the highest
// incremental whose manifest is there, else 0 when manifest.json is,
// else ErrNoBackup. It does not read the manifests.
func Latest(t Target) (int, error) {
	names, err := t.List()
	if err != nil {
		return 0, fmt.Errorf("back-up %s: %w", t, err)
	}
	latest := -1
	for _, n := range names {
		if n == ManifestName {
			latest = max(latest, 0)
			continue
		}
		rest, ok := strings.CutPrefix(n, incrPrefix)
		if !ok || !strings.HasSuffix(rest, "-"+ManifestName) {
			continue
		}
		seq, err := strconv.Atoi(strings.TrimSuffix(rest, "-"+ManifestName))
		if err == nil && seq > 0 && ChainManifestName(seq) == n {
			latest = max(latest, seq)
		}
	}
	if latest < 0 {
		return 0, fmt.Errorf("%w in %s (no %s)", ErrNoBackup, t, ManifestName)
	}
	return latest, nil
}

// ReadChain reads the manifest of the back-up with sequence seq in t (the
// newest one, see Latest, when seq < 0) and of every back-up it is built
// on, and checks that they form one chain: each link there, with the id,
// sequence and manifest checksum that the newest records for it, of the
// same topic and partition count, and each partition's offsets contiguous
// (a link's data starts at or after its base's end offset). The data files
// are not read (see VerifyChain). It returns the manifests oldest first;
// errors name the file and say what to do.
func ReadChain(t Target, seq int) ([]*Manifest, error) {
	if seq < 0 {
		var err error
		if seq, err = Latest(t); err != nil {
			if errors.Is(err, ErrNoBackup) {
				return nil, noBackupError{fmt.Sprintf("%s: missing; the back-up is incomplete (interrupted?) or %s holds no back-up", ManifestName, t)}
			}
			return nil, err
		}
	}
	headName := ChainManifestName(seq)
	head, err := ReadManifestNamed(t, headName)
	if err != nil {
		return nil, err
	}
	if head.Sequence != seq {
		return nil, fmt.Errorf("%s: damaged: sequence %d in a file named for %d", headName, head.Sequence, seq)
	}
	chain := make([]*Manifest, 0, len(head.Chain)+1)
	for i, l := range head.Chain {
		broken := func(format string, args ...any) error {
			return fmt.Errorf("%s: %s; %s (back-up %s) is built on it and cannot be restored: restore an earlier back-up of the chain, or take a new full back-up",
				l.Manifest, fmt.Sprintf(format, args...), headName, head.ID)
		}
		m, err := ReadManifestNamed(t, l.Manifest)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, broken("missing (link %d of the chain)", i)
			}
			return nil, broken("%v", strings.TrimPrefix(err.Error(), l.Manifest+": "))
		}
		if m.ID != l.ID || m.Sequence != l.Sequence || m.Checksum != l.Checksum {
			return nil, broken("replaced or modified since the next back-up was made on it (id %s, checksum %s; the chain records id %s, checksum %s)",
				m.ID, m.Checksum, l.ID, l.Checksum)
		}
		if len(m.Chain) != i || !linksEqual(m.Chain, head.Chain[:i]) {
			return nil, broken("its own chain differs from the newer back-up's")
		}
		chain = append(chain, m)
	}
	chain = append(chain, head)
	for i := 1; i < len(chain); i++ {
		prev, m := chain[i-1], chain[i]
		name := ChainManifestName(m.Sequence)
		if m.Topic != prev.Topic || m.Partitions != prev.Partitions || m.TopicID != "" && prev.TopicID != "" && m.TopicID != prev.TopicID {
			return nil, fmt.Errorf("%s: of topic %s (id %s, %d partitions), its base %s of %s (id %s, %d partitions): not one chain",
				name, m.Topic, m.TopicID, m.Partitions, ChainManifestName(prev.Sequence), prev.Topic, prev.TopicID, prev.Partitions)
		}
		for p, f := range m.Files {
			if pf := prev.Files[p]; f.StartOffset < pf.EndOffset || f.EndOffset < f.StartOffset {
				return nil, fmt.Errorf("%s: partition %d holds offsets %d to %d, its base ends at %d: not contiguous", name, p, f.StartOffset, f.EndOffset, pf.EndOffset)
			}
		}
	}
	return chain, nil
}

func linksEqual(a, b []Link) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// LinkTo is the Link that names m, a manifest read or written.
func LinkTo(m *Manifest) Link {
	return Link{ID: m.ID, Sequence: m.Sequence, Manifest: ChainManifestName(m.Sequence), Checksum: m.Checksum}
}

// VerifyChain reads every data file of every link of chain (oldest
// first) and checks it, as Verify does; fn, if not nil, sees each
// partition's records of the whole chain in offset order only when called
// per partition, so it is given the link's index too.
func VerifyChain(t Target, chain []*Manifest, fn func(link int, partition int32, r *Record) error) error {
	for i, m := range chain {
		var cb func(int32, *Record) error
		if fn != nil {
			cb = func(p int32, r *Record) error { return fn(i, p, r) }
		}
		if err := Verify(t, m, cb); err != nil {
			return err
		}
	}
	return nil
}

// ReadPartition reads partition's data files of every link of chain,
// oldest first, calling fn with each record: the partition's records in
// offset order. See ReadFile.
func ReadPartition(t Target, chain []*Manifest, partition int32, fn func(*Record) error) error {
	for _, m := range chain {
		if err := ReadFile(t, m.Files[partition], fn); err != nil {
			return err
		}
	}
	return nil
}
