# python-small workload (run with PYTHONMALLOC=malloc, so that every object is a malloc):
# small dicts, lists and strings built and dropped at once, in a loop, as request-handling
# code does. Few objects live long; nearly every allocation is freed soon after.
# usage: python_small.py [rounds=150000]
import sys
import zlib


def handle(i):
    name = "user-%d" % (i * 7919 % 100003)
    rec = {"id": i, "name": name, "tags": [name[:6], str(i % 97), "x" * (i % 11)]}
    rec["key"] = "%s/%d" % (rec["name"], len(rec["tags"]))
    words = rec["key"].split("/") + [t.upper() for t in rec["tags"]]
    pairs = {w: len(w) for w in words}
    line = ",".join("%s=%d" % kv for kv in sorted(pairs.items()))
    return len(line) + sum(pairs.values()), line


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 150000
    total, crc = 0, 0
    for i in range(rounds):
        n, line = handle(i)
        total += n
        if i % 64 == 0:
            crc = zlib.crc32(line.encode(), crc)
    print("python_small: %d rounds, check %d %08x" % (rounds, total, crc))


main()
