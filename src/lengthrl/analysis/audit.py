"""Length-bias audit: the gradient weight each token receives under each registered loss.

For a batch of short and long responses with positive and negative advantages, at ratio 1 (logp = old_logp),
the audit differentiates every loss by autograd and reads, per response, the per-token weight w = -dL/dlogp_t
(the push on that token's log-probability) and the total weight per response |y|·w. It checks the per-token
weight against the analytical formula of the loss's spec (docs/papers.md section 1): grpo and gspo give A/(B·|y|),
dapo A/T_tot, dr_grpo A/(B·L_max), luspo A/B. Each loss is audited under its own aggregation; `aggs` adds rows of
grpo's term under other aggregations (by default `prompt-mean`, A/(P·T_p), each length's responses one group).

`lengthrl.analysis.probe.probe_batch` is the batch every row is read on; `lengthrl.analysis.drift` reads the installed frameworks'
losses on the same batch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lengthrl.commands import command
from lengthrl.errors import ConfigError
from lengthrl.analysis.probe import AGG_WEIGHTS, probe_batch, token_weights
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
    agg: str = ""  # the aggregation ("" = the loss's own)

    @property
    def label(self) -> str:
        return f"{self.loss}+{self.agg}" if self.agg else self.loss

    @property
    def formula(self) -> str:
        return AGG_WEIGHTS[self.agg][0] if self.agg else LOSSES[self.loss].weight


def audit(
    losses: list[str] | None = None,
    lengths: tuple[int, ...] = (8, 64),
    advantages: tuple[float, ...] = (1.0, -1.0),
    max_len: int | None = None,
    seed: int = 0,
    aggs: tuple[str, ...] = ("prompt-mean",),
) -> list[AuditRow]:
    """Rows (loss × length × advantage) of per-token and total gradient weight at ratio 1, then grpo's term
    under each aggregation of `aggs` (groups: each length's responses)."""
    losses = list(losses or LOSSES.names())
    for name in losses:
        LOSSES[name]  # unknown names raise with the valid list
    probe = probe_batch(lengths, advantages, seed)
    max_len = max_len or max(lengths)
    if max_len < max(lengths):
        raise ConfigError(f"audit: max_len={max_len} is below the longest response {max(lengths)}")
    for agg in aggs:
        if agg not in AGG_WEIGHTS:
            raise ConfigError(f"audit: unknown aggregation {agg!r}; valid: {', '.join(AGG_WEIGHTS)}")
    B, T_tot = len(probe.cases), float(probe.mask.sum())
    G = probe.group_size
    group_tokens = probe.mask.sum(-1).view(-1, G).sum(-1).repeat_interleave(G)  # [B] T_p of each row's group
    runs = [(name, "", {}) for name in losses]
    runs += [("grpo", agg, {"loss_agg_mode": agg, "group_size": G}) for agg in aggs]
    rows = []
    for name, agg, kw in runs:
        logp = probe.logp.clone().requires_grad_(True)
        out = policy_loss(name, logp, probe.logp, probe.advantages, probe.mask, max_len=max_len, **kw)
        (grad,) = torch.autograd.grad(out.loss, logp)
        for i, ((L, a), (per_tok, spread, pad_ok)) in enumerate(zip(probe.cases, token_weights(grad, probe))):
            if agg:
                expected = AGG_WEIGHTS[agg][1](a, B, L, T_tot, max_len, B // G, float(group_tokens[i]))
            else:
                expected = LOSSES[name].weight_fn(a, B, L, T_tot, max_len)
            ok = math.isclose(per_tok, expected, rel_tol=1e-9, abs_tol=1e-12) and spread <= 1e-12 and pad_ok
            rows.append(AuditRow(name, L, a, per_tok, per_tok * L, expected, spread, ok, agg))
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
            r.label, r.formula, str(r.length), f"{r.advantage:+g}", f"{r.per_token_weight:+.6f}",
            f"{r.expected_per_token:+.6f}", f"{r.total_weight:+.5f}", "ok" if r.ok else "MISMATCH",
        )
    console.print(table)


def plot(rows: list[AuditRow], path: Path) -> None:
    """Two panels: per-token weight relative to the shortest positive response of the same loss (the length
    bias, free of each loss's overall scale), and each response's share of the batch's total |weight|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = list(dict.fromkeys(r.label for r in rows))
    cases = list(dict.fromkeys((r.length, r.advantage) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(cases)
    for k, (L, a) in enumerate(cases):
        rel, share = [], []
        for n in losses:
            mine = [r for r in rows if r.label == n]
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
        "lengthrl audit --against trl",
        "lengthrl audit --against verl --recorded tests/fixtures/verl_drift.pt",
    ],
)
def run_audit(args) -> int:
    if args.against:
        return run_drift(args)
    if args.recorded:
        raise ConfigError("--recorded FILE goes with --against verl (a file of verl's recorded gradients)")
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


def run_drift(args) -> int:
    """`--against trl|verl`: the installed framework's loss code on the probe batch next to lengthrl's
    (lengthrl.analysis.drift); exit 1 when a row differs."""
    from lengthrl.analysis import drift

    if args.against == "trl":
        if args.recorded:
            raise ConfigError("--recorded FILE is for --against verl; --against trl runs the installed TRL")
        rows = drift.trl_rows()
    else:
        rows = drift.verl_rows(args.recorded)
    drift.print_rows(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"drift_{args.against}.json"
    path.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    bad = [r for r in rows if not r.ok]
    for key in dict.fromkeys(r.theirs for r in bad):
        print(f"MISMATCH {rows[0].framework} {key}: its per-token weight differs from lengthrl's "
              f"{next(r.ours for r in bad if r.theirs == key)} ({next(r.formula for r in bad if r.theirs == key)})")
    print(f"wrote {path}; {len(rows) - len(bad)}/{len(rows)} rows of {rows[0].framework} match lengthrl")
    return 1 if bad else 0


@run_audit.args
def _(p):
    p.add_argument("--losses", default="", help=f"comma-separated subset of: {', '.join(LOSSES)} (default: all)")
    p.add_argument("--lengths", default="8,64", help="response lengths to compare (default 8,64)")
    p.add_argument("--max-len", type=int, default=None, help="L_max of dr_grpo (default: the longest length)")
    p.add_argument("--out", default="runs/audit", help="directory for audit.json and audit.png (drift_*.json)")
    p.add_argument("--against", choices=("trl", "verl"), default=None,
                   help="version-drift audit: run the INSTALLED framework's loss code (TRL's "
                        "GRPOTrainer._compute_loss; verl's registered policy losses per loss_agg_mode) on the "
                        "probe batch and print its per-token weight next to lengthrl's, naming its version")
    p.add_argument("--recorded", default=None, metavar="FILE",
                   help="with --against verl: verl's gradients recorded where it is installed "
                        "(tests/fixtures/record_verl_drift.py) instead of importing verl")
