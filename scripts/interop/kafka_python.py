"""kafka-python side of the interop test.

  kafka_python.py produce BROKER TOPIC CODEC EXPECTED_OUT
  kafka_python.py consume BROKER TOPIC CODEC EXPECTED_IN [TS_MIN TS_MAX]
  kafka_python.py batches BROKER TOPIC CODEC PRODUCER   (checks the codec of every stored batch;
                                                          PRODUCER: kafka-python or librdkafka)

No consumer group: the consumer uses assign() with group_id=None, so these
roundtrips do not depend on the group coordinator (groups.py tests that).
Exit 0 ok, 1 failure, 3 skipped (reason printed).
"""

import logging
import sys
import time

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kerrors
from kafka.codec import has_gzip, has_lz4, has_snappy, has_zstd

from common import PARTITIONS, compare, die, dump, gen, load, skip

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
HAS = {"none": lambda: True, "gzip": has_gzip, "snappy": has_snappy, "lz4": has_lz4, "zstd": has_zstd}
LIBS = {"snappy": "python3-snappy", "lz4": "python3-lz4", "zstd": "python3-zstandard", "gzip": "zlib"}
TIMEOUT = 30
STALL = 6  # a consumer that gets nothing new for this long gives up


def need_codec(codec):
    if not HAS[codec]():
        skip("kafka-python %s: codec %s needs %s, which is not importable" % (kafka.__version__, codec, LIBS[codec]))


def produce(broker, topic, codec, out):
    need_codec(codec)
    try:
        p = KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=100, batch_size=256 * 1024,
                          compression_type=None if codec == "none" else codec,
                          max_block_ms=TIMEOUT * 1000, request_timeout_ms=TIMEOUT * 1000, retries=3)
    except AssertionError as e:
        # kafka-python 2.0 refuses zstd unless its guess of the broker's
        # version (from ApiVersions) is 2.1 or later.
        skip("kafka-python %s refuses %s: %s" % (kafka.__version__, codec, e))
    print("     kafka-python %s producer: guessed broker version %s" % (kafka.__version__, p.config["api_version"]), flush=True)
    # kafka-python 2.0's send() takes only bytes header values: no nulls.
    recs = gen("kp-" + codec, 24, null_header_values=False)
    futs = [p.send(topic, value=r["value"], key=r["key"], headers=r["headers"],
                   partition=r["partition"], timestamp_ms=r["timestamp"]) for r in recs]
    p.flush(timeout=TIMEOUT)
    for r, f in zip(recs, futs):
        try:
            md = f.get(timeout=TIMEOUT)
        except Exception as e:  # noqa: BLE001 - report whatever the client raised
            die("kafka-python produce to %s [%d] (%s): %r" % (topic, r["partition"], codec, e))
        if md.partition != r["partition"]:
            die("kafka-python produce: record for partition %d acked on %d" % (r["partition"], md.partition))
        r["offset"] = md.offset
    p.close(timeout=10)
    dump(recs, out)
    print("     kafka-python produced %d records to %s (%s)" % (len(recs), topic, codec), flush=True)


