"""Shared helpers of the benchmarks: interleaved repeated timing, machine description, JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """Where the numbers were measured: CPU count, torch threads, load average (the machine may be shared)."""
    return {
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0],
    }


def interleaved(fns: dict[str, Callable[[], float | None]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run every fn `warmup` times, then `repeats` rounds of all fns in turn (A B C A B C ...).

    A fn returns its own measured seconds (a float) or anything else (its wall time is then used). Interleaving makes the ratios
    robust to the load of a shared machine drifting during the run. Returns name -> list of seconds.
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            got = f()
            times[k].append(got if isinstance(got, float) else time.perf_counter() - t0)
    return times


def med(xs: list[float]) -> float:
    """Median (robust to a noisy neighbour on a shared machine)."""
    return statistics.median(xs)


def write(name: str, payload: dict) -> Path:
    """benchmarks/results/<name>.json with the machine description added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine()} | payload, indent=1))
    return path


def table(rows: list[dict], cols: list[str]) -> str:
    """A plain text table of `rows` (dicts) with columns `cols`."""
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols))]
    lines += ["  ".join(row[i].ljust(w[i]) for i in range(len(cols))) for row in cells]
    return "\n".join(lines)
