"""The machine: its CPU, memory and other load, a process's peak memory, and what the hardware can
do at most (matmul peak, memory read rate), measured in the benchmark's own process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import models as bench_models
from .project import chosen_batch_size


def proc_status_bytes(field: str) -> int | None:
    """A `kB` field of /proc/self/status (VmHWM: peak resident set, VmRSS: current) in bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if field == "VmRSS":
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            return None
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def linear_parameters(model) -> int:
    """Weights of the decoder's linear layers: each input token costs 2 FLOPs per weight forward."""
    import torch

    decoder = model.get_decoder()
    return sum(module.weight.numel() for module in decoder.modules() if isinstance(module, torch.nn.Linear))


READ_BUFFER_BYTES = 1024**3
# Below this, weights sit in the caches and per-op overhead, not the hardware, bounds the time.
HARDWARE_LIMIT_MIN_WEIGHTS = 256 * 1024**2


def measure_hardware(loaded, n_tokens: int, n_steps: int) -> dict:
    """What this machine can do at most, measured here (fp32, this process's threads):

    - matmul peak: the fastest of the largest matmul of an IG batch (rows·tokens × hidden →
      intermediate) at the engine's own batch and at 512, 1024 and 2048 rows;
    - memory read rate: summing a 1 GiB buffer; reading every weight once at that rate is the least
      each greedy decode step costs (for weights far larger than the caches).

    and the project's work: IG-n_steps's linear-layer FLOPs (forward, then backward to the inputs
    only: 2 + 2 FLOPs per weight and token; attention scores and the one-position vocabulary
    projection are left out, so this is a lower bound)."""
    import torch

    config = loaded.model.config
    batch = chosen_batch_size(loaded, n_tokens, n_steps)
    own_rows = max(1, batch * n_tokens)
    right = torch.randn(config.hidden_size, config.intermediate_size)
    rates = {}
    for rows in sorted({own_rows, 512, 1024, 2048}):  # the engine's own batch shape and larger ones
        left = torch.randn(rows, config.hidden_size)
        torch.mm(left, right)
        repeats, mark = 0, time.perf_counter()
        while time.perf_counter() - mark < 0.5:
            torch.mm(left, right)
            repeats += 1
        rates[rows] = 2 * rows * config.hidden_size * config.intermediate_size * repeats / (time.perf_counter() - mark) / 1e9
    peak_rows = max(rates, key=rates.get)
    # Memory read rate on a buffer far larger than any cache (summing is lighter than reading).
    buffer = torch.ones(READ_BUFFER_BYTES // 4)
    buffer.sum()
    reads, mark = 0, time.perf_counter()
    while reads == 0 or time.perf_counter() - mark < 1.0:
        buffer.sum()
        reads += 1
    read_gbps = READ_BUFFER_BYTES * reads / (time.perf_counter() - mark) / 1e9
    del buffer
    ig_rows = n_steps + 2
    return {
        "matmul_gflops": rates[peak_rows],
        "matmul_shape": [peak_rows, config.hidden_size, config.intermediate_size],
        "own_shape_gflops": rates[own_rows],
        "own_shape": [own_rows, config.hidden_size, config.intermediate_size],
        "weight_read_seconds": bench_models.weight_bytes(loaded.model) / (read_gbps * 1e9),
        "weight_read_gbps": read_gbps,
        "ig_linear_gflop": 4 * linear_parameters(loaded.model) * n_tokens * ig_rows / 1e9,
    }


def package_version(name: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


def machine_info() -> dict:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": memory, "gpu": gpu, "interpreter": sys.executable,
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": {name: package_version(name) for name in
                         ("torch", "transformers", "captum", "tokenizers", "numpy", "inseq", "psutil")}}


def machine_load() -> dict:
    """What else is running: load averages and the busiest other processes (the machine may be shared)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    busy = []
    try:
        output = subprocess.run(["top", "-bn1", "-w", "200"], capture_output=True, text=True, timeout=20).stdout
        lines = output.splitlines()
        header = next((i for i, line in enumerate(lines) if line.strip().startswith("PID")), None)
        if header is not None:
            for line in lines[header + 1:]:
                fields = line.split(None, 11)
                if len(fields) >= 12 and fields[0] != str(os.getpid()):
                    try:
                        cpu = float(fields[8])
                    except ValueError:
                        continue
                    if cpu >= 5.0 and fields[11] != "top":
                        busy.append(f"{fields[11][:40]} {cpu:.0f}% CPU, RES {fields[5]}")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"loadavg": load, "busy": busy[:8]}
