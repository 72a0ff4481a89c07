package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

var allCodecs = []int{CodecNone, CodecGzip, CodecSnappy, CodecLZ4, CodecZstd}

func testInputs() map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 300<<10)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog; "), 20000)
	return map[string][]byte{
		"empty":  {},
		"byte":   {42},
		"small":  []byte("hello, sluice"),
		"random": random,
		"text":   text, // ~900 KiB, several blocks for every codec
	}
}

func TestCompressRoundtrip(t *testing.T) {
	for _, codec := range allCodecs {
		for name, in := range testInputs() {
			for _, level := range []int{0, 1, 9} {
				t.Run(fmt.Sprintf("%s/%s/level%d", codecName(codec), name, level), func(t *testing.T) {
					c, err := Compress(codec, in, level)
					if err != nil {
						t.Fatal(err)
					}
					out, err := Decompress(codec, c, len(in))
					if err != nil {
						t.Fatalf("decompress: %v", err)
					}
					if !bytes.Equal(out, in) {
						t.Fatalf("roundtrip mismatch: %d bytes in, %d out", len(in), len(out))
					}
					if len(in) > 0 {
						// One byte short of the output must fail, as too large.
						if _, err := Decompress(codec, c, len(in)-1); !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalidRecord) {
							t.Fatalf("maxBytes %d for %d bytes: err %v, want ErrTooLarge", len(in)-1, len(in), err)
						}
					}
				})
			}
		}
	}
}

func TestCompressLevels(t *testing.T) {
	in := bytes.Repeat([]byte("abcdefgh"), 4096)
	for _, tc := range []struct {
		codec int
		level int
		ok    bool
	}{
		{CodecGzip, -2, true}, {CodecGzip, 10, false},
		{CodecLZ4, 9, true}, {CodecLZ4, 10, false}, {CodecLZ4, -1, false},
		{CodecZstd, 1, true}, {CodecZstd, 3, true}, {CodecZstd, 7, true}, {CodecZstd, 22, true},
		{CodecZstd, 23, false}, {CodecZstd, -1, false},
		{CodecSnappy, 5, true},
		{5, 0, false}, {-1, 0, false},
	} {
		c, err := Compress(tc.codec, in, tc.level)
		if (err == nil) != tc.ok {
			t.Fatalf("codec %d level %d: err %v, want ok=%v", tc.codec, tc.level, err, tc.ok)
		}
		if err != nil {
			continue
		}
		out, err := Decompress(tc.codec, c, len(in))
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("codec %d level %d: roundtrip err %v", tc.codec, tc.level, err)
		}
	}
}

func TestDecompressUnsupportedCodec(t *testing.T) {
	for _, codec := range []int{-1, 5, 7, 100} {
		if _, err := Decompress(codec, []byte{1, 2, 3}, 100); !errors.Is(err, ErrUnsupportedCodec) {
			t.Fatalf("codec %d: err %v", codec, err)
		}
	}
}

func TestDecompressGarbage(t *testing.T) {
	garbage := [][]byte{
		nil, {}, {0}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, []byte("definitely not compressed data"),
		append(append([]byte{}, xerialMagic...), 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1), // chunk overruns
		append(append([]byte{}, xerialMagic...), 0, 0, 0, 1, 0, 0, 0, 1, 0, 0),          // short chunk length
		append(append([]byte{}, xerialMagic...), 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0),    // empty chunk
	}
	for _, codec := range allCodecs[1:] {
		for i, g := range garbage {
			out, err := Decompress(codec, g, 1<<20)
			if err == nil {
				// A few tiny inputs are valid (an empty snappy block is {0}).
				if len(out) != 0 {
					t.Fatalf("%s garbage %d decoded to %d bytes", codecName(codec), i, len(out))
				}
				continue
			}
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("%s garbage %d: err %v does not wrap ErrInvalidRecord", codecName(codec), i, err)
			}
		}
	}
}

