"""Per-step metrics of a rollout batch (names as in docs/metrics.md) and the run's metrics.jsonl."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from lengthrl.errors import DataError


def _q(x: torch.Tensor, q: float) -> float:
    return float(torch.quantile(x.float(), q)) if x.numel() else float("nan")


def rollout_metrics(lengths: torch.Tensor, correct: torch.Tensor, truncated: torch.Tensor, rewards: torch.Tensor,
                    terms: dict[str, torch.Tensor], advantages: torch.Tensor, group_size: int) -> dict[str, float]:
    """Length (in tokens, EOS included), accuracy and reward statistics of one step's responses [N]."""
    L = lengths.float()
    c = correct.bool()
    m = {
        "reward/mean": float(rewards.float().mean()),
        "acc": float(c.float().mean()),
        "len/mean": float(L.mean()), "len/median": _q(L, 0.5), "len/p90": _q(L, 0.9),
        "len/max": float(L.max()), "len/min": float(L.min()),
        "len/correct_mean": float(L[c].mean()) if c.any() else None,
        "len/wrong_mean": float(L[~c].mean()) if (~c).any() else None,
        "len/group_std_mean": float(L.view(-1, group_size).std(-1, unbiased=False).mean()),
        "trunc_rate": float(truncated.float().mean()),
    }
    for k, v in terms.items():
        m[f"reward/{k}"] = float(v.float().mean())
    R = rewards.view(-1, group_size)
    m["zero_var_groups"] = float((R.max(-1).values == R.min(-1).values).float().mean())
    a = advantages.float()
    if a.std() > 0 and L.std() > 0:
        m["adv_len_corr"] = float(torch.corrcoef(torch.stack([a, L]))[0, 1])
    else:
        m["adv_len_corr"] = 0.0
    return m


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep the lines of a run's JSONL log (metrics, samples, scoring failures) whose "step" is <= `step`.
    A last line torn by a kill (not valid JSON) is dropped; a torn line anywhere else is a real corruption
    and raises DataError naming the file and line."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    keep = []
    for i, ln in enumerate(lines):
        try:
            row = json.loads(ln)
        except ValueError:
            if i == len(lines) - 1:
                break  # written when the process was killed
            raise DataError(f"{path}: line {i + 1} is not valid JSON; the log is corrupt (restore or delete it)") from None
        if row["step"] <= step:
            keep.append(ln)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


class MetricsLog:
    """Append-only metrics.jsonl; on resume, lines after the checkpoint's step are dropped."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, step: int) -> None:
        truncate_jsonl(self.path, step)

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]
