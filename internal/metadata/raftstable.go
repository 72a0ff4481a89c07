package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	iofs "io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Raft's stable store (CurrentTerm, LastVoteTerm, LastVoteCand) is the small
// file <Dir>/raft.stable, replaced whole on every change with
// vfs.WriteFileAtomic (temporary file, fsync, rename, fsync of the
// directory), so a crash leaves the old content or the new, never a mix:
//
//	0   [4]byte "SLST"
//	4   uvarint number of keys, then for each key in sorted order:
//	      uvarint length + key, uvarint length + value
//	end-4  uint32 CRC-32C of every byte before it, little-endian
//
// Values are stored as given; SetUint64 stores 8 bytes big-endian, as
// raft-boltdb did, so imported values keep their meaning.
const (
	stableName  = "raft.stable"
	stableMagic = "SLST"

	// maxStableBytes bounds the stable file: raft keeps three small keys.
	maxStableBytes = 64 << 10 // bytes
)

// stableStore is the raft.StableStore of a Store. Safe for concurrent use;
// mu guards kv and serializes the file's replacements.
//
// Failure: a failed replacement may or may not have reached the disk, so
// every later Set fails with that error (raft panics on such an error
// anyway); Get keeps answering from memory.
type stableStore struct {
	fs   vfs.FS
	dir  string
	path string

	mu  sync.Mutex
	kv  map[string][]byte
	err error // sticky
}

var _ raft.StableStore = (*stableStore)(nil)

// openStableStore reads dir's stable file; a missing one is empty.
func openStableStore(fsys vfs.FS, dir string) (*stableStore, error) {
	s := &stableStore{fs: fsys, dir: dir, path: filepath.Join(dir, stableName), kv: map[string][]byte{}}
	// A replacement that a crash interrupted before its rename.
	if err := removeIfExists(fsys, s.path+tmpSuffix); err != nil {
		return nil, err
	}
	b, err := readSmallFile(fsys, s.path, maxStableBytes)
	if errors.Is(err, iofs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: read raft stable store: %w", err)
	}
	if s.kv, err = decodeStable(b); err != nil {
		return nil, fmt.Errorf("metadata: %s: %w; it is written atomically, so this is damage on disk: restore the meta directory from a backup", s.path, err)
	}
	return s, nil
}

// Set stores val under key durably.
func (s *stableStore) Set(key, val []byte) error {
	return s.setMany(map[string][]byte{string(key): val})
}

// setMany stores every key of kv in one durable replacement.
func (s *stableStore) setMany(kv map[string][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	next := maps.Clone(s.kv)
	for k, v := range kv {
		next[k] = slices.Clone(v)
	}
	b := encodeStable(next)
	if len(b) > maxStableBytes {
		return fmt.Errorf("metadata: raft stable store would be %d bytes, the limit is %d", len(b), maxStableBytes)
	}
	if err := vfs.WriteFileAtomic(s.fs, s.dir, s.path, b); err != nil {
		s.err = fmt.Errorf("metadata: write raft stable store: %w (it refuses writes until the broker restarts)", err)
		return s.err
	}
	s.kv = next
	return nil
}

// Get returns the value stored under key, nil (empty) if there is none.
func (s *stableStore) Get(key []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.kv[string(key)]), nil
}

// SetUint64 stores val under key as 8 bytes, big-endian.
func (s *stableStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the number stored under key, 0 if there is none.
func (s *stableStore) GetUint64(key []byte) (uint64, error) {
	v, _ := s.Get(key)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("metadata: raft stable key %q holds %d bytes, not a uint64", key, len(v))
}

func encodeStable(kv map[string][]byte) []byte {
	b := []byte(stableMagic)
	b = binary.AppendUvarint(b, uint64(len(kv)))
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(kv[k])))
		b = append(b, kv[k]...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32c))
}

// decodeStable reads what encodeStable wrote. The bytes come from disk, so
// every length is checked (FuzzDecodeStable).
func decodeStable(b []byte) (map[string][]byte, error) {
	if len(b) < len(stableMagic)+1+4 || string(b[:len(stableMagic)]) != stableMagic {
		return nil, errors.New("not a raft stable file")
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, crc32c) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, errors.New("checksum mismatch")
	}
	p := body[len(stableMagic):]
	n, p, ok := uvarint(p)
	if !ok || n > uint64(len(p)) { // each key takes at least two bytes
		return nil, errors.New("bad key count")
	}
	kv := make(map[string][]byte, n)
	for range n {
		var k, v []byte
		if k, p, ok = lengthPrefixed(p); !ok {
			return nil, errors.New("bad key length")
		}
		if v, p, ok = lengthPrefixed(p); !ok {
			return nil, fmt.Errorf("key %q: bad value length", k)
		}
		if _, dup := kv[string(k)]; dup {
			return nil, fmt.Errorf("key %q twice", k)
		}
		kv[string(k)] = v
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%d bytes after the last key", len(p))
	}
	return kv, nil
}

// readSmallFile reads the whole of name, refusing files over limit bytes.
// A missing file is an error satisfying errors.Is(err, fs.ErrNotExist).
func readSmallFile(fsys vfs.FS, name string, limit int64) ([]byte, error) {
	return vfs.ReadFile(fsys, name, limit)
}
