"""lengthrl's losses and estimators called through real verl (0.9.1): `get_policy_loss_fn` / `get_adv_estimator_fn`.

verl is not installable beside the main pins (it pulls ray and pins transformers < 5.11), so this file runs in
its own environment with `make test-integrations` (see README, "Integrations"); `make test` leaves it out.
Checks, in float64: every registered loss equals `lengthrl.objectives.policy_loss` (value and gradient), also
with verl's global normalisers (dp_size 2); luspo equals verl's own GSPO summed per sequence
(seq-mean-token-sum), which is the same objective; lengthrl_dapo equals verl's `vanilla` PPO loss (dual clip 3);
the estimators equal verl's grpo / Dr.GRPO / rloo on shuffled uids.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl", reason="verl is an optional extra: run `make test-integrations`")
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.workers.config import ActorConfig  # noqa: E402

from lengthrl.errors import ConfigError  # noqa: E402
from lengthrl.integrations import verl as lv  # noqa: E402
from lengthrl.objectives import policy_loss  # noqa: E402

TOL = dict(rtol=1e-9, atol=1e-11)
SEQ_TOL = dict(rtol=1e-7, atol=1e-9)  # verl divides per-sequence sums by (|y_i| + 1e-8) in seq-mean-token-mean

NAMES = lv.register()


def batch(seed, B=8, T=9, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()  # [B, T]
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 4
    logp = old + spread * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    return logp, old, adv, mask


def actor(lo, hi, info=None):
    cfg = ActorConfig(strategy="fsdp", clip_ratio=lo, clip_ratio_low=lo, clip_ratio_high=hi, clip_ratio_c=3.0,
                      ppo_micro_batch_size_per_gpu=1, rollout_n=1)
    cfg.global_batch_info.update(info or {})
    return cfg


def call(name, logp, old, adv, mask, cfg, mode="token-mean"):
    x = logp.clone().requires_grad_(True)
    loss, metrics = core_algos.get_policy_loss_fn(name)(old_log_prob=old, log_prob=x,
                                                        advantages=adv[:, None] * mask, response_mask=mask,
                                                        loss_agg_mode=mode, config=cfg)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad, metrics


def ours(name, logp, old, adv, mask, **kw):
    x = logp.clone().requires_grad_(True)
    out = policy_loss(name, x, old, adv, mask, **kw)
    (grad,) = torch.autograd.grad(out.loss, x)
    return out.loss.detach(), grad


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("vname", sorted(lv.LOSS_NAMES))
def test_every_loss_through_verl_equals_policy_loss(vname, seed):
    name = lv.LOSS_NAMES[vname]
    spec = lv.LOSSES[name]
    lo, hi = spec.clip_low, spec.clip_high
    logp, old, adv, mask = batch(seed)
    for info, scale in ((None, 1.0), ({"dp_size": 2, "batch_num_tokens": 61.0, "global_batch_size": 13.0,
                                       "loss_scale_factor": 16}, 2.0)):
        got, g_got, metrics = call(vname, logp, old, adv, mask, actor(lo, hi, info))
        kw = {"max_len": (info or {}).get("loss_scale_factor", mask.shape[1])}
        if info:
            kw |= {"num_tokens": info["batch_num_tokens"], "num_seqs": info["global_batch_size"]}
        if "dual_clip" in spec.extra_hparams:
            kw["dual_clip"] = 3.0
        want, g_want = ours(name, logp, old, adv, mask, clip_low=lo, clip_high=hi, **kw)
        assert torch.allclose(got, want * scale, **TOL) and torch.allclose(g_got, g_want * scale, **TOL), vname
        assert set(metrics) >= {"actor/pg_clipfrac", "actor/ppo_kl"}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("info", [None, {"dp_size": 2, "global_batch_size": 13.0}])
def test_luspo_equals_verl_gspo_summed_per_sequence(seed, info):
    """LUSPO = GSPO with each sequence's term multiplied by its length = verl's GSPO-token with
    seq-mean-token-sum. verl lacks the name; this is the same objective through verl's own code."""
    logp, old, adv, mask = batch(seed, spread=0.002)  # ratios near the clip range 2e-3 / 2.5e-3
    a, ga, _ = call("luspo", logp, old, adv, mask, actor(2e-3, 2.5e-3, info))
    b, gb, _ = call("gspo", logp, old, adv, mask, actor(2e-3, 2.5e-3, info), mode="seq-mean-token-sum")
    assert torch.allclose(a, b, **TOL) and torch.allclose(ga, gb, **TOL)
    assert float(ga.abs().max()) > 0


