"""Generate the registry-driven reference pages of docs/ (`lengthrl docs`). A test checks the committed pages
are up to date, so the docs cannot drift from the code."""

from __future__ import annotations

import inspect
from pathlib import Path

from lengthrl.advantages import ADVANTAGES
from lengthrl.commands import command
from lengthrl.objectives import AGG_MODES, LOSSES

OBJECTIVES_INTRO = """\
# Objectives: policy losses and advantage estimators

Generated from the registries by `lengthrl docs` (do not edit by hand; edit the specs in
`src/lengthrl/objectives/losses.py`, `src/lengthrl/advantages/__init__.py` and this generator).

    out = lengthrl.objectives.policy_loss(name, logp, old_logp, advantages, mask, **hparams)
    adv = lengthrl.advantages.compute_advantages(name, rewards, group_size, **hparams)

`logp`, `old_logp`, `mask` are float [B, T] (mask 1 on real response tokens, the EOS token included);
`advantages` is [B] or [B, T]. Common hyperparameters: `clip_low`, `clip_high` (defaults per loss, below),
`loss_agg_mode` (default per loss; any of the modes below), `max_len` (the constant L_max), `beta` and
`ref_logp` (k3 KL to a reference policy), `num_tokens` / `num_seqs` (global normalisers for gradient
accumulation and several ranks), `dual_clip` (PPO-clip losses: cap the loss of A < 0 tokens at -c·A),
`group_size` / `group_tokens` / `num_groups` (the `prompt-mean` aggregation).

## Rollout/trainer mismatch correction (`rollout_is`)
When the responses come from another engine than the trainer's forward (vLLM, a bf16 or fused decoder), its
log-probs `rollout_logp` and a mode give a detached weight w of pi_old / pi_rollout that multiplies the
per-token policy term (before the KL term), as TRL's `vllm_importance_sampling_mode` and verl's
`rollout_is` / `rollout_is_threshold` (verl's docs/algo/rollout_corr.md describes the mismatch):

    token_truncate     w_it = clip(exp(old_it - rollout_it), C_min, C_max)    truncated IS (TIS)
    token_mask         w_it = exp(old_it - rollout_it), 0 outside [C_min, C_max]   masked IS (verl's IcePop)
    sequence_truncate  w_i = clip(exp(sum_t (old_it - rollout_it)), C_min, C_max) on every token of response i
    sequence_mask      w_i = exp(sum_t (old_it - rollout_it)), 0 outside [C_min, C_max]

`rollout_is_max` = C_max (default 2.0, verl's threshold; TRL's default is 3.0), `rollout_is_min` = C_min
(default none). `vespo` multiplies its sequence weight W_i by prod_t w_it instead (token modes only, as TRL).
Metrics: `rollout_is_mean`, `rollout_is_changed_frac` (tokens whose weight was truncated or masked),
`rollout_kl` (k3 estimate of KL(pi_rollout || pi_old)).

Notation: B' = sequences with at least one response token; |y_i| the length of response i; T_tot the number of
response tokens in the batch; L_max a constant; r_it = pi(y_it)/pi_old(y_it); sg = stop-gradient.

## Numerical conventions
- Padding is cleaned before any arithmetic: logp/old_logp/advantages of masked positions are replaced by 0
  (`torch.where`, not a product), so -inf or NaN left in padding never reaches `exp` or the gradient.
- |log r| is clamped at 20 before `exp` (as verl), for every loss.
- A fully masked row contributes nothing and is not counted in B' (as verl's `agg_loss`; TRL's `.mean()`
  divides by all rows, including empty ones: the two differ only when a row is fully masked, e.g. by DAPO's
  overlong filtering).
- Metrics are detached 0-dim tensors (no `.item()` inside the loss): `clip_frac_low` (r < 1-e_lo with A < 0),
  `clip_frac_high` (r > 1+e_hi with A > 0), `ratio_mean/min/max`, `approx_kl` (k3 estimate of
  KL(pi_old || pi) = mean(r - 1 - log r)), `kl_ref` (when beta > 0), `tokens`, `seqs`, and for cispo
  `clip_frac_is` (the IS weight clipped, whatever the sign of A). For gspo and luspo the ratio and clip
  metrics are over sequences (s_i), for all others over tokens.
- Gradient accumulation / several ranks: pass `num_tokens` = T_tot and `num_seqs` = B' of the whole batch; the
  sum of the micro-batch losses then equals the whole-batch loss (property-tested for every loss). `bnpo`
  ignores `num_tokens` by definition (it normalises by the tokens of the tensors it is given).

## Token aggregation modes
"""

