"""Memory of a parser process: what it holds (RSS) and a hard cap on what it may allocate.

A hostile page (a few KB that expand into millions of glyphs or a giant image) can make
MuPDF allocate gigabytes. Polling RSS from a watchdog thread reacts too late (an allocation
of gigabytes happens between two polls) and can only kill the process. The cap here is the
kernel's instead: `RLIMIT_DATA` bounds the private writable memory of the process (heap and
anonymous mappings, where MuPDF's and Python's allocations live), so the allocation that
would cross it fails at once. MuPDF turns that into an exception (`malloc (N bytes)
failed`) and Python into a MemoryError: the page fails with a clear error and the actor
lives on. RSS is still read, after each call, to recycle actors that grew (actors/supervision.py).

Linux only (`/proc` and RLIMIT_DATA's accounting since Linux 4.7), like the Ray nodes.
"""

from __future__ import annotations

import os
import resource

MIB = 1024 * 1024
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
    will parse. Returns the limit set (bytes of private writable memory).
    """
    limit = data_bytes() + budget_bytes
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return limit


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception from MuPDF or Python is an allocation that failed."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _OUT_OF_MEMORY_MARKERS)
