package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// ErrTooLarge is returned (wrapped together with ErrInvalidRecord) when
// decompressing would produce more than the caller's maxBytes.
var ErrTooLarge = errors.New("record: decompressed size exceeds the limit")

// Decompress decompresses src, compressed with codec (CodecNone..CodecZstd),
// producing at most maxBytes bytes: input that would decompress to more
// fails with an error wrapping both ErrInvalidRecord and ErrTooLarge, and
// the output buffer never grows beyond maxBytes (zstd may transiently overrun
// by one 128 KiB block inside the library before the error is noticed).
// Malformed input fails with an error wrapping ErrInvalidRecord; an unknown
// codec with ErrUnsupportedCodec.
//
// For CodecNone the result is src itself, not a copy.
//
// Snappy accepts both raw snappy blocks and the xerial framing written by
// the Java client and librdkafka; lz4 is the lz4 frame format.
func Decompress(codec int, src []byte, maxBytes int) ([]byte, error) {
	if maxBytes < 0 {
		maxBytes = 0
	}
	var (
		out []byte
		err error
	)
	switch codec {
	case CodecNone:
		if len(src) > maxBytes {
			return nil, tooLarge(codec, maxBytes)
		}
		return src, nil
	case CodecGzip:
		out, err = decompressGzip(src, maxBytes)
	case CodecSnappy:
		out, err = decompressSnappy(src, maxBytes)
	case CodecLZ4:
		out, err = decompressLZ4(src, maxBytes)
	case CodecZstd:
		out, err = decompressZstd(src, maxBytes)
	default:
		return nil, fmt.Errorf("%w: codec %d", ErrUnsupportedCodec, codec)
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidRecord, codecName(codec), err)
	}
	if len(out) > maxBytes { // belt and braces; every path checks already
		return nil, tooLarge(codec, maxBytes)
	}
	return out, nil
}

// Compress compresses src with codec. level 0 selects the codec's default;
// otherwise it is the codec's own scale: gzip 1..9 (and -2, huffman only),
// lz4 1..9, zstd 1..22 (mapped to the nearest klauspost/compress level).
// Snappy has no levels and ignores it. Snappy output is a raw snappy block
// (not xerial framed); lz4 output is an lz4 frame. CodecNone returns a copy
// of src.
func Compress(codec int, src []byte, level int) ([]byte, error) {
	switch codec {
	case CodecNone:
		return append([]byte(nil), src...), nil
	case CodecGzip:
		return compressGzip(src, level)
	case CodecSnappy:
		return snappy.Encode(nil, src), nil
	case CodecLZ4:
		return compressLZ4(src, level)
	case CodecZstd:
		return compressZstd(src, level)
	default:
		return nil, fmt.Errorf("%w: codec %d", ErrUnsupportedCodec, codec)
	}
}

