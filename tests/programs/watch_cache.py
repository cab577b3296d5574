"""memlens watch test: a Python program with an unbounded cache.

    python3 watch_cache.py STEP_KIB PERIOD_MS

Every PERIOD_MS milliseconds (by the monotonic clock, catching up after a late wake-up)
it stores one more STEP_KIB KiB bytes object, filled so its pages are resident, in a
list it never trims: RSS grows by STEP_KIB per period.
"""
import sys
import time

step = int(sys.argv[1]) * 1024
period = float(sys.argv[2]) / 1000.0
cache = []
start = time.monotonic()
grown = 0
while True:
    due = int((time.monotonic() - start) / period) * step
    while grown < due and grown < (1 << 30):
        cache.append(b"x" * step)
        grown += step
    time.sleep(period / 4)
