# One allocating call reached through many Python paths, for the unwind memo's test: the
# same C code under other Python lines (via_a / via_b), at other depths of the C stack
# (map() re-enters the evaluation loop once per level), and from a generator. The
# recorded stacks must not depend on whether unwinds are memoized.
def leaf(n):
    return [n] * 3


def via_a(n):
    return leaf(n)


def via_b(n):
    return leaf(n)


def nested(depth, n):
    if depth == 0:
        return leaf(n)
    return list(map(lambda d: nested(d, n), [depth - 1]))[0]


def records(k):
    for i in range(k):
        yield {"i": i, "s": "x" * (i % 50 + 20)}


def main():
    keep = []
    for i in range(20000):
        keep.append(via_a(i) if i % 3 else via_b(i))
        keep.append(nested(i % 9, i))
        if i % 100 == 0:
            keep.extend(records(10))
        if len(keep) > 500:
            keep.clear()
    print("done", len(keep))


main()
