"""A synthetic run directory, for trying `lengthrl report` / `lengthrl compare` without training and for tests.

Responses are drawn from a simple model: at step t the log-length of a response is normal around
log(len0) + t * log(len_growth) / steps, and the chance a response is correct rises with length up to a point
(p = acc0 + acc_gain * t / steps, times a length factor). Per-step metrics are aggregated from the sampled
rows exactly as the trainer defines them (docs/metrics.md), and advantages are group z-scores of the
0/1 reward (GRPO, arXiv 2402.03300).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lengthrl.eval.metrics import summarize
from lengthrl.eval.records import EvalRecord, EvalResult, save_eval


def _draw(rng: np.random.Generator, t: float, n: int, len0: float, len_growth: float, acc0: float,
          acc_gain: float, max_len: int):
    """n (length [n], correct [n], truncated [n]) at training progress t in [0, 1]."""
    mu = np.log(len0) + t * np.log(len_growth)
    L = np.exp(rng.normal(mu, 0.35, n)).astype(int) + 1
    trunc = L >= max_len
    L = np.minimum(L, max_len)
    p = np.clip(acc0 + acc_gain * t, 0, 1) * np.clip(L / len0, 0.3, 1.2) / 1.2
    ok = (rng.random(n) < p) & ~trunc
    return L, ok, trunc


def write_synthetic_run(path: str | Path, steps: int = 30, prompts: int = 8, group: int = 4, len0: float = 120,
                        len_growth: float = 1.5, acc0: float = 0.3, acc_gain: float = 0.2, entropy_decay: float = 0.3,
                        eval_prompts: int = 40, eval_samples: int = 4, max_len: int = 512, seed: int = 0,
                        name: str | None = None) -> Path:
    """Write config.json, metrics.jsonl, samples.jsonl and eval.json of a fake run under `path`.

    len_growth: factor by which the typical length changes over the run (< 1: length collapse).
    entropy_decay: fraction of the entropy lost by the end of the run."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"name": name or path.name, "synthetic": True, "steps": steps,
                                                  "group_size": group, "max_new_tokens": max_len}))
    with (path / "metrics.jsonl").open("w") as fm, (path / "samples.jsonl").open("w") as fs:
        for step in range(steps):
            t = step / max(1, steps - 1)
            L, ok, trunc = _draw(rng, t, prompts * group, len0, len_growth, acc0, acc_gain, max_len)
            R = ok.astype(float).reshape(prompts, group)  # [P, G]
            A = ((R - R.mean(1, keepdims=True)) / (R.std(1, keepdims=True) + 1e-4)).ravel()  # [P*G]
            for i in range(prompts * group):
                fs.write(json.dumps({"step": step, "prompt_id": f"q{i // group}", "prompt": f"question {i // group}?",
                                     "response": "think " * min(int(L[i]), 40) + ("42" if ok[i] else "41"),
                                     "length": int(L[i]), "correct": bool(ok[i]), "reward": float(ok[i]),
                                     "advantage": float(A[i])}) + "\n")
            Lg = L.reshape(prompts, group)
            row = {"step": step, "time_s": 0.5 * step, "reward/mean": float(ok.mean()), "reward/acc": float(ok.mean()),
                   "acc": float(ok.mean()), "len/mean": float(L.mean()), "len/median": float(np.median(L)),
                   "len/p90": float(np.percentile(L, 90)), "len/max": float(L.max()), "len/min": float(L.min()),
                   "len/correct_mean": float(L[ok].mean()) if ok.any() else None,
                   "len/wrong_mean": float(L[~ok].mean()) if (~ok).any() else None,
                   "len/group_std_mean": float(Lg.std(1).mean()), "trunc_rate": float(trunc.mean()),
                   "zero_var_groups": float((R.std(1) == 0).mean()),
                   "entropy": float(2.0 * (1 - entropy_decay * t) + rng.normal(0, 0.02)),
                   "adv_len_corr": float(np.corrcoef(L, A)[0, 1]) if A.std() > 0 and L.std() > 0 else None}
            fm.write(json.dumps(row) + "\n")
    L, ok, trunc = _draw(rng, 1.0, eval_prompts * eval_samples, len0, len_growth, acc0, acc_gain, max_len)
    recs = [EvalRecord(prompt_id=f"e{i // eval_samples}", sample_idx=i % eval_samples, length=int(L[i]),
                       correct=bool(ok[i]), truncated=bool(trunc[i]), response=f"answer {i}") for i in range(len(L))]
    ks = [k for k in (1, 2, 4, 8, 16) if k <= eval_samples]
    save_eval(EvalResult(model=str(path), task="synthetic", n_samples=eval_samples,
                         metrics=summarize(recs, ks), records=recs, extra={"ks": ks}), path / "eval.json")
    return path
