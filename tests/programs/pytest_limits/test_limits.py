"""Tests with memory limits for the pytest-memlens plugin, run by
crates/memlens-cli/tests/api.rs under `memlens check -- python3 -m pytest --memlens`.
Both pass under pytest; memlens check fails on test_over_limit (peak and leaked), whose
allocations are bytearrays large enough to go to malloc one each."""

import pytest

kept = []


def make_buffer(n):
    return bytearray(n)


@pytest.mark.memlens_limit(peak="24 MiB", leaked=0)
def test_within_limit():
    buf = make_buffer(8 << 20)
    assert len(buf) == 8 << 20
    del buf


@pytest.mark.memlens_limit(peak="24 MiB", leaked=0)
def test_over_limit():
    big = make_buffer(32 << 20)
    kept.append(make_buffer(1 << 20))
    assert len(big) == 32 << 20
    del big
