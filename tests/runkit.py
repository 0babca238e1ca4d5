"""Shared code of the reliability tests: a micro model, a run's command line, starting a real
`python -m lengthrl train` subprocess, killing it (SIGKILL) at a pause point, and comparing two runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

MICRO = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
             max_position_embeddings=128)
TIMING = {"time_s", "step_time_s", "rollout_time_s", "tokens_per_s"}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def on_device(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """`model` on `device` for a device-parametrised test: the model itself on the CPU (no copy, no cost), a
    copy on any other device (module-scoped fixtures share their model between tests)."""
    if torch.device(device).type == "cpu":
        return model
    import copy

    return copy.deepcopy(model).to(device)


def reference_run(settings: dict, out) -> None:
    """The same run, never killed, in this process (the settings' one thread, as the subprocesses; the
    process's thread count is restored afterwards)."""
    from lengthrl.train.validate import build_config
    from lengthrl.train.loop import train

    threads = torch.get_num_threads()
    try:
        train(build_config(extra=settings), out, progress=False, evaluate=False)
    finally:
        torch.set_num_threads(threads)


def run_settings(model_dir, **kw) -> dict:
    """A short, fast run: 2 prompts x 4 responses, 12 new tokens, one CPU thread (bitwise reproducible)."""
    base = dict(model=str(model_dir), task="arith_chain", train_prompts=16, eval_prompts=0, prompts_per_step=2,
                group_size=4, max_new_tokens=12, steps=6, checkpoint_every=2, keep_checkpoints=2,
                sample_every=1, log_every=0, lr=1e-3, threads=1, seed=0)
    return base | kw


def train_cmd(settings: dict, out: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "lengthrl", "train", "--quiet", "--out", str(out)]
    for k, v in settings.items():
        cmd += ["--set", f"{k}={json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v}"]
    return cmd + (["--resume"] if resume else [])


def start(settings: dict, out: Path, resume: bool = False, pause_at: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "LENGTHRL_PAUSE_AT"}
    env.update(PYTHONPATH=SRC, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    if pause_at:
        env["LENGTHRL_PAUSE_AT"] = pause_at
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(train_cmd(settings, out, resume), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"run failed ({proc.returncode}):\n{err[-3000:]}"


def kill_at(proc: subprocess.Popen, out: Path, point: str, step: int, timeout: float = 120) -> None:
    """Wait until the run pauses at (point, step), then SIGKILL it."""
    marker = Path(out) / f".paused-{point}-{step}"
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended before pausing at {point}:{step}:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError(f"run never reached {point}:{step}")
        time.sleep(0.02)
    kill_now(proc)
    marker.unlink()


def kill_now(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


def rows(out: Path, name: str = "metrics.jsonl") -> list[dict]:
    p = Path(out) / name
    if not p.exists():
        return []
    return [{k: v for k, v in json.loads(ln).items() if k not in TIMING} for ln in p.read_text().splitlines() if ln]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out) / "final" / "model.safetensors"))


def same_run(a: Path, b: Path) -> list[str]:
    """Differences between two finished runs: metrics (timings excluded), samples and final weights, bitwise.
    An empty list means identical."""
    diffs = []
    for name in ("metrics.jsonl", "samples.jsonl"):
        ra, rb = rows(a, name), rows(b, name)
        if json.dumps(ra, sort_keys=True) != json.dumps(rb, sort_keys=True):
            diffs.append(f"{name} differs ({len(ra)} vs {len(rb)} rows)")
    wa, wb = weights(a), weights(b)
    if wa.keys() != wb.keys() or any(not torch.equal(wa[k], wb[k]) for k in wa):
        diffs.append("final weights differ")
    return diffs
