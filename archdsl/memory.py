"""The process's memory allocator, for fast CPU inference on Linux.

glibc's ``malloc`` serves a large block (an activation at batch 8: tens of megabytes) with
``mmap`` when no free chunk of its heap is large enough, and hands it back to the OS when
it is freed; the next forward pass gets fresh pages, each a page fault and a zeroing on
first touch. Its threshold for mapping grows with the blocks freed, but never past 32 MB:
efficientnet_b0's widest activation at batch 8 (38.5 MB) costs its compiled network
9,409 faults a forward in a process that runs it alone. onnxruntime never pays this: it
keeps freed memory in an arena of its own. :func:`keep_freed_memory` makes glibc keep
it, for the whole process (docs/performance.md, "Memory the allocator gives back").
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
"""``mallopt``'s parameters, from glibc's ``<malloc.h>``."""

KEEP_AT_MOST = 2**31 - 1
"""Free memory at the top of the heap kept before glibc trims it (bytes): as good as all."""


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse instead of handing it back to the
    OS: no ``mmap`` for large blocks, no trimming of the heap. Tensors freed by one forward
    pass are then reused by the next without page faults, as onnxruntime's arena does.

    It is for the whole process and for the rest of its life, and the process's memory
    stays at its peak; values computed do not change. True where it took effect, False
    where the C library is not glibc (elsewhere there is nothing to do). Before Python
    starts, the environment does the same:
    ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647``.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_AT_MOST) == 1
