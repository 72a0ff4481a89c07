"""Consumer group legs of the interop test (classic protocol: FindCoordinator,
JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch).

  groups.py create    BROKER PARTITIONS TOPIC...     (CreateTopics)
  groups.py ck-split  BROKER TOPIC GROUP              librdkafka: two subscribed consumers split a
                                                      4-partition topic, commit; a third resumes
  groups.py kp-resume BROKER TOPIC GROUP              kafka-python: a group consumer commits; a new
                                                      one resumes; confluent-kafka reads the commits
  groups.py produce   BROKER TOPIC N TAG              N records, spread over the partitions
  groups.py committed CLIENT BROKER TOPIC GROUP HOW   CLIENT (kafka-python | confluent) checks that
                                                      GROUP committed every partition's end offset

The broker runs with group.initial.rebalance.delay.ms=0, so a group's first
rebalance does not wait 3s for more members.
Exit 0 ok, 1 failure, 3 skipped (reason printed).
"""

import logging
import sys
import time

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from common import die

TIMEOUT = 30
LIB = "confluent-kafka %s (librdkafka %s)" % (confluent_kafka.version()[0], confluent_kafka.libversion()[0])


def ck_conf(broker, group, **extra):
    conf = {"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
            "fetch.wait.max.ms": 100, "enable.partition.eof": True, "partition.assignment.strategy": "range"}
    conf.update(extra)
    return conf


def partitions_of(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker})
    md = admin.list_topics(topic, timeout=TIMEOUT)
    if topic not in md.topics or md.topics[topic].error is not None:
        die("topic %s not in metadata" % topic)
    return sorted(md.topics[topic].partitions)


def high_watermarks(broker, topic):
    c = Consumer({"bootstrap.servers": broker, "group.id": "interop-watermarks"})
    hw = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)[1] for p in partitions_of(broker, topic)}
    c.close()
    return hw


def create(broker, n, topics):
    admin = AdminClient({"bootstrap.servers": broker})
    futs = admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=1) for t in topics],
                               request_timeout=TIMEOUT)
    for t, f in futs.items():
        try:
            f.result(timeout=TIMEOUT)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                die("create topic %s: %s" % (t, e))
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(timeout=TIMEOUT)
        missing = [t for t in topics if t not in md.topics or len(md.topics[t].partitions) != n]
        if not missing:
            break
        if time.time() > deadline:
            die("topics not in metadata with %d partitions after create: %s" % (n, missing))
        time.sleep(0.2)
    print("ok   created %d group topics with %d partitions each" % (len(topics), n), flush=True)


def produce(broker, topic, n, tag):
    """Produces n records round-robin over the partitions; returns
    {partition: [(offset, value)]}."""
    parts = partitions_of(broker, topic)
    p = Producer({"bootstrap.servers": broker, "acks": "all", "linger.ms": 20})
    acked, errors = {}, []

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked.setdefault(msg.partition(), []).append((msg.offset(), msg.value()))

    for i in range(n):
        p.produce(topic, value=("%s-%03d" % (tag, i)).encode(), partition=parts[i % len(parts)], on_delivery=cb)
    left = p.flush(TIMEOUT)
    if left or errors:
        die("produce to %s: %d not delivered, errors %s" % (topic, left, errors[:3]))
    return acked


