# python workload (run with PYTHONMALLOC=malloc): build nested dicts, json round-trip.
import json, hashlib
def build(n):
    out = {}
    for i in range(n):
        key = "rec-%06d" % i
        out[key] = {
            "id": i,
            "name": "user%d" % (i * 7919 % 100003),
            "tags": ["t%d" % (j * i % 13) for j in range(i % 7)],
            "attrs": {"a%d" % j: j * i for j in range(i % 5)},
            "score": (i * 37 % 1000) / 10.0,
        }
    return out
total = 0
digest = hashlib.sha256()
for rnd in range(2):
    d = build(25000)
    s = json.dumps(d, sort_keys=True)
    back = json.loads(s)
    total += len(s) + len(back)
    digest.update(s.encode())
print(total, digest.hexdigest()[:16])
