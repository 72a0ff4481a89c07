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
// sink's CPU). Its pieces come from, and go back to, a chunkPool, once
// the object holding them is uploaded. It is used by one goroutine at a
// time.
type chunks struct {
	pool *chunkPool
	bufs [][]byte
	n    int64
}

// chunkSizes is how many sizes of piece there are: firstChunkBytes,
// doubling up to chunkBytes.
const chunkSizes = 7 // 16 KiB .. 1 MiB

// chunkPool keeps pieces of every size for reuse, up to maxBytes of them
// in all. Not a sync.Pool, and not only the full-size pieces: new memory
// is cleared by the runtime and faulted in by the kernel page by page,
// which cost several times the writing of the bytes into it; a sync.Pool
// empties at every other GC, and each file's growing first pieces (1 MiB
// of every 4 MiB file) were new memory each time. Safe for concurrent
// use (partitions encode in parallel).
type chunkPool struct {
	mu        sync.Mutex
	free      [chunkSizes][][]byte // by size: firstChunkBytes<<i
	freeBytes int64
	maxBytes  int64
}

// newChunkPool is the pool a Sink shares between its files; it keeps at
// most maxBytes of free pieces (the sink's --max-buffered-bytes: the
// memory it may hold anyway), until trim (the sink is idle).
func newChunkPool(maxBytes int64) *chunkPool {
	return &chunkPool{maxBytes: maxBytes}
}

// sizeClass is the index in free of a piece of cap size, or -1.
func sizeClass(size int) int {
	for i := range chunkSizes {
		if firstChunkBytes<<i == size {
			return i
		}
	}
	return -1
}

// get is an empty piece of cap size, one of the chunkSizes.
func (p *chunkPool) get(size int) []byte {
	i := sizeClass(size)
	if i < 0 {
		panic("BUG: sink: a piece of a size the pool does not keep")
	}
	p.mu.Lock()
	if n := len(p.free[i]); n > 0 {
		b := p.free[i][n-1]
		p.free[i] = p.free[i][:n-1]
		p.freeBytes -= int64(size)
		p.mu.Unlock()
		return b
	}
	p.mu.Unlock()
	return make([]byte, 0, size)
}

// trim lets every free piece go to the GC.
func (p *chunkPool) trim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.free[:])
	p.freeBytes = 0
}

// put keeps b for reuse, or leaves it to the GC when the pool is full.
func (p *chunkPool) put(b []byte) {
	i := sizeClass(cap(b))
	if i < 0 {
		return
	}
	p.mu.Lock()
	if p.freeBytes+int64(cap(b)) <= p.maxBytes {
		p.free[i] = append(p.free[i], b[:0])
		p.freeBytes += int64(cap(b))
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

// next is an empty piece: twice the last one, up to chunkBytes.
func (c *chunks) next() []byte {
	size := firstChunkBytes
	if len(c.bufs) > 0 {
		size = min(2*cap(c.bufs[len(c.bufs)-1]), chunkBytes)
	}
	return c.pool.get(size)
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

// release gives the pieces back to the pool; c is empty after. Only for
// bytes nothing reads any more.
func (c *chunks) release() {
	for _, b := range c.bufs {
		c.pool.put(b)
	}
	c.bufs, c.n = nil, 0
}
