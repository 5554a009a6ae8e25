"""Giving memory the engines freed back to the system, once no engine has work (Engines._all_idle).

Each engine thread allocates through its own glibc malloc arena: Piper's buffers grow with what it
speaks, whisper's with the clip, llama.cpp's saved prompts with the conversation. Freed chunks stay
in the arena, counted in the daemon's resident memory, until the arena's top happens to be free.
malloc_trim(0) hands back every free page of every arena (glibc 2.8 and later). It takes a few
milliseconds, so it runs on the engine thread that finished last, never on a turn's way.
Where the C library has no malloc_trim (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def give_back_free_memory() -> bool:
    """Return the free pages of every malloc arena to the system; whether anything was given back."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))
