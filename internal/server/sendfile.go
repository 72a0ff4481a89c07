package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/sluice-io/sluice/internal/vfs"
)

// Region is a byte range of a file that goes into a response straight from
// the file to the socket (sendfile), never through user space. The handler
// puts Marker in the response where the bytes belong (as the whole value of
// a bytes field, e.g. a fetch partition's records); the writer finds it in
// the encoded response and sends the file range in its place.
type Region struct {
	Marker []byte // RegionMarkerBytes random bytes, unique in the response
	File   vfs.File
	Pos    int64
	Size   int64
	// Release, if set, is called once the region was sent or its response
	// dropped: the file may then be closed (the log's file cache keeps it
	// open until then).
	Release func()
}

// ReleaseRegions calls each region's Release.
func ReleaseRegions(rs []Region) {
	for _, r := range rs {
		if r.Release != nil {
			r.Release()
		}
	}
}

// RegionMarkerBytes is the size of a Region's marker.
const RegionMarkerBytes = 16

// copyRegionBytes is the size up to which a region is read into the
// response instead of sent with sendfile: for a few KiB, one pread and one
// write beat a flush, a sendfile and another write.
const copyRegionBytes = 16 << 10

// maxSendfileChunk bounds one sendfile call.
const maxSendfileChunk = 1 << 30

// piece is part of a framed response: bytes, or a file region.
type piece struct {
	b      []byte
	region *Region
}

// spliceRegions turns an encoded response (with its size prefix) into
// pieces, replacing each marker and its length prefix with the region's
// real length and the region itself. flexible says whether bytes fields are
// compact (uvarint length+1) rather than int32-prefixed.
func spliceRegions(buf []byte, regions []Region, flexible bool) ([]piece, error) {
	var pieces []piece
	total := int64(len(buf))
	from, start := 4, 0
	for i := range regions {
		r := &regions[i]
		at := bytes.Index(buf[from:], r.Marker)
		if at < 0 {
			return nil, fmt.Errorf("BUG: region marker %d not in the response", i)
		}
		at += from
		var prefixLen int
		var prefix []byte
		if flexible {
			v, n := binary.Uvarint(buf[at-1:])
			if n != 1 || v != RegionMarkerBytes+1 {
				return nil, fmt.Errorf("BUG: region marker %d not a whole compact bytes field", i)
			}
			prefixLen = 1
			prefix = binary.AppendUvarint(nil, uint64(r.Size)+1)
		} else {
			if binary.BigEndian.Uint32(buf[at-4:]) != RegionMarkerBytes {
				return nil, fmt.Errorf("BUG: region marker %d not a whole bytes field", i)
			}
			prefixLen = 4
			prefix = binary.BigEndian.AppendUint32(nil, uint32(r.Size))
		}
		pieces = append(pieces, piece{b: buf[start : at-prefixLen]}, piece{b: prefix})
		if r.Size <= copyRegionBytes {
			b := make([]byte, r.Size)
			if n, err := r.File.ReadAt(b, r.Pos); n != len(b) {
				return nil, fmt.Errorf("read %d bytes at %d for a fetch: %w", r.Size, r.Pos, err)
			}
			pieces = append(pieces, piece{b: b})
		} else {
			pieces = append(pieces, piece{region: r})
		}
		total += int64(len(prefix)) - int64(prefixLen) - RegionMarkerBytes + r.Size
		from = at + RegionMarkerBytes
		start = from
	}
	pieces = append(pieces, piece{b: buf[start:]})
	binary.BigEndian.PutUint32(buf, uint32(total-4))
	return pieces, nil
}

// writePieces writes a spliced response.
func writePieces(w *bufio.Writer, nc net.Conn, pieces []piece) error {
	for _, p := range pieces {
		if p.region == nil {
			if _, err := w.Write(p.b); err != nil {
				return err
			}
			continue
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := sendRegion(nc, p.region); err != nil {
			return err
		}
	}
	return nil
}

// sendRegion sends a file range with sendfile(2) at an explicit offset, so
// concurrent readers of one file never share a file position; it falls
// back to read-and-write when either side is not a real file or socket.
func sendRegion(nc net.Conn, r *Region) error {
	f, okf := vfs.OSFile(r.File)
	tc, okc := nc.(*net.TCPConn)
	if !okf || !okc {
		_, err := io.Copy(nc, io.NewSectionReader(r.File, r.Pos, r.Size))
		return err
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	fraw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var sendErr error
	err = fraw.Read(func(src uintptr) bool {
		pos, left := r.Pos, r.Size
		werr := rc.Write(func(dst uintptr) bool {
			for left > 0 {
				n, err := syscall.Sendfile(int(dst), int(src), &pos, int(min(left, maxSendfileChunk)))
				if n > 0 {
					left -= int64(n)
				}
				switch {
				case errors.Is(err, syscall.EAGAIN):
					return false // wait until the socket is writable
				case errors.Is(err, syscall.EINTR):
					continue
				case err != nil:
					sendErr = fmt.Errorf("sendfile: %w", err)
					return true
				case n == 0:
					sendErr = fmt.Errorf("sendfile: file ended %d bytes early", left)
					return true
				}
			}
			return true
		})
		if werr != nil && sendErr == nil {
			sendErr = werr
		}
		return true
	})
	if err != nil {
		return err
	}
	return sendErr
}
