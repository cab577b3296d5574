"""Tests with memory limits for the pytest-memlens plugin, run by
crates/memlens-cli/tests/api.rs under `memlens check -- python3 -m pytest --memlens`.
All pass under pytest; memlens check fails on test_over_limit (peak and leaked), whose
allocations are bytearrays large enough to go to malloc one each. test_peak_at_return's
peak is when it returns, just under its limit: what the plugin allocates to make its
assertions then must not count."""

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


@pytest.mark.memlens_limit(peak="4 MiB")
def test_peak_at_return():
    kept.append(make_buffer((4 << 20) - 512))
