"""Hand-computed values and edge cases for every registered policy loss."""

import math

import pytest
import torch

from lengthrl.errors import ConfigError, UnknownNameError
from lengthrl.objectives import AGG_MODES, LOSSES, agg_loss, policy_loss

D = torch.float64
# Two responses: |y_0| = 2 (third position is padding), |y_1| = 3.
MASK = torch.tensor([[1.0, 1, 0], [1, 1, 1]], dtype=D)
RATIOS = [[1.5, 0.5, 1.0], [1.1, 1.3, 0.7]]
LOGP = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -1.0, -1.5]], dtype=D)
OLD = LOGP - torch.log(torch.tensor(RATIOS, dtype=D))
ADV = torch.tensor([1.0, -2.0], dtype=D)


def SIG(x):
    return 1 / (1 + math.exp(-x))


def loss_of(name, device="cpu", **kw):
    on = lambda t: t.to(device)  # noqa: E731
    return float(policy_loss(name, on(LOGP).clone().requires_grad_(), on(OLD), on(ADV), on(MASK), **kw).loss.detach())


# Per-token PPO terms by hand (A_0 = 1, A_1 = -2), clip 0.2/0.2:
#   row 0: r=1.5 -> min(1.5, 1.2) = 1.2 ; r=0.5 -> min(0.5, 0.8) = 0.5        losses -1.2, -0.5
#   row 1: r=1.1 -> -2.2 ; r=1.3 -> min(-2.6, -2.4) = -2.6 ; r=0.7 -> min(-1.4, -1.6) = -1.6   losses 2.2, 2.6, 1.6
# With clip_high 0.28 (dapo): row 0 r=1.5 -> 1.28; row 1 r=1.3 -> min(-2.6, -2.56) = -2.6 (unchanged).
@pytest.mark.parametrize(
    "name,kw,expected",
    [
        ("grpo", {}, ((-1.2 - 0.5) / 2 + (2.2 + 2.6 + 1.6) / 3) / 2),
        ("dr_grpo", {"max_len": 4}, (-1.2 - 0.5 + 2.2 + 2.6 + 1.6) / (2 * 4)),
        ("dapo", {}, (-1.28 - 0.5 + 2.2 + 2.6 + 1.6) / 5),
        ("bnpo", {}, (-1.2 - 0.5 + 2.2 + 2.6 + 1.6) / 5),
        # GSPO: s_0 = sqrt(1.5·0.5), s_1 = (1.1·1.3·0.7)^(1/3) = 1.001^(1/3); clip 3e-4/4e-4
        ("gspo", {}, (-math.sqrt(0.75) + 2 * min(1.001 ** (1 / 3), 1 + 4e-4)) / 2),
        ("gspo_token", {}, (-math.sqrt(0.75) + 2 * min(1.001 ** (1 / 3), 1 + 4e-4)) / 2),
        # LUSPO: each sequence term times its length, then / B
        ("luspo", {}, (2 * -math.sqrt(0.75) + 3 * 2 * 1.001 ** (1 / 3)) / 2),
        # CISPO: -r·A·logp (no clipping within [0, 5]) summed / T_tot
        ("cispo", {}, (-1.5 * 1 * -1.0 - 0.5 * 1 * -2.0 - 1.1 * -2 * -0.5 - 1.3 * -2 * -1.0 - 0.7 * -2 * -1.5) / 5),
        # SAPO, tau_pos = 1 (row 0, A = 1), tau_neg = 1.05 (row 1, A = -2): gate (4/tau)·sigmoid(tau·(r - 1));
        # row 0: -(4σ(0.5) + 4σ(-0.5))/2 = -2 exactly (σ(x) + σ(-x) = 1); row 1: +2·mean of the three gates
        ("sapo", {}, (-2.0 + 2 * sum(4 / 1.05 * SIG(1.05 * (r - 1)) for r in (1.1, 1.3, 0.7)) / 3) / 2),
        # VESPO: W_0 = 1.5·0.5 = 0.75 (A >= 0: k=2, λ=3), W_1 = 1.1·1.3·0.7 = 1.001 (A < 0: k=3, λ=2);
        # phi = W^k e^{λ(1-W)}; -phi·A·sum(logp) per row, summed over the batch / T_tot = 5
        ("vespo", {}, (0.75**2 * math.exp(3 * 0.25) * 3.0 - 1.001**3 * math.exp(2 * -0.001) * 6.0) / 5),
    ],
)
def test_hand_values(name, kw, expected, device):
    assert loss_of(name, device, **kw) == pytest.approx(expected, rel=1e-12)


