"""The cluster side of the interop test (scripts/interop.sh with CLUSTER_NODES > 1).

  cluster.py create  BROKER RF PARTITIONS TOPIC...          (CreateTopics with replication factor RF)
  cluster.py create  BROKER RF PARTITIONS @LEADER TOPIC...  (every partition's replicas start with node
                                                            LEADER, the preferred leader, then the next ids)
  cluster.py batches BROKER TOPIC CODEC PRODUCER            (kafka_python.py batches, sent to the leader)
  cluster.py in-sync BROKER RF TOPIC|PREFIX*...             (every partition of the topics has RF replicas,
                                                            all of them in the ISR)

confluent.py and groups.py create their topics with replication factor 1. On
a cluster interop.sh creates them here first, with RF replicas; the helpers
then find them existing (TOPIC_ALREADY_EXISTS is fine for them) and check
their partitions in metadata as before.

kafka_python.py batches sends its one raw Fetch (every partition of the
topic) to the first broker of kafka-python's metadata; on a cluster a
broker that does not lead a partition answers NOT_LEADER_OR_FOLLOWER for
it, as Kafka does. So the codec topics are created with one preferred
leader for all their partitions (@LEADER), and `batches` looks the leaders
up, checks that one node leads every partition, puts that node first in
kafka-python's broker list and runs kafka_python.py's batches unchanged.
Exit 0 ok, 1 failure.
"""

import logging
import sys
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from common import PARTITIONS, die

TIMEOUT = 30


def create(broker, rf, partitions, *topics):
    rf, partitions = int(rf), int(partitions)
    admin = AdminClient({"bootstrap.servers": broker})
    leader = None
    if topics and topics[0].startswith("@"):
        leader, topics = int(topics[0][1:]), topics[1:]
    if leader is None:
        new = [NewTopic(t, num_partitions=partitions, replication_factor=rf) for t in topics]
    else:
        ids = sorted(b.id for b in admin.list_topics(timeout=TIMEOUT).brokers.values())
        if leader not in ids or rf > len(ids):
            die("create %s: preferred leader %d and %d replicas, but the brokers are %s" % (topics, leader, rf, ids))
        at = ids.index(leader)
        replicas = [ids[(at + i) % len(ids)] for i in range(rf)]
        new = [NewTopic(t, partitions, replica_assignment=[replicas] * partitions) for t in topics]
    for t, f in admin.create_topics(new, request_timeout=TIMEOUT).items():
        try:
            f.result(timeout=TIMEOUT)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                die("create topic %s (replication factor %d): %s" % (t, rf, e))
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(timeout=TIMEOUT)
        bad = [t for t in topics if t not in md.topics or md.topics[t].error is not None
               or len(md.topics[t].partitions) != partitions
               or any(len(p.replicas) != rf or p.leader < 0 for p in md.topics[t].partitions.values())]
        if not bad:
            break
        if time.time() > deadline:
            die("topics not in metadata with %d partitions of %d replicas, each with a leader: %s"
                % (partitions, rf, {t: str(md.topics.get(t) and md.topics[t].partitions) for t in bad}))
        time.sleep(0.2)
    print("ok   created %d topics with %d partitions of %d replicas each%s"
          % (len(topics), partitions, rf, "" if leader is None else ", node %d the preferred leader" % leader),
          flush=True)


def batches(broker, topic, codec, producer):
    admin = AdminClient({"bootstrap.servers": broker})
    deadline = time.time() + TIMEOUT
    while True:
        parts = admin.list_topics(topic, timeout=TIMEOUT).topics[topic].partitions
        leaders = {p.leader for p in parts.values()}
        if len(parts) == PARTITIONS and len(leaders) == 1 and -1 not in leaders:
            break
        if time.time() > deadline:
            die("%s: the partitions' leaders are %s; kafka_python.py batches needs one node leading all %d"
                % (topic, {p.id: p.leader for p in parts.values()}, PARTITIONS))
        time.sleep(0.2)
    leader = leaders.pop()

    import kafka.cluster

    every = kafka.cluster.ClusterMetadata.brokers

    def leader_first(self):
        return sorted(every(self), key=lambda b: b.nodeId != leader)

    kafka.cluster.ClusterMetadata.brokers = leader_first
    import kafka_python

    logging.basicConfig(level=logging.ERROR)

    kafka_python.batches(broker, topic, codec, producer)


def in_sync(broker, rf, *patterns):
    """Waits up to TIMEOUT for every partition of the topics matching
    patterns (a name, or a prefix ending in *) to have rf replicas, all in
    the ISR: after the acks=all produces the followers have caught up."""
    rf = int(rf)
    admin = AdminClient({"bootstrap.servers": broker})
    deadline = time.time() + TIMEOUT
    while True:
        md = admin.list_topics(timeout=TIMEOUT)
        topics = sorted(t for t in md.topics
                        if any(t.startswith(p[:-1]) if p.endswith("*") else t == p for p in patterns))
        bad = {}
        for t in topics:
            for p in md.topics[t].partitions.values():
                if len(p.replicas) != rf or sorted(p.isrs) != sorted(p.replicas):
                    bad["%s [%d]" % (t, p.id)] = "replicas %s, isr %s, leader %d" % (p.replicas, p.isrs, p.leader)
        missing = [p for p in patterns if not any(t == p or (p.endswith("*") and t.startswith(p[:-1])) for t in topics)]
        if not bad and not missing:
            break
        if time.time() > deadline:
            die("after %ds, %d partitions without %d replicas all in sync%s: %s"
                % (TIMEOUT, len(bad), rf, " (no topic matches %s)" % missing if missing else "",
                   "; ".join("%s: %s" % kv for kv in sorted(bad.items())[:10])))
        time.sleep(0.5)
    n = sum(len(md.topics[t].partitions) for t in topics)
    print("ok   %d topics (%s): all %d partitions have %d replicas, all in the ISR"
          % (len(topics), " ".join(patterns), n, rf), flush=True)


COMMANDS = {"create": create, "batches": batches, "in-sync": in_sync}

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in COMMANDS:
        die(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
