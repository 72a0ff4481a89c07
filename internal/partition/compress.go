package partition

import (
	"errors"
	"fmt"

	"github.com/sluice-io/sluice/internal/config"
	"github.com/sluice-io/sluice/internal/record"
)

// Kafka's defaults for compression.gzip/lz4/zstd.level.
const (
	DefaultGzipLevel = -1 // the codec's default (6)
	DefaultLZ4Level  = 9
	DefaultZstdLevel = 3
)

// maxRecompressBytes bounds one produced batch decompressed to be
// recompressed with the topic's codec (socket.request.max.bytes, as for
// the key check of compacted topics).
const maxRecompressBytes = 100 << 20

// recompression is what the produce path needs of the configs to
// recompress a batch without the partition's lock: the target codec (-1
// keeps the producer's), its level on record.Compress's scale, and
// max.message.bytes.
type recompression struct {
	codec           int
	level           int
	maxMessageBytes int32
}

func recompressionOf(c Config) *recompression {
	r := &recompression{codec: -1, maxMessageBytes: c.MaxMessageBytes}
	switch c.CompressionType {
	case config.CompressionUncompressed:
		r.codec = record.CodecNone
	case config.CompressionGzip:
		r.codec, r.level = record.CodecGzip, gzipLevel(c.GzipLevel)
	case config.CompressionSnappy:
		r.codec = record.CodecSnappy
	case config.CompressionLz4:
		r.codec, r.level = record.CodecLZ4, lz4Level(c.LZ4Level)
	case config.CompressionZstd:
		r.codec, r.level = record.CodecZstd, zstdLevel(c.ZstdLevel)
	}
	return r
}

// gzipLevel maps compression.gzip.level (1..9, -1 default) to
// record.Compress's scale: the same, 0 for the default.
func gzipLevel(l int32) int {
	if l < 1 || l > 9 {
		return 0
	}
	return int(l)
}

// lz4Level maps compression.lz4.level (Kafka 1..17: 1 is lz4's fast
// compressor, 2..17 its high-compression levels) to record.Compress's 0
// (fast) .. 9: levels above 9 compress as 9.
func lz4Level(l int32) int {
	switch {
	case l <= 1:
		return 0
	case l > 9:
		return 9
	}
	return int(l)
}

// zstdLevel maps compression.zstd.level (Kafka -131072..22, 3 the default)
// to record.Compress's 1..22; negative (fast) levels compress as 1.
func zstdLevel(l int32) int {
	switch {
	case l < 1:
		return 1
	case l > 22:
		return 22
	}
	return int(l)
}

// recompress rebuilds a produced batch with the topic's codec when it
// differs from the producer's, as Kafka's LogValidator does: batches
// already in the topic's codec (whatever their level) and control batches
// are kept as they are. It returns the batch to store and its header.
func recompress(batch []byte, h record.Header, rc *recompression) ([]byte, record.Header, error) {
	if rc.codec < 0 || int(h.Codec()) == rc.codec || h.IsControl() {
		return batch, h, nil
	}
	if len(batch) > int(rc.maxMessageBytes) { // refused before any work, as under the lock
		return nil, h, fmt.Errorf("%w: batch of %d bytes is above max.message.bytes %d",
			ErrMessageTooLarge, len(batch), rc.maxMessageBytes)
	}
	limit := maxRecompressBytes
	if rc.codec == record.CodecNone {
		// Stored uncompressed, the records must fit max.message.bytes.
		limit = min(limit, max(int(rc.maxMessageBytes)-record.HeaderSize, 0))
	}
	out, err := record.Recompress(batch, h, rc.codec, rc.level, limit)
	if err != nil {
		switch {
		case errors.Is(err, record.ErrTooLarge):
			return nil, h, fmt.Errorf("%w: records decompress to more than %d bytes (compression.type stores them recompressed): %v",
				ErrMessageTooLarge, limit, err)
		case errors.Is(err, record.ErrInvalidRecord):
			return nil, h, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
		default:
			return nil, h, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
		}
	}
	nh, err := record.ParseHeader(out)
	if err != nil { // cannot happen: Recompress wrote it
		return nil, h, fmt.Errorf("%w: recompressed batch: %v", ErrCorruptMessage, err)
	}
	return out, nh, nil
}
