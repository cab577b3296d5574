"""Python allocating from threads, a generator and an async function, with a subprocess in
the middle. Each allocation site is distinct and its count is exact."""
import asyncio
import subprocess
import sys
import threading

kept = []


def worker(n):
    for i in range(n):
        kept.append(bytes(3000 + i % 7))  # MARK: thread-alloc


def chunks(n):
    for i in range(n):
        yield bytearray(5000)  # MARK: generator-alloc


async def fetch(n):
    out = []
    for i in range(n):
        await asyncio.sleep(0)
        out.append(bytearray(7000))  # MARK: async-alloc
    return out


threads = [threading.Thread(target=worker, args=(100,)) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
kept.extend(chunks(50))
subprocess.run([sys.executable, "-c", "x = bytearray(12345)"], check=True)  # MARK: subprocess
kept.extend(asyncio.run(fetch(30)))
print(len(kept))
