"""A history of small records (dicts of 3 fields) that only grows: every object is under
pymalloc's 512 bytes. With PYTHONMALLOC=malloc every record is seen."""
import sys
import time

history = []


def record(i):
    history.append({"id": i, "name": "event", "ok": True})  # MARK: record


def main(rounds):
    deadline = time.monotonic() + 0.02 * rounds
    i = 0
    while time.monotonic() < deadline:
        for _ in range(300):
            record(i)
            i += 1
        time.sleep(0.001)


main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
print(len(history) > 0)
