package log

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-io/sluice/internal/vfs"
)

// LogDir is the health of a log directory (a broker's data dir), shared by
// the logs in it, after Kafka's LogDirFailureChannel.
//
//   - Offline: a log's write or fsync failed for another reason than a full
//     disk (EIO, a failed fsync whatever its errno: after one, the kernel
//     may have dropped the pages it could not write). As in Kafka, every log
//     in the directory then refuses appends (KAFKA_STORAGE_ERROR) until the
//     broker restarts and recovers them; reads go on serving what is there.
//   - NoSpace: a write found the disk full (ENOSPC). The log cut what the
//     write left and stays writable: a later append retries, and the first
//     that succeeds in any log of the directory (or a ProbeSpace that does)
//     clears the state. Kafka takes the directory offline instead.
//
// Safe for concurrent use.
type LogDir struct {
	path   string
	logger *slog.Logger
	now    func() time.Time

	offline atomic.Pointer[DirError]
	noSpace atomic.Pointer[DirError]
}

// DirError is a storage failure of a log directory: the first one seen.
type DirError struct {
	Err   error
	Log   string // the directory of the log that found it
	Since time.Time
}

// NewLogDir returns the health of the log directory path, online.
func NewLogDir(path string, logger *slog.Logger) *LogDir {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &LogDir{path: path, logger: logger, now: time.Now}
}

// Path is the directory.
func (d *LogDir) Path() string { return d.path }

// Offline returns the failure that took the directory offline, or nil.
func (d *LogDir) Offline() *DirError { return d.offline.Load() }

// NoSpace returns the full-disk error a write found, or nil once a write
// succeeded since.
func (d *LogDir) NoSpace() *DirError { return d.noSpace.Load() }

// fail takes the directory offline; only the first failure counts.
func (d *LogDir) fail(logDir string, err error) {
	if d.offline.CompareAndSwap(nil, &DirError{Err: err, Log: logDir, Since: d.now()}) {
		d.logger.Error("log directory offline: its logs take no more writes until the broker restarts and recovers them; "+
			"check the disk (dmesg, SMART) before restarting", "log_dir", d.path, "log", logDir, "err", err)
	}
}

// full records that a write found the disk full.
func (d *LogDir) full(logDir string, err error) {
	if d.noSpace.Load() == nil && d.noSpace.CompareAndSwap(nil, &DirError{Err: err, Log: logDir, Since: d.now()}) {
		d.logger.Error("log directory full: appends fail with KAFKA_STORAGE_ERROR until space is freed "+
			"(delete or shorten the retention of topics, or grow the disk); they resume by themselves",
			"log_dir", d.path, "log", logDir, "err", err)
	}
}

// spaceReturned clears the full state after a write succeeded.
func (d *LogDir) spaceReturned() {
	if was := d.noSpace.Swap(nil); was != nil {
		d.logger.Info("log directory has space again; appends resume", "log_dir", d.path,
			"full_for", d.now().Sub(was.Since).Round(time.Millisecond))
	}
}

// spaceProbeBytes is what ProbeSpace writes: a small batch's worth.
const spaceProbeBytes = 64 << 10

// spaceProbeFile is written and removed by ProbeSpace; a leftover is
// removed by the next probe (its content does not matter).
const spaceProbeFile = ".space-probe.tmp"

// ProbeSpace checks, while the directory is full, whether a write fits
// again, by writing spaceProbeBytes to a scratch file and removing it: so
// that the full state clears though no producer retries. It returns nil when
// there is space (or the directory was not full).
func (d *LogDir) ProbeSpace(fs vfs.FS) error {
	if d.noSpace.Load() == nil {
		return nil
	}
	name := filepath.Join(d.path, spaceProbeFile)
	f, err := fs.Create(name)
	if err == nil {
		_, err = f.Write(make([]byte, spaceProbeBytes))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if rerr := fs.Remove(name); rerr != nil && err == nil && !isNotExist(rerr) {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("log: probe the space of %s: %w", d.path, err)
	}
	d.spaceReturned()
	return nil
}

// isNoSpace says whether err is a full disk (or quota).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Reasons a log refuses appends (Log.StorageError).
const (
	ReasonIOError       = "io_error"        // a write or fsync of this log failed
	ReasonLogDirOffline = "log_dir_offline" // one of another log of its directory did
	ReasonNoSpace       = "no_space"        // its last append found the disk full
)