AGG_DOC = {
    "token-mean": "sum_it m·l / T_tot",
    "token-sum": "sum_it m·l",
    "seq-mean-token-sum": "(1/B') sum_i sum_t m·l",
    "seq-mean-token-mean": "(1/B') sum_i (1/|y_i|) sum_t m·l",
    "seq-mean-token-sum-norm": "(1/B') sum_i sum_t m·l / L_max",
    "prompt-mean": "(1/P) sum_p (1/T_p) sum_{i in p} sum_t m·l  (P prompt groups, T_p tokens of group p; "
                   "`group_size` or `group_tokens` + `num_groups`). A token of response i weighs A_i/(P·T_p): "
                   "every prompt weighs the same whatever its lengths (SkyRL, AReaL, ScaleRL arXiv 2510.13786)",
}

PEERS = """
## Cross-checks against the peers, and where they differ
- **TRL 1.16** (`tests/test_crosscheck_trl.py`): `GRPOTrainer._compute_loss` itself is called on a stand-in
  trainer; loss and gradient equal ours to rel 1e-9 (float64) for grpo, bnpo, dr_grpo, dapo, cispo, GSPO
  (TRL's grpo with `importance_sampling_level="sequence"`) and luspo, each with and without the k3 KL
  (beta = 0.04), on random batches with ratios inside and outside the clip range. TRL's cispo clamps the IS
  weight at `epsilon_high` (an absolute bound, recommended 5.0) with no lower bound: ours with clip_low = 1,
  clip_high = epsilon_high - 1. TRL's `sapo` and `vespo` equal ours too (TRL's temperatures are float32
  tensors, so the test uses float32-exact tau values), and so does its vLLM importance-sampling correction in
  all four modes, with two bound settings, on grpo, dapo, luspo, sapo and vespo (TRL's ratio computation from
  `_generate_and_score_completions` is transcribed in the test; `_compute_loss` applies it).
- **verl 0.9.1** (`tests/test_crosscheck_verl.py`, on outputs recorded by `tests/fixtures/record_verl.py`,
  since verl needs ray and transformers < 5.11): `compute_policy_loss_vanilla` in four aggregation modes
  equals our PPO-clip loss with `dual_clip=3` (verl always applies dual-clip with clip_ratio_c = 3); verl's
  `gspo` equals our gspo_token and gspo; `cispo`, `agg_loss` (all five modes), GRPO and RLOO advantages equal
  ours to 1e-10, except seq-mean-token-mean, where verl divides by |y_i| + 1e-8 (agreement to 1e-7).
  **Disagreement, by design**: verl's REINFORCE++-baseline whitens the centred rewards over *tokens*
  (token-weighted, Bessel correction over tokens, and shifted to zero mean). Our `batch` estimator whitens over
  *sequences*, as DLER's description (group-mean centring, then the std over the batch of responses). On
  equal-length responses verl = ours / sqrt(T(N-1)/(NT-1)) exactly (tested); with unequal lengths verl gives long
  responses more say in the std.
- verl's GRPO gives a group of one its raw reward as advantage (mean 0, std 1); ours gives 0 (a group of one
  carries no relative signal).
- verl 0.9.1's `sapo` and its rollout correction (`tests/test_drift.py`, on outputs of verl's own code recorded
  by `tests/fixtures/record_verl_drift.py`): `compute_policy_loss_sapo` equals our sapo (loss and gradient, 1e-7,
  at ratios near and far from 1) under seq-mean-token-mean, which verl uses **whatever `loss_agg_mode` says**;
  `compute_rollout_correction_weights` (token and sequence level, a TIS upper bound 2.0 and an IcePop band
  0.5_1.5) equals our `rollout_is_weights` (token_/sequence_truncate, token_/sequence_mask) to 1e-12, and verl's
  vanilla loss with those weights equals our `policy_loss(..., rollout_is=...)`.
- Peer bugs this library is tested against: GSPO aggregated by token-mean (reweights sequences by length; our
  gspo uses seq-mean-token-mean and the audit shows the resulting weight), and luspo dividing by |y_i| twice
  (length squared over T; our luspo's per-token gradient is A/B' whatever the length: property-tested).

## The version-drift audit (`lengthrl audit --against trl|verl`)
The cross-checks above pin one version of each framework; users run whatever is installed. `lengthrl audit
--against trl` imports the installed TRL, calls its `GRPOTrainer._compute_loss` on a stand-in trainer for every
`loss_type` / `importance_sampling_level` (grpo, bnpo, dr_grpo, dapo, cispo, grpo/sequence = GSPO, luspo, sapo,
vespo) on the audit's probe batch (|y| = 8 and 64, A = +1 and -1, ratio 1) and prints each response's per-token
gradient weight next to lengthrl's definition, naming TRL's version and flagging a row that differs (rel 1e-6);
exit 1 when one does (`lengthrl.analysis.drift`). `--against verl` does the same with verl's registered policy
losses (vanilla, gspo, sapo, cispo) under each of its five `loss_agg_mode`s, in the environment where verl is
installed (`make test-integrations` builds it), or from gradients recorded there (`--recorded
tests/fixtures/verl_drift.pt`). Measured: TRL 1.16.0 matches on all 36 rows (the known table, tested); a planted
LUSPO variant weighting each sequence by |y|²/T_tot (the pre-1.16 bug's shape) is flagged on its 4 rows; verl
0.9.1 matches on 66 of 80 rows, the 14 others being `sapo` under every mode but seq-mean-token-mean (its weight
stays A/(B'·|y|)), i.e. verl's `sapo` ignores `loss_agg_mode`.

## prompt-mean in the trainer
`loss_agg_mode = "prompt-mean"` trains: `ppo_update` passes each row's group token count T_p (over the
mini-batch, whose groups are whole on one rank) and the global number of groups P, so micro-batches and ranks
sum to the mini-batch's loss (tests/test_prompt_mean_train.py, tests/test_dynamic_sampling.py with 2 ranks).
A loss normalised per micro-batch (bnpo) refuses it. `lengthrl audit` adds grpo's term under prompt-mean
(A_i/(P·T_p), each length's responses one group).
"""