def ck_split(broker, topic, group):
    parts = partitions_of(broker, topic)
    n = 10 * len(parts)
    first = produce(broker, topic, n, "split")
    # Two consumers subscribe (not assign) in one group. On every (eager)
    # rebalance a consumer starts over from the committed offsets (none yet:
    # earliest), so what counts is what each read in its latest assignment.
    state = []
    for name in ("A", "B"):
        st = {"name": name, "assigned": [], "got": [], "eof": set(), "rebalances": 0}

        def on_assign(c, tps, st=st):
            st["assigned"] = sorted(tp.partition for tp in tps)
            st["got"], st["eof"] = [], set()
            st["rebalances"] += 1

        def on_revoke(c, tps, st=st):
            st["assigned"], st["got"], st["eof"] = [], [], set()

        c = Consumer(ck_conf(broker, group, **{"client.id": "interop-" + name}))
        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
        st["c"] = c
        state.append(st)

    def settled():
        a, b = state[0]["assigned"], state[1]["assigned"]
        return (a and b and sorted(a + b) == parts
                and all(len(st["got"]) == sum(len(first[p]) for p in st["assigned"]) and st["eof"] >= set(st["assigned"])
                        for st in state))

    deadline = time.time() + TIMEOUT
    while not settled():
        if time.time() > deadline:
            die("%s: two consumers in group %s did not settle on a split of %s within %ds: A assigned %s read %d, "
                "B assigned %s read %d" % (LIB, group, parts, TIMEOUT, state[0]["assigned"], len(state[0]["got"]),
                                           state[1]["assigned"], len(state[1]["got"])))
        for st in state:
            m = st["c"].poll(0.05)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    st["eof"].add(m.partition())
                    continue
                die("%s consumer %s in group %s: %s" % (LIB, st["name"], group, m.error()))
            st["got"].append((m.partition(), m.offset(), m.value()))
    # Poll a little more: the split must hold and nothing more may come.
    settle = time.time() + 0.5
    while time.time() < settle:
        for st in state:
            m = st["c"].poll(0.05)
            if m is not None and not m.error():
                st["got"].append((m.partition(), m.offset(), m.value()))
    a, b = state[0]["assigned"], state[1]["assigned"]
    if set(a) & set(b) or sorted(a + b) != parts:
        die("group %s: partitions split as A %s, B %s: want %s split with no overlap" % (group, a, b, parts))
    for st in state:
        for p, off, v in st["got"]:
            if p not in st["assigned"]:
                die("consumer %s got a record of partition %d, assigned %s" % (st["name"], p, st["assigned"]))
    got = sorted((p, off, v) for st in state for p, off, v in st["got"])
    want = sorted((p, off, v) for p, recs in first.items() for off, v in recs)
    if got != want:
        die("group %s: consumers A and B read %d records (%d distinct), want the %d produced"
            % (group, len(got), len(set(got)), len(want)))
    # Each commits the end of what it read.
    commits = {}
    for st in state:
        offs = [TopicPartition(topic, p, max(o for q, o, _ in st["got"] if q == p) + 1) for p in st["assigned"]]
        res = st["c"].commit(offsets=offs, asynchronous=False)
        for tp in res:
            if tp.error:
                die("consumer %s commit %s [%d]: %s" % (st["name"], topic, tp.partition, tp.error))
            commits[tp.partition] = tp.offset
    for st in state:
        st["c"].close()
    print("ok   %s: 2 subscribed consumers in group %s split %d partitions (A %s, B %s) and read all %d records "
          "once; committed %s" % (LIB, group, len(parts), a, b, n, commits), flush=True)

    # Records produced after the commits; a third member must resume there.
    second = produce(broker, topic, 2 * len(parts), "after")
    c = Consumer(ck_conf(broker, group, **{"client.id": "interop-C"}))
    assigned = []
    c.subscribe([topic], on_assign=lambda _c, tps: assigned.extend(tp.partition for tp in tps))
    got, eof = [], set()
    want = sorted((p, off, v) for p, recs in second.items() for off, v in recs)
    deadline = time.time() + TIMEOUT
    while not (sorted(assigned) == parts and eof >= set(parts) and len(got) >= len(want)):
        if time.time() > deadline:
            die("third consumer in group %s: assigned %s, read %d records within %ds, want %d"
                % (group, sorted(assigned), len(got), TIMEOUT, len(want)))
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            die("%s third consumer: %s" % (LIB, m.error()))
        got.append((m.partition(), m.offset(), m.value()))
    res = c.commit(asynchronous=False)  # the consumed positions: the end of every partition
    for tp in res:
        if tp.error:
            die("third consumer commit %s [%d]: %s" % (topic, tp.partition, tp.error))
    c.close()
    got.sort()
    if got != want:
        die("third consumer in group %s read %s..., want only the %d records produced after the commits %s"
            % (group, got[:4], len(want), commits))
    for p, off, _ in got:
        if off < commits[p]:
            die("third consumer read %s [%d] offset %d, before the committed %d" % (topic, p, off, commits[p]))
    print("ok   %s: a third consumer in group %s resumed from the committed offsets (read only the %d records "
          "produced after the commits) and committed the ends" % (LIB, group, len(want)), flush=True)


