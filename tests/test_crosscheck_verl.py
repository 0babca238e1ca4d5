"""Cross-check against verl's core_algos on recorded random inputs (tests/fixtures/record_verl.py).

Mapping: verl `vanilla` (dual-clip c = 3, any loss_agg_mode) = our PPO-clip loss with dual_clip=3;
verl `gspo` = our gspo_token (and gspo); verl `cispo` with clip 1.0 / 4.0 = our cispo defaults;
verl `agg_loss` = our `agg_loss`; verl grpo / rloo advantages = ours. verl's reinforce_plus_plus_baseline
whitens over tokens with a Bessel correction over tokens; ours whitens over sequences, so on equal-length
responses verl = ours / sqrt(T(N-1)/(NT-1)) (documented in docs/objectives.md).
"""

import math
from pathlib import Path

import pytest
import torch

from lengthrl.advantages import compute_advantages
from lengthrl.objectives import agg_loss, policy_loss

FIX = torch.load(Path(__file__).parent / "fixtures" / "verl_outputs.pt", weights_only=False)
CASES = FIX["cases"]
TOL = dict(rtol=1e-10, atol=1e-12)  # float64 on both sides
# seq-mean-token-mean: verl divides each sequence's sum by (|y_i| + 1e-8), a relative difference <= 1e-8
TOL_SEQ_MEAN = dict(rtol=1e-7, atol=1e-7)


def ids(c):
    return f"{c['kind']}-{c.get('verl_name', '')}-{c.get('mode', '')}"


@pytest.mark.parametrize("case", [c for c in CASES if c["kind"] == "policy"], ids=ids)
def test_policy_losses_match_verl(case):
    ours = {"vanilla": ["dapo"], "gspo": ["gspo_token", "gspo"], "cispo": ["cispo"]}[case["verl_name"]]
    kw = {"dual_clip": 3.0} if case["verl_name"] == "vanilla" else {}
    for name in ours:
        x = case["logp"].clone().requires_grad_(True)
        out = policy_loss(name, x, case["old"], case["adv"], case["mask"], clip_low=case["clip_low"],
                          clip_high=case["clip_high"], loss_agg_mode=case["mode"], **kw)
        (g,) = torch.autograd.grad(out.loss, x)
        tol = TOL_SEQ_MEAN if case["mode"] == "seq-mean-token-mean" else TOL
        assert torch.allclose(out.loss.detach(), case["loss"], **tol), (name, float(out.loss), float(case["loss"]))
        assert torch.allclose(g, case["grad"], **tol), name


@pytest.mark.parametrize("case", [c for c in CASES if c["kind"] == "agg"], ids=ids)
def test_agg_loss_matches_verl(case):
    tol = TOL_SEQ_MEAN if case["mode"] == "seq-mean-token-mean" else TOL
    assert torch.allclose(agg_loss(case["mat"], case["mask"], case["mode"], max_len=case["max_len"]), case["out"],
                          **tol)


@pytest.mark.parametrize("case", [c for c in CASES if c["kind"] == "adv"], ids=ids)
def test_advantages_match_verl(case):
    r, G = case["rewards"], case["group_size"]
    if case["verl_name"] == "grpo":
        assert torch.allclose(compute_advantages("grpo", r, G, eps=1e-6), case["adv"], rtol=1e-9, atol=1e-9)
    elif case["verl_name"] == "rloo":
        assert torch.allclose(compute_advantages("rloo", r, G), case["adv"], rtol=1e-9, atol=1e-9)
    else:
        N, T = r.numel(), 5
        ours = compute_advantages("batch", r, G, eps=0.0)
        factor = math.sqrt(T * (N - 1) / (N * T - 1))
        assert torch.allclose(ours / factor, case["adv"], rtol=1e-6, atol=1e-7)


def test_fixture_covers_every_case_kind():
    kinds = {(c["kind"], c.get("verl_name"), c.get("mode")) for c in CASES}
    assert len(kinds) >= 14 and FIX["verl_version"] == "0.9.1"
