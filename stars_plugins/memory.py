"""Giving freed memory back to the system in a long-running process.

Python, PyTorch and the tokenizers allocate through the C library's `malloc`. glibc keeps what a
finished batch freed inside its *arenas* (one per thread that allocates, up to 8 per core) rather
than returning it to the system, so a server's resident memory climbs with every burst of load and
never comes down, although nothing is alive any more. Serving engines answer this in two ways, and
so does this module:

- `malloc_trim()`: glibc's `malloc_trim(0)` hands the free pages of every arena back to the system.
  The scheduler calls it through a `Trimmer` when its load drops: when it goes idle, or when its
  rows fall to half of their peak since the last trim (at most once per `min_interval` seconds).
- `limit_malloc_arenas(n)`: glibc's `mallopt(M_ARENA_MAX, n)`, the run-time form of the
  `MALLOC_ARENA_MAX` environment variable: fewer arenas, so less memory held in each thread's own
  pool. `stars serve` sets 2 before it loads anything.

Both are no-ops (returning False) where the C library is not glibc (macOS, musl, Windows).
`STARS_MALLOC_TRIM=0` in the environment turns the scheduler's trimming off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time
from functools import cache
from typing import Any

_M_ARENA_MAX = -8  # glibc's mallopt parameter number for the arena limit (malloc.h)


@cache
def _glibc() -> Any | None:
    """glibc's handle, or None on any other C library (no `malloc_trim` there)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    return libc


def malloc_trim() -> bool:
    """Return the free memory of every malloc arena to the system (glibc's `malloc_trim(0)`).
    False where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at `count` for the rest of the process (`mallopt(M_ARENA_MAX)`),
    like `MALLOC_ARENA_MAX=count` at start-up; arenas already created stay. Call it before threads
    start. False where the C library is not glibc or refuses the value."""
    if count < 1:
        raise ValueError(f"malloc arena limit must be at least 1, got {count}")
    libc = _glibc()
    return libc is not None and libc.mallopt(_M_ARENA_MAX, count) == 1


def resident_mib() -> float | None:
    """This process's resident memory in MiB (Linux: /proc/self/status), or None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def trimming_enabled() -> bool:
    """Whether schedulers trim by default (`STARS_MALLOC_TRIM=0` turns it off)."""
    return os.environ.get("STARS_MALLOC_TRIM", "1").strip().lower() not in ("0", "false", "no", "off")


class Trimmer:
    """Decides when a falling load is worth a `malloc_trim`: on going idle, and (with `on_halving`)
    when the load drops to half of its peak since the last trim, at most once per `min_interval`
    seconds. A trim runs in the calling thread and takes tens of milliseconds for a 1.2 GiB process
    on a CPU (35-220 ms measured on a loaded 2-core machine)."""

    def __init__(
        self,
        *,
        enabled: bool | None = None,
        on_halving: bool = True,
        min_interval: float = 1.0,
        trim: Any = malloc_trim,
    ):
        self.enabled = trimming_enabled() if enabled is None else enabled
        self.on_halving = on_halving
        self.min_interval = min_interval
        self.trims = 0  # trims done so far (for tests and monitoring)
        self.seconds = 0.0  # time spent trimming, all trims together
        self._trim = trim
        self._peak = 0  # most rows in flight since the last trim
        self._last = 0.0
        self._lock = threading.Lock()

    def observe(self, rows: int) -> bool:
        """Note the rows in flight now; trim if the load fell far enough. Returns whether it trimmed."""
        if not self.enabled:
            return False
        with self._lock:
            self._peak = max(self._peak, rows)
            if self._peak == 0 or (rows > 0 and (not self.on_halving or 2 * rows > self._peak)):
                return False  # nothing ran since the last trim, or the load has not halved
            now = time.monotonic()
            if rows > 0 and now - self._last < self.min_interval:
                return False  # going idle always trims; a halving waits for the interval
            self._peak, self._last = rows, now
            self.trims += 1
        start = time.perf_counter()
        self._trim()
        with self._lock:
            self.seconds += time.perf_counter() - start
        return True


__all__ = ["Trimmer", "limit_malloc_arenas", "malloc_trim", "resident_mib", "trimming_enabled"]
