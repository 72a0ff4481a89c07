package broker

import "syscall"

// File descriptors for segment files when Config.MaxOpenFiles is 0.
const (
	// openFilesShare: segment files get 1/openFilesShare of RLIMIT_NOFILE
	// (Go raises the soft limit to the hard one at start); the rest is
	// for client connections, the metadata quorum's files, checkpoints
	// and snapshots being written, and the cleaner's files.
	openFilesShare = 2
	// minOpenFiles is the floor under a tiny RLIMIT_NOFILE: fewer makes
	// every fetch of a cold partition reopen files.
	minOpenFiles = 64
	// fallbackOpenFiles is used when RLIMIT_NOFILE cannot be read.
	fallbackOpenFiles = 512
)

// defaultMaxOpenFiles derives the segment file limit from RLIMIT_NOFILE.
func defaultMaxOpenFiles() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return fallbackOpenFiles
	}
	if rl.Cur > 1<<30 { // RLIM_INFINITY or near it
		return 1 << 29
	}
	return max(int(rl.Cur/openFilesShare), minOpenFiles)
}
