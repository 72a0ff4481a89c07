// Package schemareg is a schema registry that speaks Confluent's REST API
// (the endpoints clients use: subjects, versions, ids, compatibility,
// config, mode, soft and permanent deletes, references), for AVRO and JSON
// schemas, with its state in a compacted Kafka topic (_schemas). `sluice
// serve` runs one per broker on --schema-registry-listen; it talks to the
// cluster only through the Kafka protocol (a franz-go client), so it works
// in front of any Kafka cluster.
//
// # State and ordering
//
// Every instance consumes _schemas (one partition) from the start and
// applies its records in offset order to an in-memory state (state.go), a
// pure state machine. Reads are answered from that state, once the
// instance has applied a NOOP record it wrote at start (so everything
// written before it started); until then, 503 with error code 50003.
//
// A write (register, delete, config, mode) is planned on the instance's
// state, produced with acks=all and idempotence, and answered once the
// instance has applied its own record. There is no elected leader (as
// Confluent's registry has): the log is the one writer. A SCHEMA record
// names its subject, version and id, chosen by the writer from its state
// (the next version; the id of the same content anywhere, else the highest
// id seen plus one), and whether it takes effect is decided when it is
// applied, by the records before it: its version must be above every
// version of its subject, its id unused or used by the same content, and
// its content not already live in the subject. Every instance applies the
// same log, so every instance takes the same decisions and hands out the
// same ids and versions. Two instances registering at once both write;
// the first record in the log wins, the second has no effect, and its
// writer, seeing that its schema is not registered, plans again (against
// the new version, so compatibility is checked against it too) up to
// maxRegisterAttempts times. The same content registered concurrently in
// one subject yields one version: the loser finds the winner's and
// answers its id.
//
// Why not assign ids when records are applied (a "register" record
// without an id)? Compaction removes records, and assignment by position
// would then hand out different ids on a replay of the compacted log.
// Here every SCHEMA record carries its decision, compaction removes only
// records a tombstone asked for (keys carry a nonce, so no two writes
// share a key), and a permanent delete first tombstones every record that
// was rejected, so that no loser can take effect once its winner is gone.
//
// Mode (READONLY) and compatibility are checked by the writer when it
// plans, not when records are applied: a mode change and a registration
// racing through two instances may both succeed. Soft deletes are DELETE
// records, checked when applied like SCHEMA records.
//
// # Not served (yet)
//
// PROTOBUF; schema contexts; metadata and rule sets (accepted, ignored);
// normalize; the IMPORT mode's rule that the registry be empty; Confluent's
// group-based leader election and request forwarding (not needed: see
// above). JSON Schema compatibility is a sound subset of Confluent's
// (jsonschema.go lists what is checked).
package schemareg
