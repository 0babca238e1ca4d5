"""`lengthrl losses` and `lengthrl advantages`: the registries, with formulas, papers and defaults."""

from __future__ import annotations

from lengthrl.advantages import ADVANTAGES
from lengthrl.commands import command
from lengthrl.objectives import LOSSES


@command("losses", examples=["lengthrl losses", "lengthrl losses --name luspo"])
def run_losses(args) -> int:
    from rich.console import Console
    from rich.table import Table

    names = [args.name] if args.name else LOSSES.names()
    table = Table(title="policy losses (lengthrl.objectives.LOSSES)", show_lines=True)
    for col in ("name", "formula", "default aggregation", "clip (lo/hi)", "weight per token", "paper"):
        table.add_column(col)
    for n in names:
        s = LOSSES[n]
        table.add_row(n, s.formula, s.agg_mode, f"{s.clip_low:g} / {s.clip_high:g}", s.weight, s.paper)
    Console().print(table)
    return 0


@run_losses.args
def _(p):
    p.add_argument("--name", default=None, help="show one loss only")


@command("advantages", examples=["lengthrl advantages"])
def run_advantages(args) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="advantage estimators (lengthrl.advantages.ADVANTAGES)")
    for col in ("name", "formula", "hyperparameters", "paper"):
        table.add_column(col)
    for n, s in ADVANTAGES.items():
        table.add_row(n, s.formula, ", ".join(f"{k}={v:g}" for k, v in s.hparams.items()) or "-", s.paper)
    Console().print(table)
    return 0


@run_advantages.args
def _(p):
    pass