def cell(s: str) -> str:
    """Escape a table cell (formulas contain |y_i|)."""
    return s.replace("|", "\\|")


def objectives_markdown() -> str:
    out = [OBJECTIVES_INTRO]
    out += ["| mode | loss |", "|---|---|"]
    out += [f"| `{m}` | {cell(AGG_DOC[m])} |" for m in AGG_MODES]
    out += ["", "## Losses", ""]
    out += ["| loss | default aggregation | clip lo / hi | per-token gradient weight at ratio 1 |", "|---|---|---|---|"]
    for n, s in LOSSES.items():
        out.append(f"| `{n}` | {s.agg_mode} | {s.clip_low:g} / {s.clip_high:g} | {cell(s.weight)} |")
    for n, s in LOSSES.items():
        req = f" Required: {', '.join(s.requires)}." if s.requires else ""
        out += [
            "", f"### `{n}`", "", f"Paper: {s.paper}.", "", "    " + s.formula, "",
            f"- Default aggregation `{s.agg_mode}`; clip_low = {s.clip_low:g}, clip_high = {s.clip_high:g}; "
            f"{'one advantage per sequence' if s.level == 'sequence' else 'advantages [B] or [B, T]'}.{req}",
            f"- Length weighting: every token of response i is pushed with weight **{s.weight}** at ratio 1 "
            "(`lengthrl audit` measures it by autograd).",
            f"- {s.note}",
        ]
        term_doc = inspect.getdoc(s.term)
        if term_doc:
            out += [f"- Per-token term (`{s.term.__name__}`): " + term_doc.replace("\n", " ")]
    out += ["", "## KL to a reference policy", "",
            "    beta · k3,  k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1   (per token, >= 0)", "",
            "Added to the per-token loss before aggregation (as TRL), so it is aggregated like the loss. "
            "GRPO's paper uses it; GSPO, LUSPO and DAPO use beta = 0 (the default).", "",
            "## Advantage estimators", "",
            "Rewards [N] in contiguous groups of `group_size`; a group whose rewards are all equal (a group of "
            "one included) gets exactly 0, never NaN, except under `hbpo`, whose intra-budget term is absolute and "
            "which takes each response's budget (`budget=[N]`; in the trainer from `hbpo_budgets`, "
            "docs/rewards.md).", "",
            "| name | formula | hyperparameters | paper |", "|---|---|---|---|"]
    for n, s in ADVANTAGES.items():
        hp = ", ".join(f"{k}={v:g}" for k, v in s.hparams.items()) or "-"
        out.append(f"| `{n}` | {cell(s.formula)} | {hp} | {s.paper} |")
    out.append(PEERS)
    return "\n".join(out).rstrip() + "\n"


PAGES = {"objectives.md": objectives_markdown}


@command("docs", examples=["lengthrl docs --out docs"])
def run_docs(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, fn in PAGES.items():
        (out / name).write_text(fn())
        print(f"wrote {out / name}")
    return 0


@run_docs.args
def _(p):
    p.add_argument("--out", default="docs", help="docs directory")
