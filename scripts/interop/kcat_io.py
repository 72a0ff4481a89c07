"""kcat's side of the interop test: its input and its output.

  kcat_io.py hargs                              kcat -H arguments, one a line
  kcat_io.py input CODEC EXPECTED_OUT PREFIX    kcat -P input files PREFIX.p<N> (-K '\\x1f' -D '\\x1e')
  kcat_io.py check TOPIC CODEC EXPECTED_IN KCAT_OUT
      KCAT_OUT is what `kcat -C -e -f "$KCAT_FORMAT"` printed (KCAT_FORMAT below)

kcat -P sets the same headers on every record (-H) and stamps records with
the producer's clock, so its expected records have timestamp None: the
consumer checks those against the produce window.
"""

import sys

from common import PARTITIONS, compare, die, dump, gen, load

KEY_DELIM, MSG_DELIM = b"\x1f", b"\x1e"
# name, value (None: a null header value, `-H name` without '=')
HEADERS = [("trace", b"kcat"), ("utf8-\u00fc", "v\u00e4lue".encode()), ("dup", b"first"), ("dup", b"second"),
           ("empty", b""), ("nullh", None)]
# Key and value with their lengths, so binary bytes parse unambiguously.
KCAT_FORMAT = r"R %p %o %T %K:%k %S:%s H:%h\n"


def hargs():
    for k, v in HEADERS:
        print(k if v is None else k + "=" + v.decode())


def write_input(codec, out, prefix):
    recs = gen("kcat-" + codec, 24, headers=False, timestamps=False, forbidden=KEY_DELIM + MSG_DELIM)
    for r in recs:
        r["headers"] = list(HEADERS)
    for p in range(PARTITIONS):
        with open("%s.p%d" % (prefix, p), "wb") as f:
            for r in recs:
                if r["partition"] != p:
                    continue
                if r["key"] is not None:
                    f.write(r["key"] + KEY_DELIM)
                f.write(r["value"] + MSG_DELIM)
    dump(recs, out)


def parse(data):
    """Parses kcat output printed with KCAT_FORMAT."""
    recs, i = [], 0

    def upto(sep):
        nonlocal i
        j = data.index(sep, i)
        s = data[i:j]
        i = j + len(sep)
        return s

    def take(n):
        nonlocal i
        if n < 0:
            return None
        s = data[i:i + n]
        if len(s) != n:
            raise ValueError("truncated")
        i += n
        return s

    while i < len(data):
        start = i
        try:
            if take(2) != b"R ":
                raise ValueError("no record marker")
            p, o, ts = int(upto(b" ")), int(upto(b" ")), int(upto(b" "))
            key = take(int(upto(b":")))
            if take(1) != b" ":
                raise ValueError("no space after key")
            value = take(int(upto(b":")))
            if take(3) != b" H:":
                raise ValueError("no headers marker")
            hdrs = []
            raw = upto(b"\n")
            for h in raw.split(b",") if raw else []:
                name, _, v = h.partition(b"=")
                hdrs.append((name.decode("utf-8"), v))
        except ValueError as e:
            die("cannot parse kcat output at byte %d (%s): %r" % (start, e, data[start:start + 120]))
        recs.append({"partition": p, "offset": o, "timestamp": ts, "key": key, "value": value, "headers": hdrs})
    return recs


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd = sys.argv[1]
    if cmd == "hargs":
        hargs()
    elif cmd == "format":
        print(KCAT_FORMAT)
    elif cmd == "input":
        write_input(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "check":
        topic, codec, expected, out = sys.argv[2:6]
        with open(out, "rb") as f:
            got = parse(f.read())
        compare(load(expected), got, "%s: kcat consumer (%s)" % (topic, codec))
    else:
        die(__doc__)


if __name__ == "__main__":
    main()
