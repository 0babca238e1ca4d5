"""Start-up time of the command line: `lengthrl --help`, `lengthrl train --help`, `lengthrl eval --help`, each a
fresh interpreter (`python -m lengthrl ...` with PYTHONPATH=src), beside the bare interpreter (`python -c pass`)
as the baseline. Median wall seconds over interleaved repeats; goal: `lengthrl --help` under 1.5 s.

`python -m benchmarks --only cli` (printed by `make bench`); results in benchmarks/results/cli.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import interleaved, med, table, write

SRC = Path(__file__).resolve().parents[1] / "src"
GOAL_S = 1.5
COMMANDS = {"python -c pass (baseline)": ["-c", "pass"], "lengthrl --help": ["-m", "lengthrl", "--help"],
            "lengthrl train --help": ["-m", "lengthrl", "train", "--help"],
            "lengthrl eval --help": ["-m", "lengthrl", "eval", "--help"]}


def _timer(args: list[str]):
    env = {**os.environ, "PYTHONPATH": str(SRC)}

    def go() -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    return go


def run(quick: bool = False) -> dict:
    """Time each command (quick: 2 repeats, else 5), print the table and write results/cli.json."""
    times = interleaved({k: _timer(v) for k, v in COMMANDS.items()}, repeats=2 if quick else 5, warmup=1)
    base = med(times["python -c pass (baseline)"])
    rows = [{"command": k, "median_s": med(v), "min_s": min(v), "minus_baseline_s": med(v) - base,
             "repeats": len(v)} for k, v in times.items()]
    print(table(rows, ["command", "median_s", "min_s", "minus_baseline_s", "repeats"]))
    help_s = med(times["lengthrl --help"])
    print(f"lengthrl --help: {help_s:.2f} s median (goal < {GOAL_S} s: {'met' if help_s < GOAL_S else 'NOT met'}); "
          f"baseline python -c pass {base:.2f} s")
    report = {"rows": rows, "goal_s": GOAL_S, "help_median_s": help_s, "baseline_s": base}
    write("cli", report)
    return report
