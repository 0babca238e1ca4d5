"""The registered policy losses (docs/papers.md section 1). A loss = a per-token term (`terms.py`) + a default
token aggregation (`aggregation.py`) + default clip values. The spec also carries the formula, the paper and the
per-token gradient weight at ratio 1 (the length bias), which the docs and the audit print and test.

Notation: B' sequences with at least one response token, |y_i| the length of response i, T_tot the number of
response tokens in the batch, L_max the constant `max_len`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lengthrl.objectives import terms
from lengthrl.registry import Registry


@dataclass(frozen=True, kw_only=True)
class LossSpec:
    """A registered policy loss. Registered with keywords only, so a reader sees what every value is."""

    name: str
    term: Callable  # (logp, old_logp, adv[B,T], mask, *, clip_low, clip_high, ...) -> (loss[B,T], metrics)
    agg_mode: str  # default token aggregation
    clip_low: float
    clip_high: float
    level: str  # "token" (per-token ratio / advantages allowed) or "sequence" (one advantage per sequence)
    paper: str
    formula: str
    weight: str  # per-token gradient weight at ratio 1, as a formula in A_i, B, |y_i|, T_tot, L_max
    weight_fn: Callable[..., float]  # (A, B, length, T_tot, L_max) -> weight, for the audit
    note: str = ""
    requires: tuple[str, ...] = ()  # hyperparameters without a default
    global_norm: bool = True  # False: normalise by this call's own token count (bnpo), ignore num_tokens
    extra_hparams: tuple[str, ...] = field(default=())
    rollout_is_in_term: bool = False  # True: the term takes the rollout-correction log-weights (`rollout_log_w`)


LOSSES: Registry[LossSpec] = Registry("loss")

_PPO = "l_it = -min(r_it A_i, clip(r_it, 1-e_lo, 1+e_hi) A_i),  r_it = pi(y_it|.)/pi_old(y_it|.)"
_GSPO = "s_i = exp((1/|y_i|) sum_t log r_it);  l_i = -min(s_i A_i, clip(s_i, 1-e_lo, 1+e_hi) A_i)"

for spec in [
    LossSpec(
        name="grpo",
        term=terms.ppo_clip_term,
        agg_mode="seq-mean-token-mean",
        clip_low=0.2,
        clip_high=0.2,
        level="token",
        paper="DeepSeekMath, arXiv 2402.03300",
        formula=f"{_PPO};  L = (1/B') sum_i (1/|y_i|) sum_t l_it",
        weight="A_i / (B'·|y_i|)",
        weight_fn=lambda A, B, n, T, Lm: A / (B * n),
        note="Long responses get less weight per token: long wrong answers are punished less, short right answers "
        "rewarded more.",
        extra_hparams=("dual_clip",),
    ),
    LossSpec(
        name="dr_grpo",
        term=terms.ppo_clip_term,
        agg_mode="seq-mean-token-sum-norm",
        clip_low=0.2,
        clip_high=0.2,
        level="token",
        paper="Dr. GRPO (Understanding R1-Zero-Like Training), arXiv 2503.20783",
        formula=f"{_PPO};  L = (1/(B'·L_max)) sum_i sum_t l_it",
        weight="A_i / (B'·L_max)",
        weight_fn=lambda A, B, n, T, Lm: A / (B * Lm),
        note="No length bias; L_max must be a constant (the maximum number of new tokens), not the padded length "
        "of the batch.",
        requires=("max_len",),
        extra_hparams=("dual_clip",),
    ),
    LossSpec(
        name="dapo",
        term=terms.ppo_clip_term,
        agg_mode="token-mean",
        clip_low=0.2,
        clip_high=0.28,
        level="token",
        paper="DAPO, arXiv 2503.14476",
        formula=f"{_PPO};  L = (1/T_tot) sum_i sum_t l_it  (token-mean over the whole batch)",
        weight="A_i / T_tot",
        weight_fn=lambda A, B, n, T, Lm: A / T,
        note="Every token weighs the same within a batch, but the weight depends on the other responses' lengths.",
        extra_hparams=("dual_clip",),
    ),
    LossSpec(
        name="bnpo",
        term=terms.ppo_clip_term,
        agg_mode="token-mean",
        clip_low=0.2,
        clip_high=0.2,
        level="token",
        paper="TRL's name (batch-normalised policy optimisation)",
        formula=f"{_PPO};  L = (1/T_local) sum_i sum_t l_it  (tokens of this micro-batch only)",
        weight="A_i / T_local",
        weight_fn=lambda A, B, n, T, Lm: A / T,
        note="Equals dapo on one process without accumulation; under accumulation each micro-batch is normalised by "
        "its own token count.",
        global_norm=False,
        extra_hparams=("dual_clip",),
    ),
    LossSpec(
        name="gspo",
        term=terms.gspo_seq_term,
        agg_mode="seq-mean-token-mean",
        clip_low=3e-4,
        clip_high=4e-4,
        level="sequence",
        paper="GSPO, arXiv 2507.18071",
        formula=f"{_GSPO};  L = (1/B') sum_i l_i",
        weight="A_i / (B'·|y_i|)",
        weight_fn=lambda A, B, n, T, Lm: A / (B * n),
        note="The sequence ratio is a per-token geometric mean, so a token of a long response moves s_i less: the "
        "GRPO length bias, at sequence level. Peer bug to avoid: aggregating GSPO by token-mean reweights by "
        "length.",
    ),
    LossSpec(
        name="gspo_token",
        term=terms.gspo_token_term,
        agg_mode="seq-mean-token-mean",
        clip_low=3e-4,
        clip_high=4e-4,
        level="token",
        paper="GSPO (GSPO-token variant), arXiv 2507.18071",
        formula="s_it = sg[s_i]·pi(y_it)/sg[pi(y_it)];  l_it = -min(s_it A_it, clip(s_it) A_it);  "
        "L = (1/B') sum_i (1/|y_i|) sum_t l_it",
        weight="A_i / (B'·|y_i|)",
        weight_fn=lambda A, B, n, T, Lm: A / (B * n),
        note="Same value and gradient as gspo for sequence advantages; allows per-token advantages A_it.",
    ),
    LossSpec(
        name="luspo",
        term=terms.gspo_seq_term,
        agg_mode="seq-mean-token-sum",
        clip_low=2e-3,
        clip_high=2.5e-3,
        level="sequence",
        paper="LUSPO, arXiv 2602.05261",
        formula=f"{_GSPO};  L = (1/B') sum_i |y_i|·l_i",
        weight="A_i / B'",
        weight_fn=lambda A, B, n, T, Lm: A / B,
        note="Scaling each sequence's GSPO term by its length gives every token of every response the same weight. "
        "Peer bug to avoid: dividing by |y_i| once more (length squared over T).",
    ),
    LossSpec(
        name="cispo",
        term=terms.cispo_term,
        agg_mode="token-mean",
        clip_low=1.0,
        clip_high=4.0,
        level="token",
        paper="MiniMax-M1, arXiv 2506.13585",
        formula="l_it = -sg[clip(r_it, 1-e_lo, 1+e_hi)]·A_i·log pi(y_it|.);  L = (1/T_tot) sum_i sum_t l_it",
        weight="A_i / T_tot",
        weight_fn=lambda A, B, n, T, Lm: A / T,
        note="Defaults e_lo = 1 (no lower clip, r > 0) and e_hi = 4 (weight at most 5, the eps_max of ScaleRL and "
        "TRL's recommendation).",
    ),
    LossSpec(
        name="sapo",
        term=terms.sapo_term,
        agg_mode="seq-mean-token-mean",
        clip_low=0.0,
        clip_high=0.0,
        level="token",
        paper="SAPO (Soft Adaptive Policy Optimization), arXiv 2511.20347",
        formula="l_it = -(4/tau)·sigmoid(tau·(r_it - 1))·A_i,  tau = tau_pos (A > 0) or tau_neg;  "
                "L = (1/B') sum_i (1/|y_i|) sum_t l_it",
        weight="A_i / (B'·|y_i|)",
        weight_fn=lambda A, B, n, T, Lm: A / (B * n),
        note="A smooth, temperature-controlled gate replaces the hard clip: the gradient at ratio 1 is GRPO's, "
             "and it fades smoothly off-policy instead of vanishing past 1 ± eps. Defaults tau_pos = 1.0, "
             "tau_neg = 1.05 (the paper's choice tau_neg > tau_pos: negative updates are damped faster). "
             "Aggregated like GRPO, so it keeps GRPO's 1/|y_i| length bias.",
        extra_hparams=("tau_pos", "tau_neg"),
    ),
    LossSpec(
        name="vespo",
        term=terms.vespo_term,
        agg_mode="token-mean",
        clip_low=0.0,
        clip_high=0.0,
        level="sequence",
        paper="VESPO, arXiv 2602.10693",
        formula="W_i = prod_t r_it;  phi(W) = W^k·exp(lambda·(1 - W));  l_it = -sg[phi(W_i)]·A_i·log pi(y_it);  "
                "L = (1/T_tot) sum_i sum_t l_it",
        weight="A_i / T_tot",
        weight_fn=lambda A, B, n, T, Lm: A / T,
        note="Reshapes the sequence-level importance weight (a product, no length normalisation) by a "
             "gamma-shaped kernel with phi(1) = 1. Defaults k_pos = 2, lambda_pos = 3 (A >= 0) and k_neg = 3, "
             "lambda_neg = 2 (A < 0), those of TRL 1.16; aggregated by token-mean over the batch, as TRL.",
        extra_hparams=("k_pos", "lambda_pos", "k_neg", "lambda_neg"),
        rollout_is_in_term=True,
    ),
]:
    LOSSES.register(spec.name, spec)
