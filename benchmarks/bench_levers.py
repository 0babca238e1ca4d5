"""Levers of the RL step, each timed against the same code without it, in one process, interleaved round by round.

`micro_batch_tokens` (the padding-free update): the rows of a mini-batch sorted by length and packed under a
token budget, each micro-batch padded only to its own longest row, against the default (the whole mini-batch in
one micro-batch, padded to its longest row). Two measurements:

- update only, at the organism shape (T = 48) and the ~30M Llama shape (T = 256), 4 prompts x 8 responses of
  arith_chain prompts, response lengths drawn uniformly from [T/2, T] (a quarter of the positions padding, as
  the profile of a real run found, docs/performance.md), the trainer's forward (shared-prefix scoring), GRPO
  loss, AdamW; budgets as fractions of the batch's padded tokens. The same rounds time `model_forward`: the
  update through the transformers forward (no shared-prefix scoring), the shared-prefix lever's baseline. Beside each time, the update's achieved
  FLOP/s over real tokens against torch's matmul FLOP/s for the model's GEMM shapes (`bench_step`).
- the full RL step at the organism shape with natural lengths (EOS sampled), the two trainers alternating step
  by step from the same seed.

Each figure: median with min-max over the timed rounds, after one warm-up round, and the 1-minute load average
at the time (the machine may be shared). `BENCH_LEVER_SHAPES=organism,llama30m` picks the shapes.
"""

from __future__ import annotations

import os
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks.bench_step import SHAPES, _summary, _tokenizer, lengthrl_trainer, matmul_rate, update_flops
from benchmarks.common import RESULTS, write
from lengthrl.models import load_policy, save_tiny_random_model
from lengthrl.rollout import compute_logprobs
from lengthrl.train.validate import build_config
from lengthrl.train.update import UpdateBatch, make_optimizer, ppo_update


def _load() -> float:
    return os.getloadavg()[0]