def kp_consumer(broker, topic, group):
    from kafka import KafkaConsumer
    c = KafkaConsumer(topic, bootstrap_servers=broker, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", fetch_max_wait_ms=100, session_timeout_ms=6000,
                      heartbeat_interval_ms=300, request_timeout_ms=TIMEOUT * 1000 + 1000,
                      api_version_auto_timeout_ms=10000)
    return c


def kp_read(c, want):
    """Polls until want records came (or TIMEOUT); 0.5s more to see extras."""
    got = []
    deadline = time.time() + TIMEOUT
    settle = None
    while time.time() < deadline:
        for tp, msgs in c.poll(timeout_ms=200).items():
            got.extend((tp.partition, m.offset, m.value) for m in msgs)
        if len(got) >= want:
            settle = settle or time.time() + 0.5
            if time.time() > settle:
                break
    return sorted(got)


def kp_resume(broker, topic, group):
    import kafka
    from kafka import TopicPartition as KTP
    lib = "kafka-python %s" % kafka.__version__
    first = produce(broker, topic, 20, "kp-first")
    want = sorted((p, off, v) for p, recs in first.items() for off, v in recs)
    c = kp_consumer(broker, topic, group)
    got = kp_read(c, len(want))
    if got != want:
        die("%s group %s read %d records, want the %d produced" % (lib, group, len(got), len(want)))
    assigned = sorted(tp.partition for tp in c.assignment())
    c.commit()  # the consumed positions
    commits = {p: c.committed(KTP(topic, p)) for p in assigned}
    c.close(autocommit=False)
    hw = {p: max(o for q, o, _ in want if q == p) + 1 for p in first}
    if commits != hw:
        die("%s group %s committed %s, want the end offsets %s" % (lib, group, commits, hw))
    print("ok   %s: group %s consumer (assigned %s) read all %d records and committed %s"
          % (lib, group, assigned, len(want), commits), flush=True)
    # Offsets committed by kafka-python, read by librdkafka.
    check_committed_ck(broker, topic, group, hw, "committed by kafka-python")

    second = produce(broker, topic, 6, "kp-second")
    want2 = sorted((p, off, v) for p, recs in second.items() for off, v in recs)
    c = kp_consumer(broker, topic, group)
    got = kp_read(c, len(want2))
    c.close(autocommit=False)
    if got != want2:
        die("a new %s consumer in group %s read %d records (first %s), want only the %d produced after the commit"
            % (lib, group, len(got), got[:3], len(want2)))
    print("ok   %s: a new consumer in group %s resumed from the committed offsets (read only the %d later records)"
          % (lib, group, len(want2)), flush=True)


def check_committed_ck(broker, topic, group, want, how):
    c = Consumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    got = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in sorted(want)], timeout=TIMEOUT)}
    c.close()
    if got != want:
        die("%s committed() of group %s (%s): %s, want %s" % (LIB, group, how, got, want))
    print("ok   %s committed() reads group %s's offsets %s: %s" % (LIB, group, how, got), flush=True)


def check_committed_kp(broker, topic, group, want, how):
    import kafka
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False,
                      api_version_auto_timeout_ms=10000)
    got = {p: c.committed(KTP(topic, p)) for p in sorted(want)}
    c.close(autocommit=False)
    if got != want:
        die("kafka-python %s committed() of group %s (%s): %s, want %s" % (kafka.__version__, group, how, got, want))
    print("ok   kafka-python %s committed() reads group %s's offsets %s: %s" % (kafka.__version__, group, how, got),
          flush=True)


def main():
    logging.basicConfig(level=logging.ERROR)
    # kafka-python logs the fetch it has in flight when closed as an error.
    logging.getLogger("kafka.consumer.fetcher").addFilter(lambda r: "Cancelled" not in r.getMessage())
    if len(sys.argv) < 3:
        die(__doc__)
    cmd = sys.argv[1]
    if cmd == "create":
        create(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    elif cmd == "ck-split":
        ck_split(*sys.argv[2:5])
    elif cmd == "kp-resume":
        kp_resume(*sys.argv[2:5])
    elif cmd == "produce":
        acked = produce(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        print("     produced %d records to %s" % (sum(map(len, acked.values())), sys.argv[3]), flush=True)
    elif cmd == "committed":
        client, broker, topic, group, how = sys.argv[2:7]
        want = high_watermarks(broker, topic)
        (check_committed_kp if client == "kafka-python" else check_committed_ck)(broker, topic, group, want, how)
    else:
        die(__doc__)


if __name__ == "__main__":
    main()
