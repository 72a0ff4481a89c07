package powerloss

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/sluice-io/sluice/internal/record"
	"github.com/sluice-io/sluice/internal/vfs"
)

// syncGate makes the power cut of several filesystems one instant. What a
// MemFS keeps through a crash changes only in File.Sync and FS.SyncDir;
// those hold the gate shared, and crash holds it exclusively while it
// crashes every filesystem, so no node's disk moves on between the first
// crash and the last.
type syncGate struct{ mu sync.RWMutex }

// fs is inner with its fsyncs behind the gate, and behind s.
func (g *syncGate) fs(inner vfs.FS, s *stall) vfs.FS { return gatedFS{FS: inner, g: g, s: s} }

// crash returns what each filesystem keeps from a power cut at one
// instant (see vfs.MemFS.Crash).
func (g *syncGate) crash(fss []*vfs.MemFS) []*vfs.MemFS {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*vfs.MemFS, len(fss))
	for i, fs := range fss {
		out[i] = fs.Crash()
	}
	return out
}

type gatedFS struct {
	vfs.FS
	g *syncGate
	s *stall
}

func (fs gatedFS) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return gatedFile{File: f, g: fs.g, s: fs.s}, nil
}

func (fs gatedFS) Create(name string) (vfs.File, error)     { return fs.wrap(fs.FS.Create(name)) }
func (fs gatedFS) OpenAppend(name string) (vfs.File, error) { return fs.wrap(fs.FS.OpenAppend(name)) }
func (fs gatedFS) Open(name string) (vfs.File, error)       { return fs.wrap(fs.FS.Open(name)) }

func (fs gatedFS) SyncDir(dir string) error {
	fs.g.mu.RLock()
	defer fs.g.mu.RUnlock()
	return fs.FS.SyncDir(dir)
}

type gatedFile struct {
	vfs.File
	g *syncGate
	s *stall
}

func (f gatedFile) Sync() error {
	f.s.wait(f.Name())
	f.g.mu.RLock()
	defer f.g.mu.RUnlock()
	return f.File.Sync()
}

// stall hangs the fsyncs of the files in chosen directories until it is
// lifted: a disk that stopped answering for them (a follower that falls out
// of the ISR while its leader goes on). The wait comes before the gate, so
// a hung fsync does not hold up a power cut.
type stall struct {
	mu     sync.Mutex
	dirs   map[string]bool
	lifted chan struct{}
}

// hold hangs the fsyncs of files directly in dirs.
func (s *stall) hold(dirs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lifted == nil {
		s.lifted = make(chan struct{})
	}
	s.dirs = map[string]bool{}
	for _, d := range dirs {
		s.dirs[filepath.Clean(d)] = true
	}
}

// lift lets every hung fsync go on, and stops hanging any.
func (s *stall) lift() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lifted != nil {
		close(s.lifted)
		s.lifted = nil
	}
	s.dirs = nil
}

func (s *stall) wait(name string) {
	s.mu.Lock()
	held, lifted := s.dirs[filepath.Dir(filepath.Clean(name))], s.lifted
	s.mu.Unlock()
	if held {
		<-lifted
	}
}

// nodeListener is a node's listening socket as a power cut sees it: cut
// closes it and every connection it accepted, as a machine that lost its
// power, whatever its owner (server, netmux) does. The connections are
// handed on as the *net.TCPConn they are (netmux peeks at them with
// MSG_PEEK).
type nodeListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func listen(host string) (*nodeListener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	return &nodeListener{Listener: ln}, nil
}

func (l *nodeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns = append(l.conns, c)
	return c, nil
}

// cut closes the listener and every connection it accepted.
func (l *nodeListener) cut() {
	l.mu.Lock()
	l.dead = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	l.Listener.Close()
	for _, c := range conns {
		c.Close()
	}
}

// diskLog is what a crashed disk holds of one partition: the value at each
// offset, read straight from the segment files.
type diskLog struct {
	values map[int64]string
	end    int64  // one past the last offset found
	tail   string // why the scan stopped before a segment's end, if it did
}

// maxSegmentRead bounds a segment file the disk scan reads whole.
const maxSegmentRead = 256 << 20

// readDisk reads partitions 0..n-1 of topic from the segment files under
// dataDir, without the broker: what the power cut left, for the check and
// for reporting which node had what.
func readDisk(fs vfs.FS, dataDir, topic string, n int) (map[int32]*diskLog, error) {
	out := map[int32]*diskLog{}
	for p := range int32(n) {
		d := &diskLog{values: map[int64]string{}}
		out[p] = d
		dir := filepath.Join(dataDir, fmt.Sprintf("%s-%d", topic, p))
		names, err := fs.List(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			if !strings.HasSuffix(name, ".log") {
				continue
			}
			b, err := vfs.ReadFile(fs, filepath.Join(dir, name), maxSegmentRead)
			if err != nil {
				return nil, err
			}
			for len(b) > 0 {
				h, err := record.Parse(b)
				if err != nil {
					d.tail = fmt.Sprintf("%s: %d bytes not a batch: %v", name, len(b), err)
					break
				}
				recs, err := record.Records(b[:h.Size()], h, maxSegmentRead)
				if err != nil {
					return nil, fmt.Errorf("%s at offset %d: %w", name, h.BaseOffset, err)
				}
				for _, r := range recs {
					d.values[h.BaseOffset+int64(r.OffsetDelta)] = string(r.Value)
				}
				d.end = max(d.end, h.LastOffset()+1)
				b = b[h.Size():]
			}
		}
	}
	return out, nil
}
