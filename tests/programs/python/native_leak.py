"""Records parsed by a C extension that leaks one copy of each (fastparse.c)."""
import sys

sys.path.insert(0, sys.argv[1])
import fastparse

lines = ["Record %06d,Some,FIELDS,Here,xyz" % i for i in range(1000)]
total = sum(fastparse.parse_record(line) for line in lines)  # MARK: genexpr
fastparse.scrub()
print(total)
