"""`RunLogger`: every file a run writes about its steps, in one place. Only rank 0 writes (`enabled`).

    OUT/metrics.jsonl       one row of metrics per step (docs/metrics.md)
    OUT/samples.jsonl       every `sample_every` steps, a few responses per group with reward and advantage
    OUT/score_errors.jsonl  every verifier call that raised or overran its deadline
    OUT/tensorboard/        every numeric metric as a scalar, when the tensorboard package is installed

A fresh run starts these files empty; a resumed run drops their lines after the checkpoint's step.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lengthrl.train.metrics import MetricsLog, truncate_jsonl

STEP_LOGS = ("samples.jsonl", "score_errors.jsonl")


class RunLogger:
    def __init__(self, out: Path, enabled: bool = True, sample_every: int = 0):
        self.out, self.enabled, self.sample_every = Path(out), enabled, sample_every
        self.metrics = MetricsLog(self.out / "metrics.jsonl")
        self.tb = None

    def fresh(self) -> None:
        """A new run: remove the logs of an earlier run in the same directory."""
        if self.enabled:
            for f in ("metrics.jsonl", *STEP_LOGS):
                (self.out / f).unlink(missing_ok=True)

    def resume(self, step: int) -> None:
        """A resumed run: keep the lines of steps <= `step` (the checkpoint's)."""
        if self.enabled:
            self.metrics.truncate_after(step)
            for f in STEP_LOGS:
                truncate_jsonl(self.out / f, step)

    def open_tensorboard(self, step: int) -> None:
        """A TensorBoard writer on OUT/tensorboard when the tensorboard package is installed (events after
        `step` purged on resume)."""
        if not self.enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.tb = SummaryWriter(log_dir=str(self.out / "tensorboard"), purge_step=step + 1 if step else None)

    def score_errors(self, step: int, failures: list[dict]) -> None:
        """Append the step's verifier failures ({index, prompt_id, kind, error, response})."""
        if self.enabled and failures:
            with open(self.out / "score_errors.jsonl", "a") as f:
                for fail in failures:
                    f.write(json.dumps({"step": step, **fail}) + "\n")

    def samples(self, step: int, samples: list, texts: list[str], lengths: torch.Tensor, correct: torch.Tensor,
                rewards: torch.Tensor, advantages: torch.Tensor, group_size: int) -> None:
        """Every `sample_every` steps, responses 0, G/2, ... of the whole batch: samples [P] prompts; texts,
        lengths, correct, rewards, advantages: [N = P·G]."""
        if not (self.enabled and self.sample_every and step % self.sample_every == 0):
            return
        G = group_size
        with open(self.out / "samples.jsonl", "a") as f:
            for i in range(0, len(texts), max(1, G // 2)):
                f.write(json.dumps({
                    "step": step, "prompt_id": samples[i // G].id, "prompt": samples[i // G].prompt,
                    "response": texts[i], "length": int(lengths[i]), "correct": bool(correct[i]),
                    "reward": float(rewards[i]), "advantage": float(advantages[i]),
                }) + "\n")

    def step_metrics(self, step: int, m: dict) -> None:
        """One row of metrics.jsonl, and the numeric metrics to TensorBoard under the same names."""
        if not self.enabled:
            return
        self.metrics.write(m)
        if self.tb is not None:
            for k, v in m.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step":
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()
