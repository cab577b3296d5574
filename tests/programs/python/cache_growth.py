"""An unbounded module-level cache: every request's encoded response is kept forever.

memlens must find the growing site with the Python line that allocates it.
Usage: cache_growth.py [ROUNDS]"""
import sys
import time

_cache = {}


def encode(request_id):
    return ("response %08d " % request_id).encode() * 64  # MARK: encode


def handle_request(request_id):
    if request_id not in _cache:
        _cache[request_id] = encode(request_id)  # MARK: cache-add
    return _cache[request_id]


def main(rounds):
    deadline = time.monotonic() + 0.02 * rounds
    request_id = 0
    while time.monotonic() < deadline:
        for _ in range(200):
            handle_request(request_id)  # MARK: call
            request_id += 1
        time.sleep(0.001)
    print(len(_cache) > 0)


main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)  # MARK: main
