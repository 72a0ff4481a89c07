package broker

import (
	"maps"
	"testing"

	"github.com/sluice-io/sluice/internal/vfs"
)

// FuzzReadCheckpoint: the offset checkpoint reader (recovery point, log
// start, cleaner) never panics on arbitrary bytes, and what it accepts
// writes back and reads the same.
func FuzzReadCheckpoint(f *testing.F) {
	f.Add([]byte("0\n2\nt 0 42\nt 1 7\n"))
	f.Add([]byte("0\n0\n"))
	f.Add([]byte("0\n1\nweird topic 3 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs := vfs.NewMem()
		if err := vfs.MkdirAll(fs, "/d"); err != nil {
			t.Fatal(err)
		}
		if err := vfs.WriteFileAtomic(fs, "/d", "/d/cp", b); err != nil {
			t.Fatal(err)
		}
		m, err := readCheckpoint(fs, "/d/cp")
		if err != nil {
			return
		}
		if err := writeCheckpoint(fs, "/d", "cp", m); err != nil {
			t.Fatal(err)
		}
		m2, err := readCheckpoint(fs, "/d/cp")
		if err != nil {
			t.Fatalf("re-read of an accepted checkpoint: %v", err)
		}
		if !maps.Equal(m, m2) {
			t.Fatalf("checkpoint does not round-trip: %v vs %v", m, m2)
		}
	})
}