func TestDecompressNoneBound(t *testing.T) {
	in := []byte("0123456789")
	out, err := Decompress(CodecNone, in, 10)
	if err != nil || &out[0] != &in[0] {
		t.Fatalf("none should return its input: %v", err)
	}
	if _, err := Decompress(CodecNone, in, 9); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
}

// xerialFrame frames raw snappy blocks of chunk bytes the way the Java
// client's SnappyOutputStream does.
func xerialFrame(in []byte, chunk int) []byte {
	out := append([]byte{}, xerialMagic...)
	out = binary.BigEndian.AppendUint32(out, 1) // version
	out = binary.BigEndian.AppendUint32(out, 1) // min compatible version
	for len(in) > 0 {
		n := min(chunk, len(in))
		block := snappy.Encode(nil, in[:n])
		out = binary.BigEndian.AppendUint32(out, uint32(len(block)))
		out = append(out, block...)
		in = in[n:]
	}
	return out
}

func TestSnappyXerial(t *testing.T) {
	for name, in := range testInputs() {
		framed := xerialFrame(in, 32<<10)
		out, err := Decompress(CodecSnappy, framed, len(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("%s: mismatch", name)
		}
		if len(in) > 0 {
			if _, err := Decompress(CodecSnappy, framed, len(in)-1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%s: err %v, want ErrTooLarge", name, err)
			}
			// A truncated frame is an error.
			if _, err := Decompress(CodecSnappy, framed[:len(framed)-1], len(in)); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("%s: truncated frame: err %v", name, err)
			}
		}
	}

	// A fixed xerial frame: header, then one chunk holding "hello".
	fixed := []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
		0, 0, 0, 7, 5, 0x10, 'h', 'e', 'l', 'l', 'o'}
	out, err := Decompress(CodecSnappy, fixed, 5)
	if err != nil || string(out) != "hello" {
		t.Fatalf("fixed xerial frame: %q, %v", out, err)
	}
	// The same block unframed (raw snappy).
	out, err = Decompress(CodecSnappy, fixed[20:], 5)
	if err != nil || string(out) != "hello" {
		t.Fatalf("fixed raw block: %q, %v", out, err)
	}
	// Header only, no chunks: empty.
	out, err = Decompress(CodecSnappy, fixed[:16], 5)
	if err != nil || len(out) != 0 {
		t.Fatalf("empty xerial frame: %q, %v", out, err)
	}
}

// Bombs: tiny inputs that expand enormously must fail without allocating
// the expansion.
func TestDecompressionBombs(t *testing.T) {
	const huge = 16 << 20
	zeros := make([]byte, huge)

	bombs := map[string]func() (int, []byte){
		"gzip": func() (int, []byte) {
			var b bytes.Buffer
			w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			w.Write(zeros)
			w.Close()
			return CodecGzip, b.Bytes()
		},
		"lz4": func() (int, []byte) {
			var b bytes.Buffer
			w := lz4.NewWriter(&b)
			w.Write(zeros)
			w.Close()
			return CodecLZ4, b.Bytes()
		},
		"zstd-fcs": func() (int, []byte) {
			enc, _ := zstd.NewWriter(nil)
			return CodecZstd, enc.EncodeAll(zeros, nil)
		},
		"zstd-stream": func() (int, []byte) {
			var b bytes.Buffer
			enc, _ := zstd.NewWriter(&b)
			enc.Write(zeros)
			enc.Close()
			return CodecZstd, b.Bytes()
		},
		"snappy-raw": func() (int, []byte) {
			return CodecSnappy, snappy.Encode(nil, zeros)
		},
		"snappy-xerial": func() (int, []byte) {
			return CodecSnappy, xerialFrame(zeros, 32<<10)
		},
		// A raw snappy header claiming 2 GiB with no data behind it.
		"snappy-claim": func() (int, []byte) {
			return CodecSnappy, binary.AppendUvarint(nil, 1<<31-1)
		},
	}
	for name, mk := range bombs {
		codec, bomb := mk()
		for _, limit := range []int{0, 1000, 1 << 20} {
			var ms1, ms2 runtimeMem
			ms1.read()
			out, err := Decompress(codec, bomb, limit)
			ms2.read()
			if err == nil {
				t.Fatalf("%s (%d bytes) limit %d: decoded %d bytes, want error", name, len(bomb), limit, len(out))
			}
			if name != "snappy-claim" && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%s limit %d: err %v, want ErrTooLarge", name, limit, err)
			}
			// Generous: a few times the limit plus codec state, far below
			// the bomb's expansion.
			if got := ms2.alloc - ms1.alloc; got > uint64(8*limit+32<<20) {
				t.Fatalf("%s limit %d: allocated %d bytes", name, limit, got)
			}
		}
	}
}

