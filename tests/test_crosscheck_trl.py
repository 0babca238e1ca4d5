"""Cross-check against TRL's GRPOTrainer loss (trl 1.16, a dev dependency) on random inputs.

TRL computes its loss inside `GRPOTrainer._compute_loss`; we call that very method on a minimal stand-in for
the trainer whose log-prob function returns our tensors, and compare loss and gradient with
`lengthrl.objectives.policy_loss`. Mapping (TRL loss_type, importance_sampling_level) -> ours:
grpo/token -> grpo, bnpo -> bnpo, dr_grpo -> dr_grpo (max_len = max_completion_length), dapo -> dapo
(num_items_in_batch = T_tot), cispo (weight clamped at epsilon_high, no lower clip) -> cispo with clip_low = 1,
clip_high = epsilon_high - 1, grpo/sequence (GSPO) -> gspo, luspo/sequence -> luspo, sapo/token -> sapo
(tau_pos / tau_neg = sapo_temperature_pos / _neg), vespo/token -> vespo (k, lambda = vespo_k_*, vespo_lambda_*);
beta > 0 -> our k3 KL.

Rollout correction: TRL computes `importance_sampling_ratio` in `_generate_and_score_completions` (which needs a
vLLM server), so `trl_is_ratio` below transcribes that block of TRL 1.16 line by line; `_compute_loss` itself then
applies it (multiplies the per-token loss, or folds it into VESPO's sequence weight), and is compared with our
`policy_loss(..., rollout_is=mode, rollout_logp=...)`.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl import GRPOTrainer

from lengthrl.analysis.drift import TRL_ARGS, TRL_LOSSES
from lengthrl.objectives import policy_loss

# (trl loss_type, IS level, eps_low, eps_high, ours, our kwargs): the pairs `lengthrl audit --against trl` runs.
# TRL builds SAPO's temperature tensor with torch.where on Python floats, i.e. in float32: 1.05 becomes
# 1.0499999523, a 1e-8 difference. TRL_ARGS uses temperatures exact in float32 (1.0, 1.25) on both sides.
CASES, SAPO_VESPO = TRL_LOSSES, TRL_ARGS
MAX_COMPLETION = 12


def fake_trainer(loss_type, level, eps_low, eps_high, beta, logp, use_vllm=False):
    acc = SimpleNamespace(num_processes=1, gather=lambda x: x, reduce=lambda x, reduction="sum": x,
                          gather_for_metrics=lambda x: x, sync_gradients=True)
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level, beta=beta,
        loss_type=loss_type, epsilon_low=eps_low, epsilon_high=eps_high,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1, **SAPO_VESPO),
        use_vllm=use_vllm, vllm_importance_sampling_correction=use_vllm, model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, max_completion_length=MAX_COMPLETION, accelerator=acc,
        get_gamma_weights=GRPOTrainer.get_gamma_weights,  # a staticmethod of TRL's, VESPO's kernel
        _entropy_bonus_enabled=False, aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)),
    )


def random_batch(seed, B=6, T=10, spread=0.4):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 4
    logp = old + spread * torch.randn(B, T, generator=g, dtype=torch.float64)
    ref = old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_loss_and_gradient_equal_trl(case, beta, seed):
    trl_type, level, lo, hi, ours, kw = case
    logp, old, ref, adv, mask = random_batch(seed)
    x_trl = logp.clone().requires_grad_(True)
    inputs = {
        "prompt_ids": torch.zeros(len(adv), 2, dtype=torch.long), "prompt_mask": torch.ones(len(adv), 2),
        "completion_ids": torch.zeros_like(mask), "completion_mask": mask, "advantages": adv,
        "old_per_token_logps": old, "ref_per_token_logps": ref, "num_items_in_batch": mask.sum().double(),
    }
    trainer = fake_trainer(trl_type, level, lo, hi, beta, x_trl)
    trl_loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    (g_trl,) = torch.autograd.grad(trl_loss, x_trl)

    x = logp.clone().requires_grad_(True)
    kw = {"clip_low": lo, "clip_high": hi} | kw
    if beta:
        kw |= {"beta": beta, "ref_logp": ref}
    out = policy_loss(ours, x, old, adv, mask.double(), max_len=MAX_COMPLETION, **kw)
    (g,) = torch.autograd.grad(out.loss, x)
    assert float(out.loss) == pytest.approx(float(trl_loss), rel=1e-9, abs=1e-12)
    assert torch.allclose(g, g_trl, rtol=1e-9, atol=1e-12)


def trl_is_ratio(old, sampling, mask, mode, clip_min, clip_max):
    """TRL 1.16 `GRPOTrainer._generate_and_score_completions`, the vLLM importance-sampling block, transcribed."""
    import math

    per_token_logps_diff = ((old - sampling) * mask).nan_to_num(nan=0.0)
    if mode in ["sequence_mask", "sequence_truncate"]:
        logps_diff = per_token_logps_diff.sum(dim=-1, keepdim=True)
    else:
        logps_diff = per_token_logps_diff
    ratio = torch.exp(logps_diff)
    if mode in ["sequence_truncate", "token_truncate"]:
        ratio = torch.clamp(ratio, min=clip_min, max=clip_max)
    else:
        min_val = clip_min if clip_min is not None else -math.inf
        max_val = clip_max if clip_max is not None else math.inf
        ratio = ratio.masked_fill((ratio < min_val) | (ratio > max_val), value=0.0)
    return ratio


IS_CASES = [(m, lo, hi) for m in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
            for lo, hi in ((None, 2.0), (0.5, 1.5))]


# TRL 1.16 refuses VESPO with sequence-level IS (ours raises the same, tested in test_objectives.py)
IS_PAIRS = [(c, m) for c in CASES if c[0] in ("grpo", "dapo", "sapo", "vespo", "luspo") for m in IS_CASES
            if not (c[0] == "vespo" and m[0].startswith("sequence"))]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("case,is_case", IS_PAIRS, ids=[f"{c[0]}-{c[1]}-{m[0]}-{m[1]}-{m[2]}" for c, m in IS_PAIRS])
def test_rollout_correction_equals_trl(case, is_case, seed):
    trl_type, level, lo, hi, ours, kw = case
    mode, c_min, c_max = is_case
    logp, old, ref, adv, mask = random_batch(seed)
    g = torch.Generator().manual_seed(100 + seed)
    # the sampler's log-probs: a token-level mismatch of about 0.5 nats, so some weights leave [C_min, C_max]
    sampling = old + 0.5 * torch.randn(old.shape, generator=g, dtype=torch.float64)
    x_trl = logp.clone().requires_grad_(True)
    inputs = {
        "prompt_ids": torch.zeros(len(adv), 2, dtype=torch.long), "prompt_mask": torch.ones(len(adv), 2),
        "completion_ids": torch.zeros_like(mask), "completion_mask": mask, "advantages": adv,
        "old_per_token_logps": old, "ref_per_token_logps": ref, "num_items_in_batch": mask.sum().double(),
        "importance_sampling_ratio": trl_is_ratio(old, sampling, mask, mode, c_min, c_max),
    }
    trl_loss = GRPOTrainer._compute_loss(fake_trainer(trl_type, level, lo, hi, 0.0, x_trl, use_vllm=True), None,
                                         inputs)
    (g_trl,) = torch.autograd.grad(trl_loss, x_trl)
    x = logp.clone().requires_grad_(True)
    out = policy_loss(ours, x, old, adv, mask.double(), max_len=MAX_COMPLETION, rollout_is=mode,
                      rollout_logp=sampling, rollout_is_min=c_min, rollout_is_max=c_max,
                      **({"clip_low": lo, "clip_high": hi} | kw))
    (g,) = torch.autograd.grad(out.loss, x)
    assert float(out.loss) == pytest.approx(float(trl_loss), rel=1e-9, abs=1e-12)
    assert torch.allclose(g, g_trl, rtol=1e-9, atol=1e-12)
    assert float(out.metrics["rollout_is_changed_frac"]) > 0  # the bounds did act on this batch
