"""Memory limits for pytest tests, checked by memlens.

    @pytest.mark.memlens_limit(peak="24 MiB", leaked=0)
    def test_parse(): ...

    memlens check -- python3 -m pytest --memlens

With --memlens, under `memlens run` or `memlens check`, each test function runs inside a
memlens region named after its node id (a budget file can select it: `regions =
["tests/test_parse.py::*"]`), and its limits become assertions written to the trace:
`peak` (the bytes the test allocated that were live at once) and `leaked` (the bytes it
allocated that are still live when it returns; 0: none). `memlens check` judges them
after the run and fails (status 1) naming each failing test, its figure, its limit and
the sites of the blocks concerned. The test itself is not failed by pytest: the program
runs to the end, and `memlens check` is the gate.

The recorder is called through ctypes (`memlens_region_enter`, `memlens_mark`,
`memlens_assert`, found in the process with dlsym); without memlens every call is a
no-op. memlens run and check see every Python object at its own size (PYTHONMALLOC=malloc)
unless told --python-allocator=pymalloc. The measuring is done around the test function
itself, and memlens leaves out of an assertion made from Python the blocks the asserting
function allocated itself: the plugin's labels, mark and ctypes temporaries do not count.
"""

import array
import ctypes
import functools
import inspect
import re

import pytest

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 1000,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 1000**2,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 1000**3,
}


def parse_size(value):
    """Bytes of `value`: an int, or a string as memlens takes sizes ("24 MiB", "1.5G",
    "64kB": K, M, G and KiB, MiB, GiB are powers of 1024, kB, MB, GB of 1000, any
    case)."""
    if isinstance(value, bool):
        raise ValueError("%r is not a size" % (value,))
    if isinstance(value, int):
        if value < 0:
            raise ValueError("%r is not a size" % (value,))
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = m and m.group(2)
    if not m or unit.lower() not in _UNITS:
        raise ValueError(
            "%r is not a size (examples: 4096, \"64 KiB\", \"24 MiB\", \"1.5 GB\")" % (value,)
        )
    return int(float(m.group(1)) * _UNITS[unit.lower()])


class Recorder:
    """The recorder's functions in this process, or None for each when it is absent."""

    def __init__(self):
        lib = ctypes.CDLL(None)

        def fn(name, restype, argtypes):
            f = getattr(lib, name, None)
            if f is not None:
                f.restype = restype
                f.argtypes = argtypes
            return f

        self._active = fn("memlens_active", ctypes.c_int, [])
        self._enter = fn("memlens_region_enter", ctypes.c_uint64, [ctypes.c_char_p, ctypes.c_size_t])
        self._exit = fn("memlens_region_exit", None, [ctypes.c_uint64])
        self._mark = fn("memlens_mark", ctypes.c_uint64, [])
        self._assert = fn(
            "memlens_assert",
            None,
            [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64],
        )

    def active(self):
        return bool(self._active and self._active())

    def region_enter(self, name):
        b = name.encode()
        return self._enter(b, len(b)) if self._enter else 0

    def region_exit(self, token):
        if self._exit:
            self._exit(token)

    def mark(self):
        return self._mark() if self._mark else 0

    def assert_(self, label, kind, mark, limit):
        if self._assert:
            b = label.encode()
            self._assert(b, len(b), kind, mark, limit)


NO_LEAKS_SINCE = 1
PEAK_SINCE = 3

def pytest_addoption(parser):
    group = parser.getgroup("memlens")
    group.addoption(
        "--memlens",
        action="store_true",
        default=False,
        help="under `memlens run`/`memlens check`: run each test in a memlens region and "
        "write its memlens_limit marks as assertions for `memlens check` to judge",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "memlens_limit(peak=None, leaked=None): memory limits of the test, judged by "
        "`memlens check` with --memlens: peak (bytes live at once) and leaked (bytes "
        "still live when it returns), as an int or a string like \"24 MiB\"",
    )
    config._memlens = None
    if config.getoption("memlens"):
        rec = Recorder()
        config._memlens = rec if rec.active() else False


def _limits(item):
    marker = item.get_closest_marker("memlens_limit")
    if marker is None:
        return None, None
    if marker.args:
        raise pytest.UsageError(
            "%s: memlens_limit takes keywords: peak=... and leaked=..." % item.nodeid
        )
    unknown = set(marker.kwargs) - {"peak", "leaked"}
    if unknown:
        raise pytest.UsageError(
            "%s: memlens_limit does not know %s (it takes peak and leaked)"
            % (item.nodeid, ", ".join(sorted(unknown)))
        )
    try:
        peak = marker.kwargs.get("peak")
        leaked = marker.kwargs.get("leaked")
        return (
            None if peak is None else parse_size(peak),
            None if leaked is None else parse_size(leaked),
        )
    except ValueError as e:
        raise pytest.UsageError("%s: memlens_limit: %s" % (item.nodeid, e))


# Around the test function itself (not pytest's call phase, which sets
# PYTEST_CURRENT_TEST: glibc keeps every environment string it is given, which would count
# as the test's leak; nor pluggy's hook call, whose result objects are made after the test
# returns). Fixtures run in the setup phase, outside. What the measuring function allocates
# itself to make the calls (the labels, the mark, ctypes' temporaries) memlens does not
# count: it leaves out the blocks the asserting Python function made, as opposed to the
# functions it called.
def _measured(rec, test, nodeid, peak, leaked):
    checks = [
        (("%s: %s" % (nodeid, what)).encode(), kind, limit)
        for what, kind, limit in (("peak", PEAK_SINCE, peak), ("leaked", NO_LEAKS_SINCE, leaked))
        if limit is not None
    ]
    checks = [(label, len(label), kind, limit) for label, kind, limit in checks]
    call = rec._assert
    marks = array.array("Q", [0])

    if inspect.iscoroutinefunction(test):
        # An async test (pytest-asyncio and the like) stays a coroutine function.
        @functools.wraps(test)
        async def measured_async(*args, **kwargs):
            marks[0] = rec.mark()
            try:
                return await test(*args, **kwargs)
            finally:
                for label, n, kind, limit in checks:
                    call(label, n, kind, marks[0], limit)

        return measured_async

    @functools.wraps(test)
    def measured(*args, **kwargs):
        marks[0] = rec.mark()
        try:
            return test(*args, **kwargs)
        finally:
            for label, n, kind, limit in checks:
                call(label, n, kind, marks[0], limit)

    return measured


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    item = pyfuncitem
    rec = getattr(item.config, "_memlens", None)
    if not rec:
        yield
        return
    peak, leaked = _limits(item)
    token = rec.region_enter(item.nodeid)
    test = item.obj
    if rec._assert and (peak is not None or leaked is not None):
        item.obj = _measured(rec, test, item.nodeid, peak, leaked)
    try:
        yield
    finally:
        item.obj = test
        rec.region_exit(token)


def pytest_terminal_summary(terminalreporter, config):
    rec = getattr(config, "_memlens", None)
    if rec is False:
        terminalreporter.write_line(
            "memlens: not running under memlens (memlens check -- python3 -m pytest "
            "--memlens): memory limits were not checked"
        )
    elif rec:
        terminalreporter.write_line(
            "memlens: memory limits written to the trace; `memlens check` judges them"
        )