@pytest.mark.parametrize("seed", range(3))
def test_dapo_equals_verl_vanilla(seed):
    logp, old, adv, mask = batch(seed)
    info = {"dp_size": 2, "batch_num_tokens": 70.0}
    a, ga, _ = call("lengthrl_dapo", logp, old, adv, mask, actor(0.2, 0.28, info))
    b, gb, _ = call("vanilla", logp, old, adv, mask, actor(0.2, 0.28, info), mode="token-mean")
    assert torch.allclose(a, b, **TOL) and torch.allclose(ga, gb, **TOL)


def test_gspo_equals_verl_gspo_seq_mean_token_mean():
    logp, old, adv, mask = batch(5, spread=0.001)
    a, ga, _ = call("lengthrl_gspo", logp, old, adv, mask, actor(3e-4, 4e-4))
    b, gb, _ = call("gspo", logp, old, adv, mask, actor(3e-4, 4e-4), mode="seq-mean-token-mean")
    assert torch.allclose(a, b, **SEQ_TOL) and torch.allclose(ga, gb, **SEQ_TOL)


def shuffled_groups(seed, P=5, G=4, T=6):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 3, (P * G,), generator=g).double()
    scores[:G] = 1.0  # one all-equal group
    uids = np.array([f"p{i // G}" for i in range(P * G)], dtype=object)
    perm = torch.randperm(P * G, generator=g)
    lengths = torch.randint(1, T + 1, (P * G,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).double()
    rewards = torch.zeros(P * G, T, dtype=torch.float64)
    rewards[torch.arange(P * G), lengths - 1] = scores  # outcome reward at the last token
    return rewards[perm], mask[perm], uids[perm.numpy()]


@pytest.mark.parametrize("seed", range(3))
def test_estimators_equal_verl(seed):
    rewards, mask, uids = shuffled_groups(seed)
    cases = [("lengthrl_grpo", lambda: core_algos.compute_grpo_outcome_advantage(rewards, mask, uids)),
             ("lengthrl_dr_grpo", lambda: core_algos.compute_grpo_outcome_advantage(
                 rewards, mask, uids, norm_adv_by_std_in_grpo=False)),
             ("lengthrl_rloo", lambda: core_algos.get_adv_estimator_fn("rloo")(rewards, mask, uids))]
    for vname, ref in cases:
        got, _ = core_algos.get_adv_estimator_fn(vname)(token_level_rewards=rewards, response_mask=mask, index=uids,
                                                         config=None)
        want, _ = ref()
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9), vname
    got, _ = core_algos.get_adv_estimator_fn("lengthrl_batch")(rewards, mask, uids)
    assert got.abs().sum() > 0


def test_registration_is_idempotent_and_errors_name_the_fix():
    assert lv.register() == NAMES and "luspo" in core_algos.POLICY_LOSS_REGISTRY
    logp, old, adv, mask = batch(0)
    with pytest.raises(ConfigError, match="rollout_correction"):
        core_algos.get_policy_loss_fn("luspo")(old, logp, adv[:, None] * mask, mask, "token-mean",
                                               actor(2e-3, 2.5e-3), torch.ones_like(mask))
    with pytest.raises(ConfigError, match="equal size"):
        core_algos.get_adv_estimator_fn("lengthrl_grpo")(torch.zeros(3, 2), torch.ones(3, 2),
                                                         np.array(["a", "a", "b"], dtype=object))


def test_drift_audit_live_equals_the_recorded_fixture():
    """`lengthrl audit --against verl` on the installed verl reproduces the table recorded in
    tests/fixtures/verl_drift.pt (which tests/test_drift.py checks where verl is absent)."""
    from pathlib import Path

    from lengthrl.analysis import drift

    live = drift.verl_rows()
    rec = drift.verl_rows(Path(__file__).parent / "fixtures" / "verl_drift.pt")
    assert live[0].framework == f"verl {verl.__version__}" == "verl 0.9.1"
    assert [(r.theirs, r.length, r.advantage, r.ok) for r in live] == \
        [(r.theirs, r.length, r.advantage, r.ok) for r in rec]
    for a, b in zip(live, rec):
        assert a.theirs_w == pytest.approx(b.theirs_w, rel=1e-12, abs=1e-15)
