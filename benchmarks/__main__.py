"""`python -m benchmarks [--quick] [--only rollout,rl_step,logprobs,scaling,dllm,memory,head_memory,cli,levers] [--threads N]`: run the benchmarks,
print ratios against the baselines measured in the same run, write benchmarks/results/*.json."""

from __future__ import annotations

import argparse
import importlib
import logging
import time

import torch

BENCHES = {"logprobs": "benchmarks.bench_logprobs", "rl_step": "benchmarks.bench_step",
           "rollout": "benchmarks.bench_rollout", "scaling": "benchmarks.bench_scaling",
           "dllm": "benchmarks.bench_dllm", "memory": "benchmarks.bench_memory",
           "head_memory": "benchmarks.bench_head_memory", "cli": "benchmarks.bench_cli",
           "levers": "benchmarks.bench_levers"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a small shared machine extra threads mostly contend)")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    bad = [n for n in names if n not in BENCHES]
    if bad:
        ap.error(f"unknown benchmark(s) {bad}; valid: {', '.join(BENCHES)}")
    torch.set_num_threads(a.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    for n in names:
        t0 = time.perf_counter()
        print(f"== {n}", flush=True)
        mod = importlib.import_module(BENCHES[n])
        kw = {"threads": a.threads} if n in ("logprobs", "memory", "head_memory") else {}
        mod.run(quick=a.quick, **kw)
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
