package sink

import (
	"io"
	"sync"
)

const (
	// chunkBytes is the largest piece a file's encoded bytes are kept in,
	// and the size of the pieces that are reused.
	chunkBytes = 1 << 20
	// firstChunkBytes is a file's first piece; each next one doubles, up
	// to chunkBytes, so that the many small files of a fine partitioning
	// take little memory.
	firstChunkBytes = 16 << 10
)

// chunks holds a file's encoded bytes in pieces: growing it never copies
// what it holds, where a bytes.Buffer doubles, copies and has the runtime
// clear each new array (with 4 MiB files that was a quarter of the
// sink's CPU). Full-size pieces come from, and go back to, a chunkPool,
// once the object holding them is uploaded. It is used by one goroutine
// at a time.
type chunks struct {
	pool *chunkPool
	bufs [][]byte
	n    int64
}

// chunkPool keeps full-size pieces for reuse, up to max of them. Not a
// sync.Pool: that one empties at every other GC, and with a sink's
// steady churn of MiBs most pieces were then new memory, which the
// runtime clears and the kernel faults in page by page (writing into
// them was 40 % of the JSON lines sink's encoding CPU). Safe for
// concurrent use (partitions encode in parallel).
type chunkPool struct {
	mu   sync.Mutex
	free [][]byte
	max  int
}

// newChunkPool is the pool a Sink shares between its files; it keeps at
// most maxBytes of free pieces (at least one piece).
func newChunkPool(maxBytes int64) *chunkPool {
	return &chunkPool{max: int(max(maxBytes/chunkBytes, 1))}
}

// get is an empty piece of cap chunkBytes.
func (p *chunkPool) get() []byte {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return make([]byte, 0, chunkBytes)
}

// put keeps b for reuse, or leaves it to the GC when the pool is full.
func (p *chunkPool) put(b []byte) {
	p.mu.Lock()
	if len(p.free) < p.max {
		p.free = append(p.free, b[:0])
	}
	p.mu.Unlock()
}

func (c *chunks) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	n := len(p)
	// Appended in place to AvailableBuffer's slice: nothing to copy.
	if last := len(c.bufs) - 1; n > 0 && last >= 0 {
		b := c.bufs[last]
		if free := b[len(b):cap(b)]; n <= len(free) && &free[0] == &p[0] {
			c.bufs[last] = b[:len(b)+n]
			return n, nil
		}
	}
	for len(p) > 0 {
		last := len(c.bufs) - 1
		if last < 0 || len(c.bufs[last]) == cap(c.bufs[last]) {
			c.bufs = append(c.bufs, c.next())
			last++
		}
		b := c.bufs[last]
		k := copy(b[len(b):cap(b)], p)
		c.bufs[last] = b[:len(b)+k]
		p = p[k:]
	}
	return n, nil
}

// AvailableBuffer is an empty slice over the free end of the last piece
// (of a new piece when that one is full), as bufio.Writer's: bytes
// appended to it within its capacity and passed to the next Write are
// taken where they are, without a copy (a copy of every byte into the
// pieces was, after encoding them, the largest CPU cost of JSON lines).
func (c *chunks) AvailableBuffer() []byte {
	last := len(c.bufs) - 1
	if last < 0 || len(c.bufs[last]) == cap(c.bufs[last]) {
		c.bufs = append(c.bufs, c.next())
		last++
	}
	b := c.bufs[last]
	return b[len(b):len(b):cap(b)]
}

// next is an empty piece: twice the last one, or a pooled full one.
func (c *chunks) next() []byte {
	size := firstChunkBytes
	if len(c.bufs) > 0 {
		size = 2 * cap(c.bufs[len(c.bufs)-1])
	}
	if size < chunkBytes {
		return make([]byte, 0, size)
	}
	return c.pool.get()
}

// Len is the bytes written.
func (c *chunks) Len() int64 { return c.n }

// WriteTo writes the bytes to w, piece by piece.
func (c *chunks) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, b := range c.bufs {
		k, err := w.Write(b)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ReadAt reads the bytes at off, for reader.
func (c *chunks) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for _, b := range c.bufs {
		if off >= int64(len(b)) {
			off -= int64(len(b))
			continue
		}
		k := copy(p[n:], b[off:])
		n, off = n+k, 0
		if n == len(p) {
			return n, nil
		}
	}
	return n, io.EOF
}

// reader reads the bytes from the start; it seeks and reads at offsets,
// so that an S3 upload of it can retry, and send parts in parallel,
// without a copy into buffers of its own.
func (c *chunks) reader() *io.SectionReader { return io.NewSectionReader(c, 0, c.n) }

// release gives the full-size pieces back to the pool; c is empty after.
// Only for bytes nothing reads any more.
func (c *chunks) release() {
	for _, b := range c.bufs {
		if cap(b) == chunkBytes {
			c.pool.put(b)
		}
	}
	c.bufs, c.n = nil, 0
}
