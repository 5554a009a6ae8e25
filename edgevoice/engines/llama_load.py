"""Loading a llama.cpp model where the build uses the CPU's AMX tiles.

On a CPU with AMX (Intel Xeon 4th generation and later), a llama.cpp built for the machine repacks
the weights into an AMX buffer at load, and its AMX matrix multiply then crashes the process in the
first inference (a segmentation fault, seen here with SmolLM2's Q4_1 file). Loading without the
extra buffer types keeps the weights in the plain CPU buffer, which the ordinary AVX-512 kernels
use. Elsewhere (no AMX in the build: Arm boards, older x86) nothing changes, so the repacking
kept there still speeds up the quantisations it covers.

llama-cpp-python's Llama() takes no argument for this; it builds the model's parameters from
llama_model_default_params() inside its constructor. So the load runs with that function wrapped,
under a lock, and the wrapper is taken away again at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as native

_LOCK = threading.Lock()


@cache
def amx_in_build() -> bool:
    """Whether this llama.cpp build runs matrix multiplies on AMX tiles."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextmanager
def weights_in_plain_buffers(plain: bool | None = None) -> Iterator[None]:
    """Within it, Llama() loads weights without extra (AMX) buffer types when plain (None: when the build has AMX)."""
    if plain is None:
        plain = amx_in_build()
    if not plain:
        yield
        return
    with _LOCK:
        default = native.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        native.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            native.llama_model_default_params = default