def test_every_loss_has_a_hand_value_test():
    tested = {"grpo", "dr_grpo", "dapo", "bnpo", "gspo", "gspo_token", "luspo", "cispo", "sapo", "vespo"}
    assert set(LOSSES) == tested


def test_cispo_clips_the_weight_and_keeps_the_gradient():
    # r = 1.5 with clip_high 0.2: weight 1.2 (detached); gradient -w·A/T_tot is not zeroed as PPO would
    logp = torch.tensor([[-1.0]], dtype=D, requires_grad=True)
    old = logp.detach() - math.log(1.5)
    out = policy_loss("cispo", logp, old, torch.tensor([1.0], dtype=D), torch.ones(1, 1, dtype=D), clip_high=0.2)
    assert float(out.loss) == pytest.approx(-1.2 * 1 * -1.0)
    (g,) = torch.autograd.grad(out.loss, logp)
    assert float(g) == pytest.approx(-1.2)
    assert float(out.metrics["clip_frac_is"]) == 1.0


def test_kl_term_hand_value():
    # k3 = exp(ref - logp) - (ref - logp) - 1 per token; grpo at ratio 1 with A = 0 leaves only beta·mean(k3)
    logp = torch.tensor([[-1.0, -2.0]], dtype=D)
    ref = torch.tensor([[-1.5, -1.0]], dtype=D)
    k3 = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1]
    out = policy_loss("grpo", logp, logp, torch.zeros(1, dtype=D), torch.ones(1, 2, dtype=D), beta=0.1, ref_logp=ref)
    assert float(out.loss) == pytest.approx(0.1 * sum(k3) / 2)
    assert float(out.metrics["kl_ref"]) == pytest.approx(sum(k3) / 2)


def test_clip_fractions_and_ratio_metrics():
    out = policy_loss("grpo", LOGP, OLD, ADV, MASK)
    m = {k: float(v) for k, v in out.metrics.items()}
    # high: r > 1.2 with A > 0 -> token (0,0) only; low: r < 0.8 with A < 0 -> token (1,2) only; of 5 tokens
    assert m["clip_frac_high"] == pytest.approx(1 / 5)
    assert m["clip_frac_low"] == pytest.approx(1 / 5)
    assert m["ratio_max"] == pytest.approx(1.5) and m["ratio_min"] == pytest.approx(0.5)
    assert m["ratio_mean"] == pytest.approx((1.5 + 0.5 + 1.1 + 1.3 + 0.7) / 5)
    assert m["tokens"] == 5 and m["seqs"] == 2
    assert all(v.requires_grad is False for v in out.metrics.values())


@pytest.mark.parametrize("name", list(LOSSES))
def test_single_token(name, device):
    logp = torch.tensor([[-0.7]], dtype=D, device=device, requires_grad=True)
    out = policy_loss(name, logp, logp.detach(), torch.tensor([2.0], dtype=D, device=device),
                      torch.ones(1, 1, dtype=D, device=device), max_len=1)
    (g,) = torch.autograd.grad(out.loss, logp)
    # one token, one sequence, B = T_tot = |y| = L_max = 1: every loss pushes the token with weight A = 2
    assert float(g) == pytest.approx(-2.0)


