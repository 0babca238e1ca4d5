"""JustGRPO (arXiv 2601.15165): plain GRPO on a masked diffusion LM read as an AR policy.

Per step: G AR-order rollouts per prompt (temperature 1, block length 1), reward +1 for a correct answer and -1
otherwise, group z-score advantages A_i = (R_i - mean_g R) / (std_g R + eps) with eps = 1e-4, exact AR-order
log-probs, and one policy update per batch so the importance ratio is 1 (the GRPO loss then reduces to
REINFORCE with group z-scores, each token weighted 1 / (B |y_i|)). The loss and advantages come from the
project's registries: ``lengthrl.objectives.policy_loss("grpo", ...)`` and
``lengthrl.advantages.compute_advantages("grpo", ...)``.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

import torch

from lengthrl.dllm.pretrain import encode_prompts
from lengthrl.dllm.rollout import DiffusionPolicy, DiffusionRolloutBatch
from lengthrl.errors import ConfigError
from lengthrl.tasks.base import Sample, Task


@dataclass
class JustGRPOConfig:
    """Hyperparameters (paper values in comments; the defaults are sized for the CPU organism)."""

    steps: int = 20  # paper: 125
    prompts_per_step: int = 8  # paper: 64
    group_size: int = 8  # paper: 16
    lr: float = 1e-4  # paper: 5e-6 on LLaDA-8B
    eps: float = 1e-4  # z-score eps (paper)
    temperature: float = 1.0
    top_p: float = 1.0
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "group_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"JustGRPOConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ConfigError("JustGRPOConfig.group_size must be >= 2 (group z-scores need two responses)")
        if not self.lr > 0:
            raise ConfigError(f"JustGRPOConfig.lr must be > 0, got {self.lr}")


def decode_responses(tokenizer, batch: DiffusionRolloutBatch) -> list[str]:
    """Response texts without EOS and padding."""
    out = []
    for ids, n, trunc in zip(batch.response_ids.tolist(), batch.lengths.tolist(), batch.truncated.tolist()):
        out.append(tokenizer.decode(ids[: n if trunc else n - 1], skip_special_tokens=True))
    return out


def plus_minus_rewards(task: Task, samples: list[Sample], batch: DiffusionRolloutBatch, texts: list[str]):
    """(rewards [B] = +1 correct / -1 wrong, correct [B] bool) for the responses of `batch`."""
    correct = torch.tensor([task.score(samples[g], t).correct for g, t in zip(batch.group_index.tolist(), texts)])
    return correct.float() * 2 - 1, correct


def justgrpo_step(policy: DiffusionPolicy, optimizer: torch.optim.Optimizer, tokenizer, task: Task,
                  samples: list[Sample], cfg: JustGRPOConfig, generator: torch.Generator | None = None) -> dict:
    """One JustGRPO update on `samples` (the step's prompts); returns the step's metrics."""
    objectives = importlib.import_module("lengthrl.objectives")
    advantages = importlib.import_module("lengthrl.advantages")
    if not (hasattr(objectives, "policy_loss") and hasattr(advantages, "compute_advantages")):
        raise ConfigError("JustGRPO needs lengthrl.objectives.policy_loss and lengthrl.advantages."
                          "compute_advantages; use a lengthrl build that includes both")
    t0 = time.perf_counter()
    pids, pmask = encode_prompts(tokenizer, [s.prompt for s in samples])
    batch = policy.generate(pids, pmask, n=cfg.group_size, temperature=cfg.temperature, top_p=cfg.top_p,
                            generator=generator)
    t_gen = time.perf_counter() - t0
    rewards, correct = plus_minus_rewards(task, samples, batch, decode_responses(tokenizer, batch))
    adv = advantages.compute_advantages("grpo", rewards, cfg.group_size, eps=cfg.eps)  # [B]
    policy.model.train()
    logp = policy.logprobs(batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask)  # [B, T]
    mask = batch.response_mask.float()
    out = objectives.policy_loss("grpo", logp, logp.detach(), adv, mask)  # one update per batch: ratio 1
    optimizer.zero_grad()
    out.loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
    optimizer.step()
    policy.model.eval()
    return {
        "loss": out.loss.item(), "grad_norm": float(grad_norm), "reward": rewards.mean().item(),
        "accuracy": correct.float().mean().item(), "mean_length": batch.lengths.float().mean().item(),
        "rollout_logp_gap": (logp.detach() - batch.logp).abs().max().item(),
        "seconds": time.perf_counter() - t0, "seconds_generate": t_gen,
    }


def justgrpo_train(policy: DiffusionPolicy, tokenizer, task: Task, cfg: JustGRPOConfig, log=None) -> list[dict]:
    """`cfg.steps` JustGRPO steps on `task`'s train split (AdamW, constant lr); returns per-step metrics."""
    pool = task.samples("train", seed=cfg.seed)
    if not pool:
        raise ConfigError(f"task {task.name!r} has no train samples")
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    history = []
    for step in range(cfg.steps):
        idx = torch.randint(len(pool), (cfg.prompts_per_step,), generator=g).tolist()
        m = justgrpo_step(policy, opt, tokenizer, task, [pool[i] for i in idx], cfg, generator=g)
        m["step"] = step + 1
        history.append(m)
        if log:
            log(f"justgrpo step {step + 1}/{cfg.steps} reward {m['reward']:+.3f} acc {m['accuracy']:.3f} "
                f"len {m['mean_length']:.2f} loss {m['loss']:+.4f}")
    return history
