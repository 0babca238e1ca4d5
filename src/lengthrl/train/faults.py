"""Fault-injection points for the reliability tests: a run can be made to stop at a named point (inside a
checkpoint write, after a step's metrics, between rollout and update) so that a test can kill it there.

Set the environment variable ``LENGTHRL_PAUSE_AT="<point>:<step>"`` (several separated by commas). When the
run reaches that point at that step it writes the marker file ``<run dir>/.paused-<point>-<step>`` and sleeps
until it is killed. Without the variable every point is a no-op (one dictionary lookup).

Points: ``save`` (checkpoint files written to the temporary directory, not yet renamed), ``replace`` (a
re-saved step: the old copy moved aside, the new one not yet renamed into place), ``metrics`` (the
step's metrics line written, its checkpoint not yet), ``update`` (rollout and scoring done, update not yet).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "LENGTHRL_PAUSE_AT"
POINTS = ("save", "replace", "metrics", "update")


def marker(run_dir: str | Path, point: str, step: int) -> Path:
    """The file a paused run writes, for the test to wait on."""
    return Path(run_dir) / f".paused-{point}-{step}"


def pause_point(run_dir: str | Path, point: str, step: int) -> None:
    """Sleep here until killed when ``LENGTHRL_PAUSE_AT`` names (point, step); otherwise return at once."""
    spec = os.environ.get(ENV)
    if not spec or f"{point}:{step}" not in {s.strip() for s in spec.split(",")}:
        return
    m = marker(run_dir, point, step)
    m.parent.mkdir(parents=True, exist_ok=True)
    m.write_text(str(os.getpid()))
    while True:  # the test kills the process here (SIGKILL)
        time.sleep(1.0)
