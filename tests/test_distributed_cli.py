"""The real command line under torchrun: `torchrun --nproc_per_node 2 -m lengthrl train ...`, then `--resume`,
logs the metrics of `lengthrl train` on one process with the same rollout shards. Slow (two torchrun starts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lengthrl.models import save_tiny_random_model
from runkit import MICRO

pytestmark = pytest.mark.slow
SRC = str(Path(__file__).resolve().parents[1] / "src")
SETS = ["task=arith_chain", "train_prompts=64", "eval_prompts=0", "prompts_per_step=4", "group_size=4",
        "max_new_tokens=24", "checkpoint_every=1", "sample_every=1", "log_every=0", "lr=1e-2", "loss=luspo",
        "mini_batches=2", "micro_batch_size=3", "rollout_shards=2",
        'reward=[{name="correct",weight=1.0},{name="kimi",weight=1.0}]']


def run(out: Path, model: str, steps: int, nproc: int, resume: bool = False, extra: tuple = (),
        pause_at: str | None = None):
    """`lengthrl train` on `nproc` processes, to the end (a CompletedProcess); with `pause_at`
    (LENGTHRL_PAUSE_AT, see lengthrl.train.faults) started in its own session and returned running (a Popen,
    stderr in OUT.stderr) for the test to kill."""
    args = [f"--set={s}" for s in SETS + [f"model={model}", f"steps={steps}", *extra]]
    args += ["--out", str(out), "--quiet"] + (["--resume"] if resume else [])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)] if nproc > 1 \
        else [sys.executable]
    env = os.environ | {"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = launcher + ["-m", "lengthrl", "train", *args]
    if pause_at:
        err = open(out.with_suffix(".stderr"), "w")  # noqa: SIM115 - kept open for the child
        return subprocess.Popen(cmd, env=env | {"LENGTHRL_PAUSE_AT": pause_at}, stdout=subprocess.DEVNULL,
                                stderr=err, text=True, start_new_session=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def rows(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def micro_model(tmp_path: Path) -> str:
    """A tiny random Qwen2 directory (runkit.MICRO: 1 layer, hidden 32)."""
    return str(save_tiny_random_model(tmp_path / "m", arch="qwen2", seed=0, **MICRO))


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        todo += children.get(q, [])
    return out


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def same_metrics(one: Path, two: Path, steps: int) -> None:
    """The two runs logged the same metrics (floats within 1e-6) for steps 1..steps."""
    a, b = rows(one / "metrics.jsonl"), rows(two / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    for x, y in zip(a, b, strict=True):
        for k, v in x.items():
            if k.endswith("time_s") or k == "tokens_per_s":
                continue
            if isinstance(v, float):
                assert y[k] == pytest.approx(v, rel=1e-6, abs=1e-6), (x["step"], k)
            else:
                assert v == y[k], (x["step"], k)


def ok(p: subprocess.CompletedProcess, out: Path, steps: int) -> None:
    """Success, or an abort at teardown after every step was logged (seen with gloo)."""
    done = (out / "metrics.jsonl").is_file() and len(rows(out / "metrics.jsonl")) == steps
    assert p.returncode == 0 or (done and "terminate called" in p.stderr), p.stderr[-2000:]


def test_torchrun_train_and_resume_equal_one_process(tmp_path):
    model = micro_model(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    ok(run(one, model, 3, 1), one, 3)
    ok(run(two, model, 2, 2), two, 2)
    ok(run(two, model, 3, 2, resume=True), two, 3)
    same_metrics(one, two, steps=3)
    assert (two / "final" / "config.json").is_file()


def test_torchrun_fsdp_train_then_evaluate(tmp_path):
    """`dist_strategy=fsdp` from the command line: 2 sharded ranks train, then rank 0 alone evaluates the saved
    final weights while the other rank has already left; the run ends cleanly with the one-process metrics."""
    model = micro_model(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ("eval_prompts=4", "dist_strategy=fsdp")
    ok(run(one, model, 2, 1, extra=extra), one, 2)
    p = run(two, model, 2, 2, extra=extra)
    assert p.returncode == 0, p.stderr[-2000:]
    same_metrics(one, two, steps=2)
    ev1, ev2 = (json.loads((d / "eval.json").read_text()) for d in (one, two))
    assert [(r["length"], r["correct"]) for r in ev1["records"]] == [(r["length"], r["correct"]) for r in
                                                                     ev2["records"]]
    assert len(ev2["records"]) == 4 and ev2["metrics"]["acc"] == ev1["metrics"]["acc"]


def test_torchrun_fsdp_killed_inside_a_sharded_checkpoint_resumes(tmp_path):
    """2 FSDP2 ranks with sharded checkpoints, the whole job SIGKILLed while rank 0 is inside the step-2
    checkpoint write (the shards written, the directory not yet renamed): `--resume` discards the unfinished
    write, restarts from step 1's shards and ends with the metrics of an uninterrupted one-process run."""
    model = micro_model(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ("dist_strategy=fsdp", "checkpoint_format=sharded")
    ok(run(one, model, 3, 1, extra=extra), one, 3)
    p = run(two, model, 3, 2, extra=extra, pause_at="save:2")
    marker = two / ".paused-save-2"
    t0 = time.monotonic()
    while not marker.exists() and p.poll() is None and time.monotonic() - t0 < 300:
        time.sleep(0.2)
    assert marker.exists(), two.with_suffix(".stderr").read_text()[-2000:]
    procs = descendants(p.pid)  # the launcher and both ranks (torchrun starts each rank in its own session)
    assert len(procs) >= 3, procs
    for pid in procs:
        os.kill(pid, signal.SIGKILL)
    p.wait()
    t0 = time.monotonic()
    while any(alive(pid) for pid in procs) and time.monotonic() - t0 < 30:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in procs)
    tmp = list((two / "checkpoints").glob(".tmp-*"))
    assert len(tmp) == 1 and (tmp[0] / "shards" / ".metadata").is_file()  # killed mid-write
    ok(run(two, model, 3, 2, resume=True, extra=extra), two, 3)
    same_metrics(one, two, steps=3)
    assert not list((two / "checkpoints").glob(".tmp-*"))
    assert sorted(q.name for q in (two / "checkpoints").iterdir()) == ["step_000002", "step_000003"]
