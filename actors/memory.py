"""Memory of a parser process: what it holds (RSS) and a hard cap on what it may allocate.

A hostile page (a few KB that expand into millions of glyphs or a giant image) can make
MuPDF allocate gigabytes. Polling RSS from a watchdog thread reacts too late (an allocation
of gigabytes happens between two polls) and can only kill the process. The cap here is the
kernel's instead: `RLIMIT_DATA` bounds the private writable memory of the process (heap and
anonymous mappings, where MuPDF's and Python's allocations live), so the allocation that
would cross it fails at once. MuPDF turns that into an exception (`malloc (N bytes)
failed`) and Python into a MemoryError: the page fails with a clear error and the actor
lives on. RSS is still read, after each call, to recycle actors that grew
(actors/supervised_pool.py).

A capped process also gives up Abseil's failure signal handler, which Ray's core worker
installs: it maps memory to write its report, and at the cap that fails inside the handler,
which then re-enters itself forever (`die_on_fatal_signals`).

Linux only (`/proc` and RLIMIT_DATA's accounting since Linux 4.7), like the Ray nodes.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import resource
import signal

MIB = 1024 * 1024
# The signals Abseil's failure handler and Python's faulthandler both take.
FATAL_SIGNALS = (signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGSEGV)
SIG_ERR = ctypes.c_void_p(-1).value
# MuPDF: "malloc (N bytes) failed", "calloc (N x M bytes) failed", "realloc (...) failed".
_OUT_OF_MEMORY_MARKERS = ("malloc (", "calloc (", "realloc (", "out of memory")


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def data_bytes() -> int:
    """Private writable memory of this process (what RLIMIT_DATA counts), from VmData."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmData in /proc/self/status")


def cap_allocations(budget_bytes: int) -> int:
    """Let this process allocate at most `budget_bytes` more than it holds now.

    Called once an actor has imported what it needs, so the budget is for the pages it
    will parse. A capped process cannot run Abseil's failure handler, so fatal signals are
    handed over first (`die_on_fatal_signals`). Returns the limit set (bytes of private
    writable memory).
    """
    die_on_fatal_signals()
    limit = data_bytes() + budget_bytes
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return limit


def die_on_fatal_signals() -> None:
    """Let a fatal signal end this process, after Python's traceback (written without
    allocating), instead of running Abseil's failure handler.

    That handler, which Ray's core worker installs, maps memory to symbolize the stack. At
    the RLIMIT_DATA cap the mapping fails, the failure aborts inside the handler, and the
    handler re-enters itself forever: a render actor of the test suite spun so for minutes,
    writing 6 GB of "mmap error: 12" to its log, and `ray.kill` did not end it. Set with
    libc's `signal` because an async actor's constructor does not run on the main thread,
    where Python's `signal.signal` would have to be called.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    faulthandler.disable()
    for signum in FATAL_SIGNALS:
        if libc.signal(int(signum), None) == SIG_ERR:  # None: SIG_DFL
            raise OSError(ctypes.get_errno(), f"cannot reset the handler of {signum.name}")
    faulthandler.enable()  # chained to the default action set above


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception from MuPDF or Python is an allocation that failed."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _OUT_OF_MEMORY_MARKERS)
