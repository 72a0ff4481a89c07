"""confluent-kafka (librdkafka) side of the interop test.

  confluent.py create  BROKER TOPIC...                  (CreateTopics, 2 partitions each)
  confluent.py produce BROKER TOPIC CODEC EXPECTED_OUT
  confluent.py consume BROKER TOPIC CODEC EXPECTED_IN

The consumer needs a group.id to be constructed but joins no group: it uses
assign() with explicit offsets and enable.auto.commit=false, so these
roundtrips do not depend on the group coordinator (groups.py tests that).
Exit 0 ok, 1 failure, 3 skipped (reason printed).
"""

import logging
import sys
import time

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import PARTITIONS, compare, die, dump, gen, load, skip

TIMEOUT = 30
STALL = 6  # a consumer that gets nothing new for this long gives up
LIB = "confluent-kafka %s (librdkafka %s)" % (confluent_kafka.version()[0], confluent_kafka.libversion()[0])


class Logs(logging.Handler):
    """librdkafka's log lines (passed as the "logger" config), kept to be
    shown in short: a broker it cannot parse makes it log the same error
    every fetch."""

    def __init__(self, name):
        super().__init__(logging.DEBUG)
        self.lines = []
        self.logger = logging.getLogger(name)
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)

    def emit(self, record):
        self.lines.append(record.getMessage())

    def show(self, limit=6):
        for line in self.lines[:limit]:
            print("     librdkafka: " + line, file=sys.stderr)
        if len(self.lines) > limit:
            print("     librdkafka: ... %d more log lines" % (len(self.lines) - limit), file=sys.stderr)


def create(broker, topics):
    admin = AdminClient({"bootstrap.servers": broker})
    futs = admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics],
                               request_timeout=TIMEOUT)
    for t, f in futs.items():
        try:
            f.result(timeout=TIMEOUT)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                die("create topic %s: %s" % (t, e))
    # The topics must be in metadata with all partitions before producing.
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(timeout=TIMEOUT)
        missing = [t for t in topics if t not in md.topics or len(md.topics[t].partitions) != PARTITIONS
                   or md.topics[t].error is not None]
        if not missing:
            break
        if time.time() > deadline:
            die("topics not in metadata with %d partitions after create: %s" % (PARTITIONS, missing))
        time.sleep(0.2)
    print("ok   created %d topics with %d partitions each" % (len(topics), PARTITIONS), flush=True)


def produce(broker, topic, codec, out):
    if codec not in ("none", "gzip", "snappy", "lz4", "zstd"):
        skip("%s: unknown codec %s" % (LIB, codec))
    try:
        logs = Logs("librdkafka.producer")
        p = Producer({"bootstrap.servers": broker, "compression.codec": codec, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 100, "message.timeout.ms": TIMEOUT * 1000,
                      "logger": logs.logger})
    except KafkaException as e:
        skip("%s cannot produce %s: %s" % (LIB, codec, e))
    recs = gen("ck-" + codec, 24, null_header_values=False)  # kcat's %h cannot show a null header value
    errors = []

    def delivered(rec):
        def cb(err, msg):
            if err is not None:
                errors.append("record for %s [%d]: %s" % (topic, rec["partition"], err))
                return
            if msg.partition() != rec["partition"]:
                errors.append("record for partition %d delivered to %d" % (rec["partition"], msg.partition()))
            rec["offset"] = msg.offset()
        return cb

    for r in recs:
        p.produce(topic, value=r["value"], key=r["key"], partition=r["partition"], timestamp=r["timestamp"],
                  headers=r["headers"], on_delivery=delivered(r))
        p.poll(0)
    left = p.flush(TIMEOUT)
    if left or errors:
        logs.show()
    if left:
        die("confluent produce to %s (%s): %d records not delivered within %ds" % (topic, codec, left, TIMEOUT))
    if errors:
        die("confluent produce to %s (%s): %s" % (topic, codec, "; ".join(errors[:5])))
    dump(recs, out)
    print("     %s produced %d records to %s (%s, idempotent)" % (LIB, len(recs), topic, codec), flush=True)


def consume(broker, topic, codec, expected_path):
    expected = load(expected_path)
    logs = Logs("librdkafka.consumer")
    c = Consumer({"bootstrap.servers": broker, "group.id": "interop-unused", "enable.auto.commit": False,
                  "enable.auto.offset.store": False, "enable.partition.eof": True,
                  "fetch.wait.max.ms": 200, "auto.offset.reset": "error", "logger": logs.logger})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    want = {}
    for r in expected:
        want[r["partition"]] = want.get(r["partition"], 0) + 1
    got, eof, seen = [], set(), {}
    start = last_progress = time.time()
    complete_at = None
    while time.time() - start < TIMEOUT:
        now = time.time()
        if all(seen.get(p, 0) >= n for p, n in want.items()):
            # All there: wait briefly for the end of every partition, so an
            # extra or duplicate record would show.
            complete_at = complete_at or now
            if len(eof) == PARTITIONS or now - complete_at > 2:
                break
        elif now - last_progress > STALL:
            break
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            logs.show()
            die("%s consuming %s: %s" % (LIB, topic, m.error()))
        eof.discard(m.partition())
        last_progress = time.time()
        seen[m.partition()] = seen.get(m.partition(), 0) + 1
        ts_type, ts = m.timestamp()
        got.append({"partition": m.partition(), "offset": m.offset(), "key": m.key(), "value": m.value(),
                    "headers": list(m.headers() or []), "timestamp": ts,
                    "timestamp_type": 0 if ts_type == confluent_kafka.TIMESTAMP_CREATE_TIME else ts_type})
    c.close()
    if len(got) != len(expected) or len(eof) < PARTITIONS:
        logs.show()
    compare(expected, got, "%s: %s consumer (%s)" % (topic, LIB, codec))
    if len(eof) < PARTITIONS:
        die("%s: %s got every record but never reached the end of partitions %s (it reached %s): it could not "
            "read the broker's fetch responses at the end of the log" % (topic, LIB, sorted(set(range(PARTITIONS)) - eof), sorted(eof)))


def main():
    if len(sys.argv) < 3:
        die(__doc__)
    cmd, broker = sys.argv[1:3]
    if cmd == "create":
        create(broker, sys.argv[3:])
    elif cmd == "produce":
        produce(broker, sys.argv[3], sys.argv[4], sys.argv[5])
    elif cmd == "consume":
        consume(broker, sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        die(__doc__)


if __name__ == "__main__":
    main()
