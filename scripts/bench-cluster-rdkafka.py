"""A librdkafka producer for scripts/bench-cluster.sh: one record every
--interval seconds, round robin over --partitions partitions, idempotent with
acks=all and librdkafka's default retries (message.timeout.ms 300000), until
SIGTERM or SIGINT (or --max-duration); then flushes and prints one JSON line:
the records produced, acknowledged, failed (delivery errors surfaced to the
application), with their kinds, and the send-to-ack latencies.

Needs python3-confluent-kafka (Debian's, for /usr/bin/python3)."""

import argparse
import json
import signal
import sys
import time

from confluent_kafka import Producer

# flush_timeout_s bounds the wait for records still queued at the stop.
flush_timeout_s = 60
# max_samples bounds the latencies kept (10 minutes at one record a 10 ms).
max_samples = 60000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--max-duration", type=float, default=600)
    a = ap.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    p = Producer({
        "bootstrap.servers": a.brokers,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 0,
    })
    lat, errors, kinds, acks = [], [0], {}, [0]
    last_ack, max_gap = [None], [0.0]

    def delivered(err, msg, sent):
        now = time.monotonic()
        if err is not None:
            errors[0] += 1
            kinds[str(err)] = kinds.get(str(err), 0) + 1
            return
        acks[0] += 1
        if len(lat) < max_samples:
            lat.append(now - sent)
        if last_ack[0] is not None:
            max_gap[0] = max(max_gap[0], now - last_ack[0])
        last_ack[0] = now

    start = time.monotonic()
    produced, i = 0, 0
    nxt = start
    print(time.strftime("%H:%M:%S"), "rdkafka producer: producing", file=sys.stderr, flush=True)
    while not stop and time.monotonic() - start < a.max_duration:
        now = time.monotonic()
        if now < nxt:
            p.poll(nxt - now)
            continue
        nxt += a.interval
        sent = time.monotonic()
        while True:
            try:
                p.produce(a.topic, b"x" * 100, partition=i % a.partitions,
                          on_delivery=lambda err, msg, sent=sent: delivered(err, msg, sent))
                break
            except BufferError:
                p.poll(0.01)
        produced += 1
        i += 1
        p.poll(0)
    left = p.flush(flush_timeout_s)
    lat.sort()

    def q(x):
        return round(lat[min(len(lat) - 1, int(x * len(lat)))] * 1000, 2) if lat else 0

    print(json.dumps({
        "op": "produce-loop", "client": "librdkafka", "topic": a.topic,
        "seconds": round(time.monotonic() - start, 3), "produced": produced,
        "acked": acks[0], "errors": errors[0], "unanswered": left,
        "error_kinds": kinds, "latency_p50_ms": q(0.5), "latency_p99_ms": q(0.99),
        "latency_max_ms": round(lat[-1] * 1000, 2) if lat else 0,
        "max_ack_gap_ms": round(max_gap[0] * 1000, 2),
    }), flush=True)


if __name__ == "__main__":
    main()
