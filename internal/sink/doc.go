// Package sink is `sluice sink`: records of Kafka topics written to object
// storage (an S3-compatible bucket or a local directory) as files of a
// format (internal/sink/format), each record exactly once.
//
// # Layout
//
// An object's key is
//
//	<topic>/<partition-by path>/<topic>+<partition>+<first offset>+<last offset><ext>
//
// with both offsets zero padded to 20 digits: a name depends only on the
// topic, the partition and the offsets the object holds, so writing the
// same records again writes the same names.
//
// # Exactly once
//
// One kgo consumer in a group (auto-commit off, BlockRebalanceOnPoll) feeds
// one loop that owns all state. Per partition, records go into open files,
// one per partition-by path (a format may start another file for the same
// path, format.ErrNewFile, which depends only on the records). A cut seals
// all of a partition's open files at once: they cover offsets [first, end].
// Cuts are made by --roll-size (a file reached it), --roll-time (the oldest
// open record was taken that long ago), the memory limit (over
// --max-buffered-bytes, the partition with the most buffered bytes is cut
// early), or a replay (below). Sealed cuts are flushed together, as a
// batch (up to 32 cuts per partition, whose ends fit the commit metadata)
// run by a goroutine of its own while the loop goes on reading and
// encoding; one batch is in flight at a time, so a partition's batches
// commit in order:
//
//  1. Pending commit: for each partition, the group's committed offset is
//     set to the first sealed offset a (where it already is, or past
//     records that are not there, like transaction markers) with commit
//     metadata "sluice-sink/1 cuts=e1,e2,..." listing the ends of its
//     sealed cuts. Nothing is uploaded unless this commit succeeded.
//  2. Every sealed file is uploaded, in parallel, each retried with backoff
//     until it succeeds: a slow or failing store stops the loop (and so
//     consumption), never drops anything. Uploads are atomic (backup.Dir:
//     temp file, fsync, rename, directory fsync; backup.S3: one sized PUT,
//     a multipart upload above 16 MiB), so a name exists whole or not at
//     all.
//  3. End commit: the committed offset becomes the last end + 1, with empty
//     metadata.
//
// When a partition is (re)assigned, the sink reads its committed offset
// and metadata before taking its records. Cuts listed there must be made
// again: the records from a are cut exactly at e1, e2, ... (roll size,
// roll time and the memory limit are ignored until the last listed end is
// reached), which rebuilds the same files with the same names and the same
// content (a format encodes only the records), so an upload repeated after
// a crash overwrites an object with itself. A crash before 1 completes
// uploaded nothing past the committed offset; between 1 and 3 the next run
// repeats the same cuts; after 3 nothing is pending. So wall-clock cuts
// (roll time, memory pressure) are free to land anywhere: the one that was
// made is recorded before any object of it exists.
//
// A failed commit (1 or 3) rewinds the partition to a (kgo SetOffsets)
// with the cuts it tried, and those sealed after them, kept as pending,
// and drops its buffered files: the records are read again and cut the
// same way. Revoked or lost partitions are dropped without a commit; their
// next owner reads the metadata. The loop lets the group rebalance
// (BlockRebalanceOnPoll, AllowRebalance) only while no batch is in flight,
// so no commit runs during a rebalance and none is made for a partition
// after its revocation; a member that was kicked out instead (a batch
// stuck on a failing store past the rebalance timeout) commits with a
// stale generation, which the coordinator refuses. Its late uploads write
// names that its successor writes with the same content.
//
// Replays assume the same --format, --partition-by and format options as
// the run that made the cuts (roll settings may change): with others, the
// replayed files differ and the first attempt's objects stay beside them.
//
// What is not covered: if records inside a pending range disappear before
// the replay (retention or compaction deleting them after a crash), the
// replayed files hold fewer records and their names differ from the
// orphans of the first attempt. Dir leaves the temporary files of an
// upload cut short by a crash (".name.tmp-*", hidden from Target.List).
//
// # Memory
//
// Encoded bytes not yet in open files are kept under MaxBufferedBytes by
// cutting the largest partition early; with the batch in flight and the
// cuts waiting for the next, the total is at most about twice that: over
// MaxBufferedBytes in all, the loop stops polling until the batch in
// flight ends. Replays of pending cuts ignore the limit (each cut was
// under it when first made). kgo's own fetch buffer comes on top, and so
// does the memory of uploaded files kept for the next ones (chunkPool):
// up to MaxBufferedBytes more while records flow, given back after
// poolIdleTrim without records and when Run returns.
package sink
