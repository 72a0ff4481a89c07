"""Shared helpers of the interop scripts (scripts/interop.sh).

A leg of the interop test writes an "expected" file: a JSON list of the
records one client produced (partition, key, value, headers, timestamp and,
where the producer reports it, the offset). The consuming side reads the
topic with another client and compares what it got with that file, byte for
byte. Bytes are stored in JSON as hex; None stays null.
"""

import json
import sys
import time

PARTITIONS = 2


def die(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def skip(msg):
    """Exit 3: the shell script prints the SKIP line and goes on."""
    print("SKIP: " + msg, flush=True)
    sys.exit(3)


def now_ms():
    return int(time.time() * 1000)


def payload(tag, i):
    """A value that compresses well (so codecs really compress the batch,
    librdkafka sends uncompressed when compression would not help) and
    holds bytes a text path would mangle: UTF-8, NUL, CR/LF, high bytes."""
    head = ("%s#%03d|" % (tag, i)).encode()
    odd = bytes([0, 1, 2, 10, 13, 0x7F, 0x80, 0xC3, 0xA9, 0xFE, 0xFF]) + "ü€🙂".encode()
    body = (b"sluice-interop-" + str(i % 7).encode()) * (4 + (i * 37) % 200)
    return head + odd + body


def gen(tag, n, *, keys=True, null_keys=True, headers=True, null_header_values=False,
        timestamps=True, forbidden=b""):
    """Records for one leg. forbidden: bytes that must not appear in keys
    and values (kcat's input delimiters)."""
    base = now_ms() - 30 * 60 * 1000  # in the past: brokers reject future times
    recs = []
    for i in range(n):
        key = None
        if keys and not (null_keys and i % 5 == 3):
            key = ("k-%s-%d-" % (tag, i)).encode() + "ключ".encode() + bytes([0, 0xFF])
        value = payload(tag, i)
        if forbidden:
            key = None if key is None else bytes(b for b in key if b not in forbidden)
            value = bytes(b for b in value if b not in forbidden)
        hdrs = []
        if headers:
            hdrs = [("trace", ("t-%d" % i).encode()), ("utf8-ü", "välue".encode())]
            if i % 3 == 0:
                hdrs.append(("dup", b"first"))
                hdrs.append(("dup", b"second"))  # duplicate names keep their order
            if i % 4 == 1:
                hdrs.append(("empty", b""))
            if null_header_values and i % 4 == 2:
                hdrs.append(("null", None))
        # Not monotonic: batches carry signed timestamp deltas.
        ts = base + ((i * 7919) % 1000) * 13 if timestamps else None
        recs.append({"partition": i % PARTITIONS, "key": key, "value": value,
                     "headers": hdrs, "timestamp": ts, "offset": None})
    return recs


def _hex(b):
    return None if b is None else b.hex()


def _unhex(s):
    return None if s is None else bytes.fromhex(s)


def dump(recs, path):
    out = []
    for r in recs:
        out.append({"partition": r["partition"], "offset": r["offset"], "timestamp": r["timestamp"],
                    "key": _hex(r["key"]), "value": _hex(r["value"]),
                    "headers": [[k, _hex(v)] for k, v in r["headers"]]})
    with open(path, "w") as f:
        json.dump(out, f)


def load(path):
    with open(path) as f:
        raw = json.load(f)
    return [{"partition": r["partition"], "offset": r["offset"], "timestamp": r["timestamp"],
             "key": _unhex(r["key"]), "value": _unhex(r["value"]),
             "headers": [(k, _unhex(v)) for k, v in r["headers"]]} for r in raw]


def by_partition(recs):
    parts = {}
    for r in recs:
        parts.setdefault(r["partition"], []).append(r)
    return parts


def short(b):
    if b is None:
        return "None"
    return repr(b if len(b) <= 60 else b[:60] + b"...(%d bytes)" % len(b))


def compare(expected, got, what, ts_min=None, ts_max=None):
    """Compare records per partition in order. Expected records with
    timestamp None were produced with the producer's clock: theirs must lie
    in [ts_min, ts_max]. got records carry "timestamp_type" when the client
    reports it (0 CreateTime). Dies with a clear message on a mismatch."""
    exp, act = by_partition(expected), by_partition(got)
    errors = []
    for p in sorted(set(exp) | set(act)):
        e, a = exp.get(p, []), act.get(p, [])
        if len(e) != len(a):
            errors.append("%s: partition %d: expected %d records, consumed %d" % (what, p, len(e), len(a)))
        last = -1
        for i, (x, y) in enumerate(zip(e, a)):
            where = "%s: partition %d record %d (offset %s)" % (what, p, i, y.get("offset"))
            if y.get("offset") is not None:
                if y["offset"] <= last:
                    errors.append("%s: offsets not increasing (%d after %d)" % (where, y["offset"], last))
                last = y["offset"]
            if x["offset"] is not None and x["offset"] != y.get("offset"):
                errors.append("%s: producer was acked offset %s, consumer saw %s" % (where, x["offset"], y.get("offset")))
            if x["key"] != y["key"]:
                errors.append("%s: key %s != produced %s" % (where, short(y["key"]), short(x["key"])))
            if x["value"] != y["value"]:
                errors.append("%s: value %s != produced %s" % (where, short(y["value"]), short(x["value"])))
            if list(map(tuple, x["headers"])) != list(map(tuple, y["headers"])):
                errors.append("%s: headers %r != produced %r" % (where, y["headers"], x["headers"]))
            ts = y.get("timestamp")
            if x["timestamp"] is not None:
                if ts != x["timestamp"]:
                    errors.append("%s: timestamp %s != produced %s" % (where, ts, x["timestamp"]))
            elif ts is None or not (ts_min <= ts <= ts_max):
                errors.append("%s: timestamp %s not within the produce window [%s, %s]" % (where, ts, ts_min, ts_max))
            if y.get("timestamp_type") not in (None, 0):
                errors.append("%s: timestamp type %s, want CreateTime" % (where, y.get("timestamp_type")))
    if errors:
        for line in errors[:20]:
            print("MISMATCH " + line, file=sys.stderr)
        if len(errors) > 20:
            print("... and %d more mismatches" % (len(errors) - 20), file=sys.stderr)
        die("%s: %d mismatches between produced and consumed records" % (what, len(errors)))
    print("ok   %s: %d records in %d partitions match byte for byte" % (what, len(got), len(act)), flush=True)
