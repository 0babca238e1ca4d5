"""Length-bias audit: the gradient weight each token receives under each registered loss.

For a batch of short and long responses with positive and negative advantages, at ratio 1 (logp = old_logp),
the audit differentiates every loss by autograd and reads, per response, the per-token weight w = -dL/dlogp_t
(the push on that token's log-probability) and the total weight per response |y|·w. It checks the per-token
weight against the analytical formula of the loss's spec (docs/papers.md section 1): grpo and gspo give A/(B·|y|),
dapo A/T_tot, dr_grpo A/(B·L_max), luspo A/B.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lengthrl.commands import command
from lengthrl.errors import ConfigError
from lengthrl.objectives import LOSSES, policy_loss


@dataclass
class AuditRow:
    loss: str
    length: int
    advantage: float
    per_token_weight: float  # -dL/dlogp_t, the same for every token of the response
    total_weight: float  # length · per-token weight
    expected_per_token: float  # from the loss's analytical formula
    spread: float  # max - min of the per-token weights inside the response (0 when uniform)
    ok: bool


def audit(
    losses: list[str] | None = None,
    lengths: tuple[int, ...] = (8, 64),
    advantages: tuple[float, ...] = (1.0, -1.0),
    max_len: int | None = None,
    seed: int = 0,
) -> list[AuditRow]:
    """Rows (loss × length × advantage) of per-token and total gradient weight at ratio 1."""
    losses = list(losses or LOSSES.names())
    for name in losses:
        LOSSES[name]  # unknown names raise with the valid list
    if not lengths or min(lengths) < 1:
        raise ConfigError(f"audit: lengths must be positive integers, got {lengths}")
    max_len = max_len or max(lengths)
    if max_len < max(lengths):
        raise ConfigError(f"audit: max_len={max_len} is below the longest response {max(lengths)}")
    cases = [(L, a) for L in lengths for a in advantages]
    B, T = len(cases), max(lengths)
    mask = torch.zeros(B, T, dtype=torch.float64)
    for i, (L, _) in enumerate(cases):
        mask[i, :L] = 1.0
    adv = torch.tensor([a for _, a in cases], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    base = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3.0  # log-probs in (-3, 0]
    T_tot = float(mask.sum())
    rows = []
    for name in losses:
        spec = LOSSES[name]
        logp = base.clone().requires_grad_(True)
        out = policy_loss(name, logp, base, adv, mask, max_len=max_len)
        (grad,) = torch.autograd.grad(out.loss, logp)
        w = -grad  # [B, T]
        for i, (L, a) in enumerate(cases):
            wi = w[i, :L]
            per_tok = float(wi.mean())
            expected = spec.weight_fn(a, B, L, T_tot, max_len)
            spread = float(wi.max() - wi.min())
            ok = math.isclose(per_tok, expected, rel_tol=1e-9, abs_tol=1e-12) and spread <= 1e-12 and (
                float(w[i, L:].abs().max()) == 0.0 if L < T else True
            )
            rows.append(AuditRow(name, L, a, per_tok, per_tok * L, expected, spread, ok))
    return rows


def print_table(rows: list[AuditRow], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=130)
    table = Table(title="Length-bias audit: gradient weight per token at ratio 1 (w = -dL/dlogp)")
    for col in ("loss", "formula", "|y|", "A", "w per token", "expected", "w per response", ""):
        table.add_column(col, justify="right" if col not in ("loss", "formula") else "left")
    for r in rows:
        table.add_row(
            r.loss, LOSSES[r.loss].weight, str(r.length), f"{r.advantage:+g}", f"{r.per_token_weight:+.6f}",
            f"{r.expected_per_token:+.6f}", f"{r.total_weight:+.5f}", "ok" if r.ok else "MISMATCH",
        )
    console.print(table)


def plot(rows: list[AuditRow], path: Path) -> None:
    """Two panels: per-token weight relative to the shortest positive response of the same loss (the length
    bias, free of each loss's overall scale), and each response's share of the batch's total |weight|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = list(dict.fromkeys(r.loss for r in rows))
    cases = list(dict.fromkeys((r.length, r.advantage) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(cases)
    for k, (L, a) in enumerate(cases):
        rel, share = [], []
        for n in losses:
            mine = [r for r in rows if r.loss == n]
            r = next(r for r in mine if r.length == L and r.advantage == a)
            ref = abs(mine[0].per_token_weight) or 1.0
            rel.append(r.per_token_weight / ref)
            share.append(abs(r.total_weight) / (sum(abs(m.total_weight) for m in mine) or 1.0))
        xs = [i + (k - (len(cases) - 1) / 2) * width for i in range(len(losses))]
        axes[0].bar(xs, rel, width, label=f"|y|={L}, A={a:+g}")
        axes[1].bar(xs, share, width, label=f"|y|={L}, A={a:+g}")
    titles = ("per-token weight, relative to the first response of the same loss",
              "share of the batch's total |gradient weight| per response")
    for ax, title in zip(axes, titles):
        ax.set_xticks(range(len(losses)), losses, rotation=30)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle("Length bias of each objective at ratio 1 (the same batch for every loss)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--lengths must be comma-separated integers, got {s!r}") from None


@command(
    "audit",
    examples=[
        "lengthrl audit --out runs/audit",
        "lengthrl audit --losses grpo,gspo,luspo --lengths 16,256 --max-len 512",
    ],
)
def run_audit(args) -> int:
    losses = [s for s in args.losses.split(",") if s] if args.losses else None
    rows = audit(losses, _ints(args.lengths), max_len=args.max_len)
    print_table(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    plot(rows, out / "audit.png")
    bad = [r for r in rows if not r.ok]
    print(f"wrote {out / 'audit.json'} and {out / 'audit.png'}; "
          f"{len(rows) - len(bad)}/{len(rows)} rows match the analytical weights")
    return 1 if bad else 0


@run_audit.args
def _(p):
    p.add_argument("--losses", default="", help=f"comma-separated subset of: {', '.join(LOSSES)} (default: all)")
    p.add_argument("--lengths", default="8,64", help="response lengths to compare (default 8,64)")
    p.add_argument("--max-len", type=int, default=None, help="L_max of dr_grpo (default: the longest length)")
    p.add_argument("--out", default="runs/audit", help="directory for audit.json and audit.png")