type runtimeMem struct{ alloc uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.alloc = ms.TotalAlloc
}

func TestZstdStreamWithoutContentSize(t *testing.T) {
	// Frames written by a streaming encoder carry no content size, as the
	// Java client's; the decoder grows its buffer up to the bound.
	in := bytes.Repeat([]byte("0123456789abcdef"), 200<<10) // 3.2 MiB
	var b bytes.Buffer
	enc, _ := zstd.NewWriter(&b)
	enc.Write(in)
	enc.Close()
	var fh zstd.Header
	if err := fh.Decode(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	out, err := Decompress(CodecZstd, b.Bytes(), len(in))
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("err %v (fcs %v)", err, fh.HasFCS)
	}
	if _, err := Decompress(CodecZstd, b.Bytes(), len(in)-1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
	// Two frames back to back decode as their concatenation.
	two := append(append([]byte{}, b.Bytes()...), b.Bytes()...)
	out, err = Decompress(CodecZstd, two, 2*len(in))
	if err != nil || !bytes.Equal(out, append(append([]byte{}, in...), in...)) {
		t.Fatalf("two frames: %v", err)
	}
}

func TestDecompressConcurrent(t *testing.T) {
	in := bytes.Repeat([]byte("concurrent decompression "), 5000)
	var wg sync.WaitGroup
	for _, codec := range allCodecs {
		c, err := Compress(codec, in, 0)
		if err != nil {
			t.Fatal(err)
		}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					out, err := Decompress(codec, c, len(in))
					if err != nil || !bytes.Equal(out, in) {
						t.Errorf("%s: %v", codecName(codec), err)
						return
					}
					if _, err := Compress(codec, in, 0); err != nil {
						t.Errorf("%s: %v", codecName(codec), err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
}

// TestCodecsAgainstFranzGo checks our output against franz-go's independent
// decompressor, and our decoder against franz-go's compressor output.
func TestCodecsAgainstFranzGo(t *testing.T) {
	dec := kgo.DefaultDecompressor()
	for name, in := range testInputs() {
		for _, codec := range allCodecs[1:] {
			c, err := Compress(codec, in, 0)
			if err != nil {
				t.Fatal(err)
			}
			out, err := dec.Decompress(c, kgo.CompressionCodecType(codec))
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("%s/%s: franz-go cannot read our output: %v", codecName(codec), name, err)
			}

			comp, err := kgo.DefaultCompressor(kgoCodecs[codec])
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			theirs, used := comp.Compress(&buf, in)
			if int(used) != codec {
				t.Fatalf("%s: franz-go compressed with %d", codecName(codec), used)
			}
			out, err = Decompress(codec, theirs, len(in))
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("%s/%s: cannot read franz-go's output: %v", codecName(codec), name, err)
			}
		}
		// franz-go reads the xerial framing we test the decoder with (it
		// takes a bare header, with no chunks, for raw snappy).
		if len(in) == 0 {
			continue
		}
		out, err := dec.Decompress(xerialFrame(in, 32<<10), kgo.CodecSnappy)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("%s: franz-go on xerial: %v", name, err)
		}
	}
}