def update_batch(tok, prompts: int, G: int, T: int, seed: int = 0) -> UpdateBatch:
    """arith_chain prompts (left-padded), G rows each, responses of lengths uniform in [T/2, T] (right-padded)."""
    from lengthrl.tasks import get_task

    g = torch.Generator().manual_seed(seed)
    samples = get_task("arith_chain").samples("train", prompts, seed=0)
    enc = [tok(s.prompt)["input_ids"] for s in samples]
    P, B = max(map(len, enc)), prompts * G
    pids = torch.full((B, P), tok.pad_token_id, dtype=torch.long)
    pmask = torch.zeros(B, P, dtype=torch.long)
    for i, ids in enumerate(enc):
        pids[i * G:(i + 1) * G, P - len(ids):] = torch.tensor(ids)
        pmask[i * G:(i + 1) * G, P - len(ids):] = 1
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    T_b = int(lengths.max())
    rmask = (torch.arange(T_b)[None] < lengths[:, None]).long()
    rids = torch.randint(3, len(tok), (B, T_b), generator=g) * rmask
    return UpdateBatch(pids, pmask, rids, rmask, rmask.float(), torch.randn(B, generator=g),
                       torch.arange(B) // G)


def bench_update(shape: str, tmp: Path, rounds: int, fractions: tuple[int, ...]) -> dict:
    c = SHAPES[shape]
    tok = _tokenizer(c["vocab"])
    mdir = save_tiny_random_model(tmp / f"model_{shape}", arch="llama", seed=0, tokenizer=tok, **c["spec"])
    model, _ = load_policy(mdir)
    batch = update_batch(tok, c["prompts"], c["G"], c["T"])
    B, P, T_b = batch.response_ids.shape[0], batch.prompt_ids.shape[1], batch.response_ids.shape[1]
    padded = B * (P + T_b)
    real = int(batch.prompt_mask.sum() + batch.response_mask.sum())
    fn = partial(compute_logprobs, shared_prefix=True)  # the trainer's forward with the default engine
    base = dict(model=str(mdir), task="arith_chain", prompts_per_step=c["prompts"], group_size=c["G"],
                max_new_tokens=c["T"], loss="grpo", lr=1e-4, threads=torch.get_num_threads())
    variants = {"off": build_config(extra=base)}
    for f in fractions:
        variants[f"tokens={padded // f}"] = build_config(extra=base | dict(micro_batch_tokens=padded // f))
    fns = {k: fn for k in variants}
    variants["model_forward"] = variants["off"]  # the shared-prefix lever: the transformers forward instead
    fns["model_forward"] = partial(compute_logprobs, shared_prefix=False)
    opts = {k: make_optimizer(model, cfg, 10 ** 6) for k, cfg in variants.items()}
    times: dict[str, list[float]] = {k: [] for k in variants}
    loads: list[float] = []
    for r in range(rounds + 1):  # round 0: warm-up
        loads.append(_load())
        for k, cfg in variants.items():
            opt, sched = opts[k]
            t0 = time.perf_counter()
            ppo_update(model, opt, sched, batch, cfg, torch.Generator().manual_seed(r), logprob_fn=fns[k])
            if r:
                times[k].append(time.perf_counter() - t0)
        if r:  # progress: one round can take minutes at the 30M shape
            print(f"    [{shape} update] round {r}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                  flush=True)
    seq_lens = (batch.prompt_mask.sum(-1) + batch.response_mask.sum(-1)).tolist()
    flops = update_flops(model.config, seq_lens)
    rate = matmul_rate(model.config, tokens=min(real, 4096))
    out = {"rows": B, "padded_tokens": padded, "real_tokens": real, "matmul_flops_per_s": rate,
           "load_avg_1m": {"min": min(loads), "max": max(loads)}, "variants": {}}
    t_off = times["off"]
    for k, ts in times.items():
        s = _summary(ts)
        paired = _summary([a / b for a, b in zip(t_off, ts)])  # the same round's ratio: robust to load drift
        out["variants"][k] = {"update_s": s, "x_off": paired, "flops_per_s": flops / s["median"],
                              "frac_of_matmul": flops / s["median"] / rate}
        print(f"  [{shape} update, {B} rows, {real}/{padded} real/padded tokens] {k:14s} "
              f"{s['median']:.3f} s ({s['min']:.3f}-{s['max']:.3f}), {paired['median']:.2f}x off "
              f"({paired['min']:.2f}-{paired['max']:.2f}), {flops / s['median'] / 1e9:.1f} GFLOP/s = "
              f"{flops / s['median'] / rate:.0%} of matmul ({rate / 1e9:.1f}); load {min(loads):.1f}-{max(loads):.1f}",
              flush=True)
    return out


def bench_step(tmp: Path, rounds: int, budget: int) -> dict:
    """Full RL steps at the organism shape, natural lengths: off vs micro_batch_tokens=budget, alternating."""
    c = SHAPES["organism"]
    tok = _tokenizer(c["vocab"])
    mdir = save_tiny_random_model(tmp / "model_step", arch="llama", seed=0, tokenizer=tok, **c["spec"])
    trs = {}
    for k, mbt in (("off", 0), (f"tokens={budget}", budget)):
        trs[k] = lengthrl_trainer(mdir, tmp / f"step_{k}", c["prompts"], c["G"], c["T"], "fast", rounds + 1,
                                  micro_batch_tokens=mbt)
    rec = {k: {"s": [], "tokens": []} for k in trs}
    loads = []
    for r in range(rounds + 1):
        loads.append(_load())
        for k, tr in trs.items():
            t0 = time.perf_counter()
            m = tr.train_step()
            dt = time.perf_counter() - t0
            tr.step += 1
            if r:
                rec[k]["s"].append(dt)
                rec[k]["tokens"].append(m["len/mean"] * c["prompts"] * c["G"])
    out = {"load_avg_1m": {"min": min(loads), "max": max(loads)}, "variants": {}}
    off = rec["off"]
    for k, v in rec.items():
        tps = [t / s for t, s in zip(v["tokens"], v["s"])]
        paired = _summary([a / b for a, b in zip(tps, [t / s for t, s in zip(off["tokens"], off["s"])])])
        out["variants"][k] = {"s_per_step": _summary(v["s"]), "tokens_per_s": _summary(tps), "x_off_tokens_per_s": paired,
                              "mean_len": sum(v["tokens"]) / len(v["tokens"]) / (c["prompts"] * c["G"])}
        s = out["variants"][k]
        print(f"  [organism full step, natural] {k:12s} {s['tokens_per_s']['median']:.0f} tok/s "
              f"({s['tokens_per_s']['min']:.0f}-{s['tokens_per_s']['max']:.0f}), {s['s_per_step']['median']:.2f} s/step, "
              f"mean len {s['mean_len']:.1f}, {paired['median']:.2f}x off ({paired['min']:.2f}-{paired['max']:.2f}); "
              f"load {min(loads):.1f}-{max(loads):.1f}", flush=True)
    return out


def run(quick: bool = False) -> dict:
    shapes = (os.environ.get("BENCH_LEVER_SHAPES") or ("organism" if quick else "organism,llama30m")).split(",")
    tmp = Path(tempfile.mkdtemp(prefix="lengthrl-bench-levers-"))
    res: dict = {"micro_batch_tokens": {"update": {}}}
    for shape in shapes:
        rounds = 1 if quick else (7 if shape == "organism" else 3)
        fractions = (2,) if quick else ((2, 4, 8) if shape == "organism" else (2, 4))
        res["micro_batch_tokens"]["update"][shape] = bench_update(shape, tmp, rounds, fractions)
    if "organism" in shapes:
        org = res["micro_batch_tokens"]["update"]["organism"]
        best = max((k for k in org["variants"] if k.startswith("tokens=")), key=lambda k: org["variants"][k]["x_off"]["median"])
        res["micro_batch_tokens"]["step"] = bench_step(tmp, 1 if quick else 7, int(best.split("=")[1]))
    old = RESULTS / "levers.json"
    if not quick and old.is_file():  # a run of some shapes keeps the other shapes' last results
        import json

        prev = json.loads(old.read_text())
        kept = {k: {"machine": prev.get("machine")} | v
                for k, v in prev.get("micro_batch_tokens", {}).get("update", {}).items() if k not in shapes}
        res["micro_batch_tokens"]["update"] = kept | res["micro_batch_tokens"]["update"]
        if "step" not in res["micro_batch_tokens"] and "step" in prev.get("micro_batch_tokens", {}):
            res["micro_batch_tokens"]["step"] = {"machine": prev.get("machine")} | prev["micro_batch_tokens"]["step"]
    write("levers_quick" if quick else "levers", res)  # a smoke run never replaces the results
    return res
