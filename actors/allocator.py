"""Keeping freed memory in the heap of an encoding process, instead of handing it back.

Each forward pass of the model allocates the same few MB of activations and frees them.
glibc serves blocks that large with fresh `mmap`s and trims the heap's free top back to
the kernel, so every batch faults its activations in again, page by page, in kernel time.
Raising the mmap and trim thresholds keeps those blocks in the heap for the next batch, so
almost none of those faults are left (see docs/BENCHMARKS.md, 'The embed actor's allocator
setting'); the process holds at most its peak, which it reached anyway.

glibc only (Linux nodes); elsewhere the call reports that nothing changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit (blocks above it are mapped whatever the setting);
# the activations of a driver batch (about 7 chunks), attention included, are below it.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
# Free memory at the top of a heap beyond this goes back to the kernel: the peak of a few
# batches stays, a one-off spike does not stay forever.
TRIM_THRESHOLD_BYTES = 256 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set this process's allocator to reuse freed blocks; True when glibc took both."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # no such library, or no mallopt in it (macOS)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mmap_set = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_set = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_set and trim_set