@pytest.mark.parametrize("name", list(LOSSES))
def test_fully_masked_row_contributes_nothing(name, device):
    mask = torch.cat([MASK, torch.zeros(1, 3, dtype=D)]).to(device)
    logp = torch.cat([LOGP, torch.full((1, 3), float("nan"), dtype=D)]).to(device).requires_grad_()
    old = torch.cat([OLD, torch.full((1, 3), -float("inf"), dtype=D)]).to(device)
    adv = torch.cat([ADV, torch.tensor([5.0], dtype=D)]).to(device)
    out = policy_loss(name, logp, old, adv, mask, max_len=4)
    assert float(out.loss) == pytest.approx(loss_of(name, device, max_len=4), rel=1e-12)
    (g,) = torch.autograd.grad(out.loss, logp)
    assert torch.isfinite(g).all() and (g[2] == 0).all()
    assert all(torch.isfinite(v) for v in out.metrics.values())


@pytest.mark.parametrize("name", list(LOSSES))
def test_all_masked_batch_is_zero_not_nan(name, device):
    logp = torch.zeros(2, 3, dtype=D, device=device, requires_grad=True)
    out = policy_loss(name, logp, logp.detach(), torch.ones(2, dtype=D, device=device),
                      torch.zeros(2, 3, dtype=D, device=device), max_len=3)
    assert float(out.loss) == 0.0
    (g,) = torch.autograd.grad(out.loss, logp)
    assert (g == 0).all()


@pytest.mark.parametrize("name", list(LOSSES))
def test_zero_advantages_zero_gradient(name, device):
    logp = LOGP.to(device).clone().requires_grad_()
    out = policy_loss(name, logp, OLD.to(device), torch.zeros(2, dtype=D, device=device), MASK.to(device), max_len=4)
    (g,) = torch.autograd.grad(out.loss, logp)
    assert float(out.loss) == 0.0 and (g == 0).all()


@pytest.mark.parametrize("name", ["grpo", "dapo", "dr_grpo", "bnpo"])
def test_ratio_far_outside_clip_range(name, device):
    # r = e^5: clipped for A > 0 (no gradient); unclipped for A < 0 (gradient -A·r·weight, pushing it down)
    logp = torch.tensor([[0.0], [0.0]], dtype=D, device=device, requires_grad=True)
    old = torch.tensor([[-5.0], [-5.0]], dtype=D, device=device)
    adv, mask = torch.tensor([1.0, -1.0], dtype=D, device=device), torch.ones(2, 1, dtype=D, device=device)
    out = policy_loss(name, logp, old, adv, mask, max_len=1)
    (g,) = torch.autograd.grad(out.loss, logp)
    assert float(g[0]) == 0.0
    assert float(g[1]) == pytest.approx(math.exp(5.0) / 2)  # d/dlogp of -A·r / 2 with A = -1
    clip_hi = LOSSES[name].clip_high
    assert float(out.loss) == pytest.approx((-(1 + clip_hi) + math.exp(5.0)) / 2)
    # dual clip caps the A < 0 token's loss at -c·A
    out = policy_loss(name, logp, old, adv, mask, max_len=1, dual_clip=3.0)
    assert float(out.loss) == pytest.approx((-(1 + clip_hi) + 3.0) / 2)


def test_padding_values_never_leak():
    logp = LOGP.clone()
    logp[0, 2] = float("inf")
    old = OLD.clone()
    old[0, 2] = float("nan")
    for name in LOSSES:
        x = logp.clone().requires_grad_()
        out = policy_loss(name, x, old, ADV, MASK, max_len=4)
        assert float(out.loss) == pytest.approx(loss_of(name, max_len=4), rel=1e-12)
        (g,) = torch.autograd.grad(out.loss, x)
        assert torch.isfinite(g).all() and g[0, 2] == 0