func codecName(codec int) string {
	switch codec {
	case CodecNone:
		return "none"
	case CodecGzip:
		return "gzip"
	case CodecSnappy:
		return "snappy"
	case CodecLZ4:
		return "lz4"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec %d", codec)
}

func tooLarge(codec, maxBytes int) error {
	return fmt.Errorf("%w: %w: %s output over %d bytes", ErrInvalidRecord, ErrTooLarge, codecName(codec), maxBytes)
}

// initialCap is the first buffer size for codecs whose output size is not
// known up front: a guess from the input size, never above maxBytes.
func initialCap(srcLen, maxBytes int) int {
	n := 4 * srcLen
	if n < 4<<10 {
		n = 4 << 10
	}
	if n > 1<<20 {
		n = 1 << 20
	}
	if n > maxBytes {
		n = maxBytes
	}
	return n
}

// readBounded reads r to its end into a buffer that starts at hint bytes
// (at most maxBytes) and grows geometrically but never beyond maxBytes.
// Reading more than maxBytes is an ErrTooLarge error.
func readBounded(r io.Reader, hint, maxBytes, codec int) ([]byte, error) {
	buf := make([]byte, 0, min(hint, maxBytes))
	idle := 0
	for {
		var n int
		var err error
		if len(buf) == cap(buf) {
			if len(buf) >= maxBytes {
				// Full at the limit: the stream must be at its end.
				var one [1]byte
				if n, err = r.Read(one[:]); n > 0 {
					return nil, tooLarge(codec, maxBytes)
				}
			} else {
				grown := min(max(2*cap(buf), 512), maxBytes)
				nb := make([]byte, len(buf), grown)
				copy(nb, buf)
				buf = nb
				continue
			}
		} else {
			n, err = r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			if idle++; idle > 100 {
				return nil, io.ErrNoProgress
			}
		} else {
			idle = 0
		}
	}
}

// --- gzip ---

var gzipReaders sync.Pool // *gzip.Reader

func decompressGzip(src []byte, maxBytes int) ([]byte, error) {
	br := bytes.NewReader(src)
	var zr *gzip.Reader
	if v := gzipReaders.Get(); v != nil {
		zr = v.(*gzip.Reader)
		if err := zr.Reset(br); err != nil {
			gzipReaders.Put(zr)
			return nil, err
		}
	} else {
		var err error
		if zr, err = gzip.NewReader(br); err != nil {
			return nil, err
		}
	}
	out, err := readBounded(zr, initialCap(len(src), maxBytes), maxBytes, CodecGzip)
	gzipReaders.Put(zr)
	return out, err
}

// gzipWriters pools writers by level, gzip.StatelessCompression (-3)
// through gzip.BestCompression (9).
var gzipWriters [13]sync.Pool // *gzip.Writer

func compressGzip(src []byte, level int) ([]byte, error) {
	if level == 0 {
		level = gzip.DefaultCompression
	}
	if level < gzip.StatelessCompression || level > gzip.BestCompression {
		return nil, fmt.Errorf("record: gzip level %d out of range -3..9", level)
	}
	var buf bytes.Buffer
	buf.Grow(len(src)/2 + 64)
	pool := &gzipWriters[level-gzip.StatelessCompression]
	zw, _ := pool.Get().(*gzip.Writer)
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(&buf, level); err != nil {
			return nil, fmt.Errorf("record: gzip level %d: %w", level, err)
		}
	} else {
		zw.Reset(&buf)
	}
	if _, err := zw.Write(src); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	zw.Reset(io.Discard)
	pool.Put(zw)
	return buf.Bytes(), nil
}

// --- snappy ---

// xerialMagic opens the xerial snappy framing: magic, then a big endian
// version and minimum compatible version, then chunks of a big endian
// length followed by a raw snappy block.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

const xerialHeaderSize = 16

var errXerial = errors.New("malformed xerial snappy framing")

func isXerial(src []byte) bool {
	return len(src) >= xerialHeaderSize && bytes.Equal(src[:len(xerialMagic)], xerialMagic)
}

func decompressSnappy(src []byte, maxBytes int) ([]byte, error) {
	if !isXerial(src) {
		n, err := snappy.DecodedLen(src)
		if err != nil {
			return nil, err
		}
		if n > maxBytes {
			return nil, tooLarge(CodecSnappy, maxBytes)
		}
		return snappy.DecodeStrict(make([]byte, n), src)
	}
	// Sum the chunks' declared lengths first, so that the output is bounded
	// before anything is allocated and allocated once.
	chunks := src[xerialHeaderSize:]
	total := 0
	for rem := chunks; len(rem) > 0; {
		if len(rem) < 4 {
			return nil, errXerial
		}
		size := binary.BigEndian.Uint32(rem)
		rem = rem[4:]
		if size == 0 || uint64(size) > uint64(len(rem)) {
			return nil, errXerial
		}
		n, err := snappy.DecodedLen(rem[:size])
		if err != nil {
			return nil, err
		}
		if n > maxBytes-total {
			return nil, tooLarge(CodecSnappy, maxBytes)
		}
		total += n
		rem = rem[size:]
	}
	out := make([]byte, total)
	at := 0
	for rem := chunks; len(rem) > 0; {
		size := binary.BigEndian.Uint32(rem)
		rem = rem[4:]
		block := rem[:size]
		rem = rem[size:]
		n, _ := snappy.DecodedLen(block) // checked above
		if _, err := snappy.DecodeStrict(out[at:at+n:at+n], block); err != nil {
			return nil, err
		}
		at += n
	}
	return out, nil
}

// --- lz4 ---

var lz4Readers sync.Pool // *lz4.Reader

func decompressLZ4(src []byte, maxBytes int) ([]byte, error) {
	br := bytes.NewReader(src)
	zr, _ := lz4Readers.Get().(*lz4.Reader)
	if zr == nil {
		zr = lz4.NewReader(br)
	} else {
		zr.Reset(br)
	}
	out, err := readBounded(zr, initialCap(len(src), maxBytes), maxBytes, CodecLZ4)
	zr.Reset(nil)
	lz4Readers.Put(zr)
	return out, err
}

