"""Where the page runs: a hosted Space (and ZeroGPU) or a local machine."""

from __future__ import annotations

import os
from typing import Any, Callable

if os.environ.get("SPACE_ID"):
    try:  # ZeroGPU: `spaces` must be imported before torch sets up CUDA.
        import spaces
    except ImportError:
        spaces = None
else:
    spaces = None

#: The longest a ZeroGPU call may hold the GPU (seconds).
GPU_DURATION_S = 120


def is_hosted() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def gpu(function: Callable[..., Any]) -> Callable[..., Any]:
    """`@spaces.GPU` on a ZeroGPU Space (the `spaces` package imported there); a no-op elsewhere."""
    if spaces is None:
        return function
    return spaces.GPU(duration=GPU_DURATION_S)(function)