# ---- aggregation -------------------------------------------------------------------------------------------
MAT = torch.tensor([[1.0, 2.0, 99.0], [3.0, 4.0, 5.0]], dtype=D)


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("token-mean", (1 + 2 + 3 + 4 + 5) / 5),
        ("token-sum", 15.0),
        ("seq-mean-token-sum", (3 + 12) / 2),
        ("seq-mean-token-mean", (1.5 + 4) / 2),
        ("seq-mean-token-sum-norm", (3 + 12) / 2 / 10),
        ("prompt-mean", (1 + 2 + 3 + 4 + 5) / 5),  # one group of two responses: its token-mean
    ],
)
def test_agg_modes_hand_values(mode, expected):
    assert float(agg_loss(MAT, MASK, mode, max_len=10, group_size=2)) == pytest.approx(expected)


def test_prompt_mean_hand_values():
    # groups of one: each prompt's token-mean, then the mean over prompts = seq-mean-token-mean here
    assert float(agg_loss(MAT, MASK, "prompt-mean", group_size=1)) == pytest.approx((1.5 + 4) / 2)
    # four rows in two groups: group 0 = rows 0, 1 (5 tokens, sum 15), group 1 = rows 2, 3 (1 + 3 tokens, sum 10)
    mat = torch.cat([MAT, torch.tensor([[6.0, 0, 0], [1.0, 1.0, 2.0]], dtype=D)])
    mask = torch.cat([MASK, torch.tensor([[1.0, 0, 0], [1, 1, 1]], dtype=D)])
    assert float(agg_loss(mat, mask, "prompt-mean", group_size=2)) == pytest.approx((15 / 5 + 10 / 4) / 2)
    # the same with per-row group token counts and the global number of groups (a micro-batch of rows 1, 2)
    part = agg_loss(mat[1:3], mask[1:3], "prompt-mean", group_tokens=torch.tensor([5.0, 4.0]), num_groups=2)
    assert float(part) == pytest.approx((12 / 5 + 6 / 4) / 2)
    with pytest.raises(ConfigError, match="group_size"):
        agg_loss(mat, mask, "prompt-mean")
    with pytest.raises(ConfigError, match="group_size"):
        agg_loss(mat, mask, "prompt-mean", group_size=3)


def test_prompt_mean_per_token_weight():
    # grpo's term under prompt-mean at ratio 1: a token of response i weighs A_i / (P·T_p)
    logp = torch.zeros(4, 3, dtype=D, requires_grad=True)
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], dtype=D)
    adv = torch.tensor([1.0, -1.0, 2.0, 0.5], dtype=D)
    out = policy_loss("grpo", logp, logp.detach(), adv, mask, loss_agg_mode="prompt-mean", group_size=2)
    (g,) = torch.autograd.grad(out.loss, logp)
    T_p = torch.tensor([5.0, 5.0, 4.0, 4.0], dtype=D)
    assert torch.allclose(-g, (adv / (2 * T_p))[:, None] * mask)


def test_agg_global_normalisers_make_micro_batches_add_up():
    for mode in AGG_MODES:
        full = agg_loss(MAT, MASK, mode, max_len=10, group_size=1)
        parts = sum(
            agg_loss(MAT[i : i + 1], MASK[i : i + 1], mode, num_tokens=MASK.sum(), num_seqs=2, max_len=10,
                     group_tokens=MASK[i : i + 1].sum(-1), num_groups=2)
            for i in range(2)
        )
        assert float(parts) == pytest.approx(float(full)), mode


# ---- rollout/trainer mismatch correction -------------------------------------------------------------------
def rollout_for(weights):
    """Sampler log-probs whose weight pi_old / pi_rollout is `weights` on the real tokens of MASK."""
    return OLD - torch.log(torch.tensor(weights, dtype=D))


