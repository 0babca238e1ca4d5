"""Version-drift audit: the per-token gradient weight of an INSTALLED framework's own loss code on the audit's
probe batch (`lengthrl.analysis.probe.probe_batch`: responses of |y| = 8 and 64 with A = +1 and -1, ratio 1),
next to lengthrl's definition of the same objective, flagging every row where they differ.

Every framework has shipped a length-bias change in its aggregation (TRL's LUSPO weighting before 1.16, verl's
GSPO aggregation between 0.9.0 and 0.9.1): the per-token weight w(|y|) = -dL/dlogp_t at ratio 1 is where it
shows, and it is invisible in the loss value. This module runs the framework's code, not a transcription:

- TRL: `GRPOTrainer._compute_loss` (the method itself) on a stand-in trainer object whose log-prob function
  returns the probe's log-probs, for each `loss_type` / `importance_sampling_level` of TRL_LOSSES; lengthrl's
  side is `policy_loss` of the matching loss under its own aggregation.
- verl: every loss of VERL_LOSSES from `core_algos.get_policy_loss_fn`, under every `loss_agg_mode`; lengthrl's
  side is the matching term under that aggregation. verl is not installed beside lengthrl's pins (it pulls ray
  and pins transformers < 5.11): live in its own environment, or from a file recorded there (`record_verl`).

A row is `ok` when the two per-token weights agree to rel 1e-6 (verl adds 1e-8 to a denominator), the
framework's weight is uniform over the response's tokens and nothing lands on padding.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch

from lengthrl.analysis.probe import AGG_WEIGHTS, Probe, probe_batch, token_weights
from lengthrl.errors import ConfigError, LengthRLError
from lengthrl.objectives import LOSSES, policy_loss

REL_TOL = 1e-6

# (TRL loss_type, importance_sampling_level, TRL epsilon_low, epsilon_high) -> (lengthrl loss, its kwargs):
# the pairs tests/test_crosscheck_trl.py checks at random ratios
TRL_LOSSES = [
    ("grpo", "token", 0.2, 0.2, "grpo", {}),
    ("bnpo", "token", 0.2, 0.28, "bnpo", {"clip_high": 0.28}),
    ("dr_grpo", "token", 0.2, 0.2, "dr_grpo", {}),
    ("dapo", "token", 0.2, 0.28, "dapo", {}),
    ("cispo", "token", 0.2, 5.0, "cispo", {"clip_low": 1.0, "clip_high": 4.0}),
    ("grpo", "sequence", 3e-4, 4e-4, "gspo", {}),
    ("luspo", "sequence", 2e-3, 2.5e-3, "luspo", {}),
    ("sapo", "token", 0.2, 0.2, "sapo", {"tau_pos": 1.0, "tau_neg": 1.25}),
    ("vespo", "token", 0.2, 0.2, "vespo", {}),
]
# the GRPOConfig fields of SAPO and VESPO, set to lengthrl's defaults on both sides
TRL_ARGS = dict(sapo_temperature_pos=1.0, sapo_temperature_neg=1.25, vespo_k_pos=2.0, vespo_lambda_pos=3.0,
                vespo_k_neg=3.0, vespo_lambda_neg=2.0)

# verl policy loss -> the lengthrl term it computes (aggregation from verl's loss_agg_mode)
VERL_LOSSES = {"vanilla": "grpo", "gspo": "gspo_token", "sapo": "sapo", "cispo": "cispo"}
VERL_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
VERL_CLIPS = {"cispo": (1.0, 4.0), "gspo": (3e-4, 4e-4)}  # (clip_ratio_low, clip_ratio_high); others 0.2 / 0.28


@dataclass
class DriftRow:
    framework: str  # e.g. "trl 1.16.0"
    theirs: str  # the framework's loss, e.g. "luspo/sequence", "sapo/token-mean"
    ours: str  # lengthrl's loss (+ aggregation)
    formula: str  # lengthrl's per-token weight
    length: int
    advantage: float
    theirs_w: float  # the framework's per-token weight -dL/dlogp_t (mean over the response's tokens)
    ours_w: float
    spread: float  # max - min of the framework's per-token weights inside the response
    ok: bool


def _rows(framework: str, theirs: str, ours: str, formula: str, probe: Probe, g_theirs: torch.Tensor,
          g_ours: torch.Tensor) -> list[DriftRow]:
    rows = []
    for (L, a), (w, spread, pad_ok), (w_ours, _, _) in zip(probe.cases, token_weights(g_theirs, probe),
                                                          token_weights(g_ours, probe)):
        ok = math.isclose(w, w_ours, rel_tol=REL_TOL, abs_tol=1e-12) and spread <= REL_TOL * abs(w_ours) + 1e-12 \
            and pad_ok
        rows.append(DriftRow(framework, theirs, ours, formula, L, a, w, w_ours, spread, ok))
    return rows


def _ours(name: str, probe: Probe, max_len: int, **kw) -> torch.Tensor:
    x = probe.logp.clone().requires_grad_(True)
    out = policy_loss(name, x, probe.logp, probe.advantages, probe.mask, max_len=max_len, **kw)
    return torch.autograd.grad(out.loss, x)[0]


# ---- TRL ---------------------------------------------------------------------------------------------------
def trl_stand_in(loss_type: str, level: str, eps_low: float, eps_high: float, logp: torch.Tensor,
                 max_completion_length: int):
    """The attributes of a GRPOTrainer that TRL 1.16's `_compute_loss` reads, on one process with no extras
    (no entropy masking, no vLLM correction, beta 0); its log-prob function returns `logp`."""
    from trl import GRPOTrainer

    acc = SimpleNamespace(num_processes=1, gather=lambda x: x, reduce=lambda x, reduction="sum": x,
                          gather_for_metrics=lambda x: x, sync_gradients=True)
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level=level, beta=0.0,
        loss_type=loss_type, epsilon_low=eps_low, epsilon_high=eps_high,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1, **TRL_ARGS),
        use_vllm=False, vllm_importance_sampling_correction=False, model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, max_completion_length=max_completion_length, accelerator=acc,
        get_gamma_weights=getattr(GRPOTrainer, "get_gamma_weights", None),
        _entropy_bonus_enabled=False, aux_loss_enabled=False, _metrics=defaultdict(lambda: defaultdict(list)),
    )


def trl_rows(compute_loss: Callable | None = None, lengths: tuple[int, ...] = (8, 64)) -> list[DriftRow]:
    """The drift rows of the installed TRL. `compute_loss(trainer, model, inputs) -> loss`: TRL's
    `GRPOTrainer._compute_loss` by default (another callable to audit a patched or planted variant)."""
    try:
        import trl
        from trl import GRPOTrainer
    except ImportError as e:
        raise ConfigError(f"audit --against trl: TRL is not importable here ({e}); install the 'trl' extra") from None
    compute_loss = compute_loss or GRPOTrainer._compute_loss
    framework = f"trl {trl.__version__}"
    probe = probe_batch(lengths)
    max_len = max(lengths)
    B = len(probe.cases)
    rows = []
    for loss_type, level, lo, hi, ours, kw in TRL_LOSSES:
        x = probe.logp.clone().requires_grad_(True)
        inputs = {
            "prompt_ids": torch.zeros(B, 2, dtype=torch.long), "prompt_mask": torch.ones(B, 2, dtype=torch.long),
            "completion_ids": torch.zeros(probe.mask.shape, dtype=torch.long),
            "completion_mask": probe.mask.long(), "advantages": probe.advantages,
            "old_per_token_logps": probe.logp, "num_items_in_batch": probe.mask.sum(),
        }
        try:
            loss = compute_loss(trl_stand_in(loss_type, level, lo, hi, x, max_len), None, inputs)
        except (AttributeError, KeyError, TypeError) as e:
            raise LengthRLError(f"audit --against trl: {framework}'s _compute_loss for loss_type={loss_type!r} "
                                f"needs something the stand-in trainer lacks ({type(e).__name__}: {e}); this "
                                "TRL version changed the method's inputs, update lengthrl.analysis.drift") from None
        (g,) = torch.autograd.grad(loss, x)
        rows += _rows(framework, f"{loss_type}/{level}", ours, LOSSES[ours].weight, probe, g,
                      _ours(ours, probe, max_len, **({"clip_low": lo, "clip_high": hi} | kw)))
    return rows


# ---- verl --------------------------------------------------------------------------------------------------
def verl_gradients(lengths: tuple[int, ...] = (8, 64)) -> tuple[str, dict[str, torch.Tensor]]:
    """(verl's version, {"loss/mode": dL/dlog_prob [B, T]}) of the installed verl's registered policy losses
    on the probe batch, ratio 1, every loss_agg_mode. Needs verl importable."""
    try:
        import verl
        from verl.trainer.ppo import core_algos
        from verl.workers.config import ActorConfig
    except ImportError as e:
        raise ConfigError(f"audit --against verl: verl is not importable here ({e}); run it in the verl "
                          "environment (make test-integrations builds .venv-verl) or pass --recorded FILE") from None
    probe = probe_batch(lengths)
    grads = {}
    for name in VERL_LOSSES:
        lo, hi = VERL_CLIPS.get(name, (0.2, 0.28))
        config = ActorConfig(strategy="fsdp", clip_ratio=lo, clip_ratio_low=lo, clip_ratio_high=hi,
                             clip_ratio_c=3.0, ppo_micro_batch_size_per_gpu=1, rollout_n=1)
        fn = core_algos.get_policy_loss_fn(name)
        for mode in VERL_AGG_MODES:
            x = probe.logp.clone().requires_grad_(True)
            adv = probe.advantages[:, None].expand_as(x) * probe.mask  # verl takes token-level advantages
            loss, _ = fn(old_log_prob=probe.logp, log_prob=x, advantages=adv, response_mask=probe.mask,
                         loss_agg_mode=mode, config=config)
            grads[f"{name}/{mode}"] = torch.autograd.grad(loss, x)[0].detach()
    return verl.__version__, grads


def record_verl(path: Path, lengths: tuple[int, ...] = (8, 64)) -> None:
    """Record the installed verl's gradients on the probe (for `verl_rows(recorded=path)` where verl is absent)."""
    version, grads = verl_gradients(lengths)
    torch.save({"verl_version": version, "lengths": list(lengths), "grads": grads}, path)


def verl_rows(recorded: str | Path | None = None) -> list[DriftRow]:
    """The drift rows of verl: the installed verl, or the gradients recorded in `recorded` (`record_verl`)."""
    if recorded is None:
        version, grads = verl_gradients()
        lengths = (8, 64)
        framework = f"verl {version}"
    else:
        p = Path(recorded)
        if not p.is_file():
            raise ConfigError(f"--recorded {str(p)!r}: no such file (record one with lengthrl.analysis.drift."
                              "record_verl in the verl environment)")
        rec = torch.load(p, weights_only=False)
        rec = rec.get("drift", rec)  # tests/fixtures/verl_drift.pt holds it under "drift", beside cross-checks
        version, grads, lengths = rec["verl_version"], rec["grads"], tuple(rec["lengths"])
        framework = f"verl {version} (recorded)"
    probe = probe_batch(lengths)
    max_len = max(lengths)
    rows = []
    for name, ours in VERL_LOSSES.items():
        lo, hi = VERL_CLIPS.get(name, (0.2, 0.28))
        for mode in VERL_AGG_MODES:
            key = f"{name}/{mode}"
            if key not in grads:
                raise ConfigError(f"--recorded {recorded}: no gradient for {key}; record it again")
            g_ours = _ours(ours, probe, max_len, clip_low=lo, clip_high=hi, loss_agg_mode=mode)
            rows += _rows(framework, key, f"{ours}+{mode}", AGG_WEIGHTS[mode][0], probe, grads[key], g_ours)
    return rows


def print_rows(rows: list[DriftRow], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=140)
    fw = rows[0].framework if rows else "?"
    table = Table(title=f"Version-drift audit against {fw}: per-token gradient weight at ratio 1 (w = -dL/dlogp)")
    for col in ("theirs", "lengthrl", "formula", "|y|", "A", "w theirs", "w lengthrl", "w·|y| theirs", ""):
        table.add_column(col, justify="left" if col in ("theirs", "lengthrl", "formula") else "right")
    for r in rows:
        table.add_row(r.theirs, r.ours, r.formula, str(r.length), f"{r.advantage:+g}", f"{r.theirs_w:+.6f}",
                      f"{r.ours_w:+.6f}", f"{r.theirs_w * r.length:+.5f}", "ok" if r.ok else "MISMATCH")
    console.print(table)
