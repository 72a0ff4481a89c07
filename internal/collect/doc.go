// Package collect is `sluice collect`: a stateless HTTP service that takes
// events from browsers, apps and servers and produces them to Kafka topics
// through the Kafka protocol (a franz-go client), so it works in front of
// any Kafka cluster. Run as many as needed behind any load balancer.
//
// # Requests
//
// POST /v1/streams/{stream} takes one JSON object, a JSON array of them,
// or NDJSON, optionally gzipped, as any content type (text/plain is what
// navigator.sendBeacon sends, and needs no CORS preflight). GET on the
// same path is the 1x1 GIF fallback: the event is the data query
// parameter (JSON), or else the other query parameters as string fields.
// A token comes as Authorization: Bearer T, or as ?token=T where a header
// cannot be set.
//
// Answers: 202 when events were taken into the buffer (delivery to the
// cluster is asynchronous), with per-event errors for the invalid ones;
// 400 when the body is not JSON or no event is valid (with the same
// per-event errors); 401 without a token on a stream that needs one; 403
// for a token that is unknown or not allowed on the stream; 413 over
// limits.max_body_bytes (before or after gunzip) or limits.max_events;
// 429 over the source's rate limit; 503 with Retry-After when the
// in-memory buffer is full or the stream's schema has not been fetched
// yet. A slow or absent cluster is never a 5xx until the buffer is full.
//
// # Encoding
//
// A stream with an Avro schema converts each event (JSON) to Avro through
// the schema and sends it in Confluent's wire format (magic byte 0, the
// 4-byte big-endian schema id, the Avro binary). A JSON Schema stream
// validates the event and sends it as received (or behind the same 5-byte
// prefix with json_wire_prefix). A stream without a schema takes any JSON
// object as received. Every record carries the receive time (as its
// timestamp and the sluice-received-at header), the collector's id
// (sluice-collector-id) and the source (sluice-source) when a token came
// with it, and is keyed by the stream's key_field.
//
// Schemas come from a Confluent-compatible registry by subject and
// version; "latest" is fetched again every refresh_interval, so that a
// new version is used without a restart (events already buffered keep
// the schema id they were encoded with).
//
// # Buffer, spool and backpressure
//
// The handler never waits for the cluster. Accepted records wait in an
// in-memory buffer bounded in bytes (limits.buffer_bytes); a request's
// records are reserved all at once, so a request is taken whole or
// refused whole, and a client retrying after a 503 sends no duplicates.
//
// With a spool (spool.dir), what the buffer cannot take goes to segment
// files on disk, fsynced before the 202, bounded by spool.max_bytes; so do
// records the cluster has not acknowledged within limits.delivery_timeout.
// A second producer replays the spool in order once the cluster takes
// records again, saving its position (replay.checkpoint) after each
// acknowledged window; while anything is spooled, new requests go to the
// spool too, so that none overtakes an earlier event. Only a full spool
// (or a failing disk) answers 503. Without a spool, a full buffer is a 503
// and a record the delivery timeout fails is dropped and counted
// (sluice_collect_events_dropped_total{reason="delivery"}).
//
// What a kill -9 (or a power cut) keeps: every event answered 202 from the
// spool; the next collector on the same spool dir replays it. Events of
// the replay window the kill interrupted may reach the topic twice (the
// idempotent producer dedupes its own retries within one run, not across
// runs). Events answered 202 from the in-memory buffer and not yet
// acknowledged are lost; a clean stop spools what it cannot flush.
//
// # Audit counts
//
// With Options.Audit (sluice collect --audit), every record the cluster
// acknowledged, from the buffer or the spool's replay, is counted as the
// audit stage "collect" (internal/audit.Counter) with its topic,
// partition, offset and timestamp (the receive time), in the produce
// promise: a lock and no allocation per record. A record dropped or
// spooled is not counted until the cluster acknowledges it.
package collect
