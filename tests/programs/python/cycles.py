"""Reference cycles that hold large buffers, never collected (the cycle collector is off).

Each Session refers to itself through its handler, so dropping the last outside reference
leaves it alive until the cycle collector runs. memlens must say where the buffers were
allocated and that a reference cycle holds them."""
import gc

gc.disable()


class Session:
    def __init__(self, n):
        self.buffer = bytearray(256 * 1024)  # MARK: buffer
        self.handler = self.on_event  # a bound method: the cycle

    def on_event(self):
        return len(self.buffer)


def serve(count):
    for n in range(count):
        s = Session(n)
        s.on_event()


serve(12)
kept = Session(99)  # still referenced by a module global: not lost
print("done")
