"""Cross-check against TRL's GRPOTrainer loss (trl 1.16, a dev dependency) on random inputs.

TRL computes its loss inside `GRPOTrainer._compute_loss`; we call that very method on a minimal stand-in for
the trainer whose log-prob function returns our tensors, and compare loss and gradient with
`lengthrl.objectives.policy_loss`. Mapping (TRL loss_type, importance_sampling_level) -> ours:
grpo/token -> grpo, bnpo -> bnpo, dr_grpo -> dr_grpo (max_len = max_completion_length), dapo -> dapo
(num_items_in_batch = T_tot), cispo (weight clamped at epsilon_high, no lower clip) -> cispo with clip_low = 1,
clip_high = epsilon_high - 1, grpo/sequence (GSPO) -> gspo, luspo/sequence -> luspo; beta > 0 -> our k3 KL.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl import GRPOTrainer

from lengthrl.objectives import policy_loss

CASES = [
    # (trl loss_type, IS level, eps_low, eps_high, ours, our kwargs)
    ("grpo", "token", 0.2, 0.2, "grpo", {}),
    ("bnpo", "token", 0.2, 0.28, "bnpo", {"clip_high": 0.28}),
    ("dr_grpo", "token", 0.2, 0.2, "dr_grpo", {}),
    ("dapo", "token", 0.2, 0.28, "dapo", {}),
    ("cispo", "token", 0.2, 5.0, "cispo", {"clip_low": 1.0, "clip_high": 4.0}),
    ("grpo", "sequence", 3e-4, 4e-4, "gspo", {}),
    ("luspo", "sequence", 2e-3, 2.5e-3, "luspo", {}),
]
MAX_COMPLETION = 12


def fake_trainer(loss_type, level, eps_low, eps_high, beta, logp):
    acc = SimpleNamespace(num_processes=1, gather=lambda x: x, reduce=lambda x, reduction="sum": x,
                          gather_for_metrics=lambda x: x, sync_gradients=True)
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level, beta=beta,
        loss_type=loss_type, epsilon_low=eps_low, epsilon_high=eps_high,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        use_vllm=False, vllm_importance_sampling_correction=False, model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, max_completion_length=MAX_COMPLETION, accelerator=acc,
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