@pytest.mark.parametrize(
    "mode,kw,weights,expected",
    [
        # token TIS at C_max = 2: w = [[3 -> 2, 0.5], [1, 1, 1]]; grpo's per-token losses times w
        ("token_truncate", {}, [[3.0, 0.5, 1], [1, 1, 1]], ((-1.2 * 2 - 0.5 * 0.5) / 2 + (2.2 + 2.6 + 1.6) / 3) / 2),
        # token masked IS in [0.6, 2]: the 0.5 weight becomes 0, the 3 too
        ("token_mask", {"rollout_is_min": 0.6}, [[3.0, 0.5, 1], [1.5, 1, 1]],
         ((0 + 0) / 2 + (2.2 * 1.5 + 2.6 + 1.6) / 3) / 2),
        # sequence TIS: w_0 = 3·0.5 = 1.5 (kept), w_1 = 4·1·1 = 4 -> 2
        ("sequence_truncate", {}, [[3.0, 0.5, 1], [4, 1, 1]], ((-1.2 - 0.5) * 1.5 / 2 + 2 * (2.2 + 2.6 + 1.6) / 3) / 2),
        # sequence masked IS: w_0 = 3 > 2 masks row 0 out, w_1 = 1.2 kept
        ("sequence_mask", {}, [[3.0, 1, 1], [1.2, 1, 1]], (0 + 1.2 * (2.2 + 2.6 + 1.6) / 3) / 2),
    ],
)
def test_rollout_is_hand_values(mode, kw, weights, expected):
    out = policy_loss("grpo", LOGP, OLD, ADV, MASK, rollout_is=mode, rollout_logp=rollout_for(weights), **kw)
    assert float(out.loss) == pytest.approx(expected, rel=1e-12)


def test_rollout_is_weights_are_detached_and_one_when_sampler_agrees():
    x = LOGP.clone().requires_grad_()
    out = policy_loss("dapo", x, OLD, ADV, MASK, rollout_is="token_truncate", rollout_logp=OLD)
    ref = policy_loss("dapo", LOGP, OLD, ADV, MASK)
    assert float(out.loss) == pytest.approx(float(ref.loss), rel=1e-12)
    assert float(out.metrics["rollout_is_mean"]) == pytest.approx(1.0)
    assert float(out.metrics["rollout_kl"]) == pytest.approx(0.0, abs=1e-15)
    # the weights depend on old and rollout log-probs only: the gradient w.r.t. logp is the term's, times w
    (g,) = torch.autograd.grad(policy_loss("grpo", x, OLD, ADV, MASK, rollout_is="sequence_truncate",
                                           rollout_logp=OLD - math.log(1.2) * MASK).loss, x)
    (g1,) = torch.autograd.grad(policy_loss("grpo", x, OLD, ADV, MASK).loss, x)
    assert torch.allclose(g, g1 * torch.tensor([[1.2**2], [1.2**3]], dtype=D))  # w_i = 1.2^|y_i| (below 2)


def test_rollout_is_errors_name_the_field():
    with pytest.raises(ConfigError, match="rollout_logp"):
        policy_loss("grpo", LOGP, OLD, ADV, MASK, rollout_is="token_truncate")
    with pytest.raises(ConfigError, match="rollout_is"):
        policy_loss("grpo", LOGP, OLD, ADV, MASK, rollout_logp=OLD)
    with pytest.raises(ConfigError, match="valid: token_truncate"):
        policy_loss("grpo", LOGP, OLD, ADV, MASK, rollout_is="tis", rollout_logp=OLD)
    with pytest.raises(ConfigError, match="rollout_is_min"):
        policy_loss("grpo", LOGP, OLD, ADV, MASK, rollout_is="token_mask", rollout_logp=OLD, rollout_is_min=3.0)
    with pytest.raises(ConfigError, match="token_truncate"):
        policy_loss("vespo", LOGP, OLD, ADV, MASK, rollout_is="sequence_mask", rollout_logp=OLD)


def test_vespo_folds_token_weights_into_its_sequence_weight():
    # token weights w multiply W_i = prod_t r_it: W_0 = 0.75 · (2 · 0.5) = 0.75 (TIS truncates 3 to 2)
    out = policy_loss("vespo", LOGP, OLD, ADV, MASK, rollout_is="token_truncate",
                      rollout_logp=rollout_for([[3.0, 0.5, 1], [1, 1, 1]]))
    assert float(out.loss) == pytest.approx(loss_of("vespo"), rel=1e-12)


