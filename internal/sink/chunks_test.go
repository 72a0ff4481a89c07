package sink

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestChunks: bytes written in pieces of any size (some appended to
// AvailableBuffer, fitting it or not), across the growing and the pooled
// chunks, read back the same through WriteTo, reader (read
// whole and at random offsets) and again after a release and reuse.
func TestChunks(t *testing.T) {
	pool := newChunkPool(2 * chunkBytes)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 3 {
		c := &chunks{pool: pool}
		var want []byte
		for len(want) < 3*chunkBytes+12345 {
			p := make([]byte, rng.IntN(200_000))
			if rng.IntN(2) == 0 { // appended to AvailableBuffer, in place when it fits
				p = c.AvailableBuffer()
				for range rng.IntN(2 * cap(p)) {
					p = append(p, 0)
				}
			}
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			if n, err := c.Write(p); n != len(p) || err != nil {
				t.Fatal(n, err)
			}
			want = append(want, p...)
		}
		if c.Len() != int64(len(want)) {
			t.Fatalf("round %d: Len %d, want %d", round, c.Len(), len(want))
		}
		var out bytes.Buffer
		if n, err := c.WriteTo(&out); n != int64(len(want)) || err != nil || !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("round %d: WriteTo: %d %v, equal %v", round, n, err, bytes.Equal(out.Bytes(), want))
		}
		got, err := io.ReadAll(c.reader())
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("round %d: reader: %d bytes, %v", round, len(got), err)
		}
		for range 100 {
			off := rng.Int64N(int64(len(want)) + 10)
			p := make([]byte, rng.IntN(3*chunkBytes))
			n, err := c.ReadAt(p, off)
			lo := min(off, int64(len(want)))
			end := min(off+int64(len(p)), int64(len(want)))
			if int64(n) != max(end-lo, 0) || !bytes.Equal(p[:n], want[lo:max(end, lo)]) || (n < len(p)) != (err == io.EOF) {
				t.Fatalf("round %d: ReadAt(%d bytes, %d): %d %v", round, len(p), off, n, err)
			}
		}
		c.release()
		if c.Len() != 0 {
			t.Fatal("not empty after release")
		}
	}
}

// TestChunkPool: every size of piece a file grows through is reused (the
// same memory comes back), and the pool keeps no more than its bytes.
func TestChunkPool(t *testing.T) {
	if sizeClass(chunkBytes) != chunkSizes-1 {
		t.Fatalf("chunkSizes %d does not reach chunkBytes", chunkSizes)
	}
	pool := newChunkPool(3 * chunkBytes)
	c := &chunks{pool: pool}
	c.Write(make([]byte, 3*chunkBytes))
	var first []*byte
	for _, b := range c.bufs {
		first = append(first, &b[:1][0])
	}
	c.release()
	c.Write(make([]byte, 3*chunkBytes))
	for i, b := range c.bufs {
		if i < len(first) && &b[:1][0] != first[i] && cap(b) < chunkBytes {
			t.Fatalf("piece %d of %d bytes is new memory, not the one released", i, cap(b))
		}
	}
	c.release()
	for range 10 {
		pool.put(make([]byte, 0, chunkBytes))
	}
	if pool.freeBytes > pool.maxBytes {
		t.Fatalf("pool keeps %d bytes, more than its %d", pool.freeBytes, pool.maxBytes)
	}
	pool.put(make([]byte, 0, 1000)) // not a piece's size: not kept
	for i := range chunkSizes {
		for _, b := range pool.free[i] {
			if cap(b) != firstChunkBytes<<i {
				t.Fatalf("size %d kept with size %d", cap(b), firstChunkBytes<<i)
			}
		}
	}
}

// TestChunkPoolTrim: after trim the pool holds nothing, and a piece got
// after it is new memory.
func TestChunkPoolTrim(t *testing.T) {
	pool := newChunkPool(4 * chunkBytes)
	b := pool.get(chunkBytes)
	pool.put(b)
	pool.trim()
	if pool.freeBytes != 0 {
		t.Fatalf("%d bytes kept after trim", pool.freeBytes)
	}
	if c := pool.get(chunkBytes); &c[:1][0] == &b[:1][0] {
		t.Fatal("a piece trimmed came back")
	}
}