class _Collect(logging.Handler):
    """Keeps the fetcher's warnings (it logs some fetch errors and retries)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = []

    def emit(self, record):
        self.seen.append(record.getMessage())


def consume(broker, topic, codec, expected_path, ts_min=None, ts_max=None):
    need_codec(codec)
    expected = load(expected_path)
    want = {}
    for r in expected:
        want[r["partition"]] = want.get(r["partition"], 0) + 1
    fetch_errors = _Collect()
    logging.getLogger("kafka.consumer.fetcher").addHandler(fetch_errors)
    logging.getLogger("kafka.consumer.fetcher").setLevel(logging.WARNING)
    logging.getLogger("kafka.consumer.fetcher").propagate = False  # shown below when records are missing
    c = KafkaConsumer(bootstrap_servers=broker, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=200,
                      request_timeout_ms=TIMEOUT * 1000 + 1000, api_version_auto_timeout_ms=10000)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got, seen = [], {}
    deadline = time.time() + TIMEOUT
    settle = None
    last_progress = time.time()
    while time.time() < deadline and time.time() - last_progress < STALL:
        try:
            batch = c.poll(timeout_ms=300)
        except kerrors.UnsupportedCodecError as e:
            skip("kafka-python %s cannot decode %s: %r" % (kafka.__version__, codec, e))
        except TypeError as e:
            if "NoneType" not in str(e):
                raise
            # MemoryRecords(None): Kafka always sends a partition's records
            # as bytes, empty when there are none, never null.
            die("%s: kafka-python %s crashed on a Fetch v4 response (%s): a partition's records field was null "
                "(length -1); Kafka sends empty records, never null, and kafka-python cannot read null there"
                % (topic, kafka.__version__, e))
        for tp, msgs in batch.items():
            for m in msgs:
                last_progress = time.time()
                seen[tp.partition] = seen.get(tp.partition, 0) + 1
                got.append({"partition": tp.partition, "offset": m.offset, "key": m.key, "value": m.value,
                            "headers": list(m.headers or []), "timestamp": m.timestamp,
                            "timestamp_type": m.timestamp_type})
        if all(seen.get(p, 0) >= n for p, n in want.items()):
            # Poll a little longer: a duplicate or extra record must show.
            if settle is None:
                settle = time.time() + 0.5
            elif time.time() > settle:
                break
    c.close(autocommit=False)
    if codec == "zstd" and not got and fetch_errors.seen:
        # Kafka answers UNSUPPORTED_COMPRESSION_TYPE to a Fetch below v10
        # that would return zstd batches; kafka-python 2.0 fetches with v4
        # and only logs that code as an unknown error.
        skip("kafka-python %s fetches with Fetch v4 (zstd needs v10+) and the broker refused the zstd batches: %s"
             % (kafka.__version__, fetch_errors.seen[0]))
    if len(got) != len(expected):
        for msg in fetch_errors.seen[:10]:
            print("     kafka-python fetcher: " + msg, file=sys.stderr)
    compare(expected, got, "%s: kafka-python consumer (%s)" % (topic, codec), ts_min, ts_max)


def batches(broker, topic, codec, producer):
    """Reads the topic raw (Fetch v10) and checks that every stored batch
    carries the codec it was produced with: the roundtrip really went
    through that codec. producer: kafka-python or librdkafka, whose
    version-dependent rules for when it compresses explain a mismatch."""
    producer_lib = producer
    if producer == "librdkafka":
        import confluent_kafka
        producer_lib = "librdkafka %s" % confluent_kafka.libversion()[0]
    from kafka.client_async import KafkaClient
    from kafka.protocol.fetch import FetchRequest
    from kafka.record import MemoryRecords

    client = KafkaClient(bootstrap_servers=broker, request_timeout_ms=TIMEOUT * 1000)
    deadline = time.time() + TIMEOUT
    f = client.cluster.request_update()
    client.poll(future=f, timeout_ms=TIMEOUT * 1000)
    brokers = list(client.cluster.brokers())
    if not brokers:
        die("kafka-python: no brokers in metadata")
    node = brokers[0].nodeId
    while not client.ready(node):
        if time.time() > deadline:
            die("kafka-python: could not connect to node %s" % node)
        client.poll(timeout_ms=100)
    max_bytes = 50 << 20
    req = FetchRequest[10](-1, 100, 0, max_bytes, 0, 0, -1,
                           [(topic, [(p, -1, 0, -1, max_bytes) for p in range(PARTITIONS)])], [])
    f = client.send(node, req)
    client.poll(future=f, timeout_ms=TIMEOUT * 1000)
    if not f.is_done or f.failed():
        die("kafka-python raw fetch of %s failed: %r" % (topic, f.exception))
    resp = f.value
    counts = {}
    codecs, offsets = {}, {}  # partition -> first batch with another codec
    for _topic, parts in resp.topics:
        for part in parts:
            p, err, msgset = part[0], part[1], part[-1]
            if err:
                die("raw fetch of %s [%d]: error code %d" % (topic, p, err))
            mr = MemoryRecords(msgset)
            while True:
                b = mr.next_batch()
                if b is None:
                    break
                if b.compression_type != CODEC_IDS[codec] and p not in offsets:
                    offsets[p], codecs[p] = b.base_offset, b.compression_type
                counts[p] = counts.get(p, 0) + 1
    api_versions = client.get_api_versions() or {}
    client.close()
    if not counts:
        die("raw fetch of %s returned no batches" % topic)
    if codec != "none" and set(codecs.values()) == {0} and len(codecs) == len(counts) and producer == "librdkafka":
        produce_min = api_versions.get(0, (None,))[0]
        if codec == "lz4" and 10 not in api_versions:
            # librdkafka (2.0 at least) enables lz4 only for brokers that
            # list FindCoordinator v0 in ApiVersions (its test for 0.8.2+).
            skip("%s: %s sent lz4 batches uncompressed: it compresses lz4 only when the broker advertises "
                 "FindCoordinator (ApiVersions key 10), and this broker did not list it" % (topic, producer_lib))
        if codec in ("gzip", "snappy", "lz4") and produce_min not in (None, 0):
            die("%s: %s sent %s batches uncompressed (\"Broker does not support compression type %s: not "
                "compressing batch\"): this librdkafka compresses gzip/snappy/lz4 only when ApiVersions lists "
                "Produce v0, and Sluice advertises Produce v%d+. Kafka 4.0 keeps advertising Produce v0-v2 (while "
                "refusing them) for this (KAFKA-18659, librdkafka#4956)" % (topic, producer_lib, codec, codec, produce_min))
    for p, cs in sorted(codecs.items()):
        if cs != CODEC_IDS[codec]:
            die("%s [%d]: a stored batch at offset %d has codec %d, produced with %s (%d)"
                % (topic, p, offsets[p], cs, codec, CODEC_IDS[codec]))
    print("ok   %s: every stored batch is %s (%s batches per partition)" % (topic, codec, counts), flush=True)


def main():
    logging.basicConfig(level=logging.ERROR)
    if len(sys.argv) < 5:
        die(__doc__)
    cmd, broker, topic, codec = sys.argv[1:5]
    if cmd == "produce":
        produce(broker, topic, codec, sys.argv[5])
    elif cmd == "consume":
        ts = [int(x) for x in sys.argv[6:8]] or [None, None]
        consume(broker, topic, codec, sys.argv[5], *ts)
    elif cmd == "batches":
        batches(broker, topic, codec, sys.argv[5])
    else:
        die(__doc__)


if __name__ == "__main__":
    main()