def test_sapo_gradient_is_grpo_at_ratio_one_and_fades_off_policy():
    logp = torch.zeros(1, 1, dtype=D, requires_grad=True)
    for log_r, expected in ((0.0, 1.0), (math.log(1.5), 4 * SIG(0.5) * (1 - SIG(0.5)) * 1.5)):
        out = policy_loss("sapo", logp, logp.detach() - log_r, torch.tensor([1.0], dtype=D), torch.ones(1, 1, dtype=D))
        (g,) = torch.autograd.grad(out.loss, logp)
        assert float(-g) == pytest.approx(expected)  # d/dlogp of (4/tau)σ(tau(r-1)) = 4σ(1-σ)·r


# ---- errors ----------------------------------------------------------------------------------------------
def test_unknown_loss_lists_valid_names():
    with pytest.raises(UnknownNameError, match="valid names: grpo, dr_grpo"):
        policy_loss("ppo2", LOGP, OLD, ADV, MASK)


def test_unknown_hparam_is_named():
    with pytest.raises(ConfigError, match="clip_hi.*valid: .*clip_high"):
        policy_loss("grpo", LOGP, OLD, ADV, MASK, clip_hi=0.3)


def test_dr_grpo_needs_max_len():
    with pytest.raises(ConfigError, match="max_len"):
        policy_loss("dr_grpo", LOGP, OLD, ADV, MASK)


def test_shape_errors_name_the_field():
    with pytest.raises(ConfigError, match="advantages must be"):
        policy_loss("grpo", LOGP, OLD, ADV[:1], MASK)
    with pytest.raises(ConfigError, match="mask"):
        policy_loss("grpo", LOGP, OLD, ADV, MASK[:, :2])
    with pytest.raises(ConfigError, match="ref_logp"):
        policy_loss("grpo", LOGP, OLD, ADV, MASK, beta=0.1)
    with pytest.raises(ConfigError, match="gspo_token"):
        policy_loss("gspo", LOGP, OLD, ADV[:, None].expand(2, 3), MASK)
    with pytest.raises(ConfigError, match="NaN"):
        policy_loss("grpo", LOGP, OLD, torch.tensor([1.0, float("nan")], dtype=D), MASK)
    with pytest.raises(ConfigError, match="loss_agg_mode"):
        policy_loss("grpo", LOGP, OLD, ADV, MASK, loss_agg_mode="mean")


def test_per_token_advantages_token_losses():
    # [B, T] advantages equal to the broadcast [B] ones give the same loss
    for name in ("grpo", "dapo", "gspo_token", "cispo"):
        a2 = ADV[:, None].expand(2, 3).clone()
        assert float(policy_loss(name, LOGP, OLD, a2, MASK).loss) == pytest.approx(loss_of(name))


def test_clip_shares_of_tokens_and_sequences_by_hand():
    """Token-level PPO: 2 of 5 tokens clipped, in 1 of 2 responses; GSPO: one response (3 tokens) clipped of two."""
    from lengthrl.objectives.terms import gspo_seq_term, ppo_clip_term

    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    old = torch.zeros(2, 3)
    logp = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])  # r = e^0.5 = 1.65 on two tokens of response 0
    adv = torch.tensor([[1.0] * 3, [1.0] * 3])
    _, m = ppo_clip_term(logp, old, adv, mask, clip_low=0.2, clip_high=0.2)
    assert float(m["clip_frac_tok"]) == pytest.approx(2 / 5) and float(m["clip_frac_seq"]) == pytest.approx(1 / 2)
    # GSPO: s_0 = exp(mean(0.5, 0.5, 0)) = 1.40 > 1 + 4e-4, s_1 = 1: response 0 clipped, its 3 tokens of 5
    _, g = gspo_seq_term(logp, old, adv, mask, clip_low=3e-4, clip_high=4e-4)
    assert float(g["clip_frac_tok"]) == pytest.approx(3 / 5) and float(g["clip_frac_seq"]) == pytest.approx(1 / 2)
