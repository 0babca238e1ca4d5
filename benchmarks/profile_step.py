"""Profile one demo-like RL step (organism shape, 8 prompts x 8 responses, up to 64 new tokens) with the
torch profiler: where the time goes by stage (rollout / scoring / update) and by operator.
`PYTHONPATH=src:. python -m benchmarks.profile_step [--engine fast|hf]`; writes results/profile_<engine>.json."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from benchmarks.bench_step import lengthrl_trainer
from benchmarks.common import write
from lengthrl.models import save_tiny_random_model
from lengthrl.rollout import compute_logprobs  # noqa: F401  (profiled through the trainer)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="fast")
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="lengthrl-profile-"))
    tr = lengthrl_trainer(save_tiny_random_model(tmp / "m", arch="llama"), tmp / "run", 8, 8, a.T, a.engine, 3)
    tr.train_step()  # warm-up
    tr.step += 1
    gen, upd = tr.engine.generate, tr.opt.step
    stage: dict[str, float] = {}

    def timed(name, fn):
        def wrap(*args, **kw):
            t0 = time.perf_counter()
            with record_function(name):
                out = fn(*args, **kw)
            stage[name] = stage.get(name, 0.0) + time.perf_counter() - t0
            return out
        return wrap

    tr.engine.generate = timed("rollout", gen)
    tr.opt.step = timed("optimizer_step", upd)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        m = tr.train_step()
        total = time.perf_counter() - t0
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:15]
    top = [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in ops]
    res = {"engine": a.engine, "T": a.T, "step_s_profiled": total, "mean_len": m["len/mean"],
           "rollout_s": stage.get("rollout"), "optimizer_step_s": stage.get("optimizer_step"),
           "rest_s (scoring + logprobs + backward)": total - stage.get("rollout", 0) - stage.get("optimizer_step", 0),
           "top_ops": top}
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print({k: v for k, v in res.items() if k != "top_ops"})
    write(f"profile_{a.engine}", res)


if __name__ == "__main__":
    main()