var lz4Levels = [...]lz4.CompressionLevel{lz4.Fast, lz4.Level1, lz4.Level2, lz4.Level3,
	lz4.Level4, lz4.Level5, lz4.Level6, lz4.Level7, lz4.Level8, lz4.Level9}

var lz4Writers [len(lz4Levels)]sync.Pool // *lz4.Writer by level

func compressLZ4(src []byte, level int) ([]byte, error) {
	if level < 0 || level >= len(lz4Levels) {
		return nil, fmt.Errorf("record: lz4 level %d out of range 0..9", level)
	}
	var buf bytes.Buffer
	buf.Grow(len(src)/2 + 64)
	pool := &lz4Writers[level]
	zw, _ := pool.Get().(*lz4.Writer)
	if zw == nil {
		zw = lz4.NewWriter(&buf)
		// 64 KiB blocks, as the Java client writes them.
		if err := zw.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.CompressionLevelOption(lz4Levels[level])); err != nil {
			return nil, err
		}
	} else {
		zw.Reset(&buf)
	}
	if _, err := zw.Write(src); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	zw.Reset(nil)
	pool.Put(zw)
	return buf.Bytes(), nil
}

// --- zstd ---

var (
	zstdDecOnce sync.Once
	zstdDec     *zstd.Decoder
	zstdDecErr  error
)

// zstdDecoder is one shared decoder: DecodeAll is safe for concurrent use
// and runs up to GOMAXPROCS decodes at once.
func zstdDecoder() (*zstd.Decoder, error) {
	zstdDecOnce.Do(func() {
		zstdDec, zstdDecErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxMemory(1<<31),
		)
	})
	return zstdDec, zstdDecErr
}

// zstdBlockRoom is the largest output of one zstd block plus the decoder's
// copy overrun: with less room left than this a block may fail to fit.
const zstdBlockRoom = 128<<10 + 16

func decompressZstd(src []byte, maxBytes int) ([]byte, error) {
	dec, err := zstdDecoder()
	if err != nil {
		return nil, err
	}
	// With the cap limit, DecodeAll never writes past cap(dst); start from
	// the frame's declared size when it has one, from a guess otherwise, and
	// double on overflow up to maxBytes.
	size := initialCap(len(src), maxBytes)
	var fh zstd.Header
	if fh.Decode(src) == nil && fh.HasFCS {
		if fh.FrameContentSize > uint64(maxBytes) {
			return nil, tooLarge(CodecZstd, maxBytes)
		}
		size = int(fh.FrameContentSize)
	}
	for {
		size = max(size, 1) // a zero cap would mean no limit
		out, err := dec.DecodeAll(src, make([]byte, 0, size))
		if err == nil {
			if len(out) > maxBytes {
				return nil, tooLarge(CodecZstd, maxBytes)
			}
			return out, nil
		}
		// Running out of room shows as ErrDecoderSizeExceeded, or, when a
		// block does not fit what is left, as an untyped "output bigger
		// than max block size" error: tell that from corruption by how
		// much room was left when decoding stopped.
		full := errors.Is(err, zstd.ErrDecoderSizeExceeded) ||
			(strings.Contains(err.Error(), "output bigger than max block size") && size-len(out) < zstdBlockRoom)
		if !full {
			return nil, err
		}
		if size >= maxBytes {
			return nil, tooLarge(CodecZstd, maxBytes)
		}
		size = min(max(2*size, 64<<10), maxBytes)
	}
}

var zstdEncoders [4]sync.Pool // by zstd.EncoderLevel-1

func compressZstd(src []byte, level int) ([]byte, error) {
	el := zstd.SpeedDefault
	if level != 0 {
		if level < 0 || level > 22 {
			return nil, fmt.Errorf("record: zstd level %d out of range 1..22", level)
		}
		el = zstd.EncoderLevelFromZstd(level)
	}
	pool := &zstdEncoders[el-1]
	enc, _ := pool.Get().(*zstd.Encoder)
	if enc == nil {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(el), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
	}
	out := enc.EncodeAll(src, make([]byte, 0, len(src)/2+64))
	pool.Put(enc)
	return out, nil
}
