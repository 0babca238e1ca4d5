"""Soak test (slow; `make soak`, not CI): many short training runs, each killed again and again with random
faults -- SIGKILL at a random moment, SIGKILL at a pause point (inside a checkpoint write, between rollout and
update, after a metrics line), then sometimes a corrupted newest checkpoint, a stale temporary directory or a
torn metrics line -- and resumed with `--resume` until it finishes. Every run must end bitwise equal to the
same run never interrupted. Prints the counts (faults injected, runs resumed correctly) and writes them to
$LENGTHRL_SOAK_OUT (default: a temporary directory) as soak_summary.json.

LENGTHRL_SOAK_RUNS (default 8) sets the number of runs, LENGTHRL_SOAK_SEED (default 0) the fault schedule."""

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from lengthrl.models import save_tiny_random_model
from lengthrl.objectives import LOSSES
from lengthrl.train.checkpoint import list_checkpoints
from runkit import MICRO, finish, kill_at, kill_now, reference_run, run_settings, same_run, start

pytestmark = pytest.mark.slow
MAX_FAULTS = 5  # per run; then it is left to finish



def after_kill(rng: random.Random, run: Path, counts: Counter) -> None:
    """Damage left behind by a crash (or a disk), chosen at random."""
    what = rng.choice(["nothing", "nothing", "corrupt newest checkpoint", "stale tmp dir", "torn metrics line"])
    ckpts = list_checkpoints(run)
    if what == "corrupt newest checkpoint" and ckpts:
        p = ckpts[-1] / rng.choice(["trainer_state.pt", "model/model.safetensors"])
        b = bytearray(p.read_bytes())
        b[rng.randrange(len(b))] ^= 0xFF
        p.write_bytes(bytes(b))
    elif what == "stale tmp dir":
        (run / "checkpoints" / ".tmp-step_999999-1" / "model").mkdir(parents=True, exist_ok=True)
    elif what == "torn metrics line" and (run / "metrics.jsonl").exists():
        with open(run / "metrics.jsonl", "a") as f:
            f.write('{"step": 99, "ac')
    else:
        return
    counts[what] += 1


def one_run(i: int, rng: random.Random, model_dir: Path, root: Path, counts: Counter) -> list[str]:
    steps = rng.randint(3, 6)
    s = run_settings(model_dir, steps=steps, seed=i, loss=rng.choice(list(LOSSES)),
                     checkpoint_every=rng.randint(1, 2), keep_checkpoints=rng.randint(1, 3),
                     micro_batch_size=rng.choice([0, 2]))
    ref, run = root / f"ref{i}", root / f"run{i}"
    resume = False
    for _ in range(MAX_FAULTS):
        kind = rng.choice(["random moment", "pause point"])
        if kind == "pause point":
            point, step = rng.choice(["save", "update", "metrics"]), rng.randint(1, steps)
            proc = start(s, run, resume=resume, pause_at=f"{point}:{step}")
            try:
                kill_at(proc, run, point, step)
            except AssertionError:  # the resumed run had already passed that point: it finished cleanly
                if proc.returncode != 0:
                    raise
                break
        else:
            proc = start(s, run, resume=resume)
            deadline = time.monotonic() + rng.uniform(1.0, 25.0)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is not None:
                assert proc.returncode == 0, proc.stderr.read()[-3000:]
                break
            kill_now(proc)
        counts[f"kill at {kind}"] += 1
        after_kill(rng, run, counts)
        resume = True
    else:
        finish(start(s, run, resume=True))
    reference_run(s, ref)
    return same_run(ref, run)


def test_soak(tmp_path):
    n_runs = int(os.environ.get("LENGTHRL_SOAK_RUNS", "8"))
    rng = random.Random(int(os.environ.get("LENGTHRL_SOAK_SEED", "0")))
    model_dir = save_tiny_random_model(tmp_path / "model", arch="qwen2", seed=0, **MICRO)
    counts: Counter = Counter()
    failed = {}
    for i in range(n_runs):
        diffs = one_run(i, rng, model_dir, tmp_path, counts)
        if diffs:
            failed[i] = diffs
    summary = {"runs": n_runs, "resumed_correctly": n_runs - len(failed), "faults": dict(counts),
               "faults_total": sum(counts.values()), "failed": failed}
    out = Path(os.environ.get("LENGTHRL_SOAK_OUT", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak_summary.json").write_text(json.dumps(summary, indent=1))
    print("\nsoak:", json.dumps(summary))
    assert not failed, summary
