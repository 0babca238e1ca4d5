"""`lengthrl compare`: runs side by side, with a length-controlled win rate of each run against the first."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lengthrl.analysis import plots
from lengthrl.analysis.lc import length_controlled_winrate
from lengthrl.analysis.runs import Run, load_run, unique_names
from lengthrl.commands import command
from lengthrl.errors import ConfigError
from lengthrl.eval.metrics import aes

TABLE_KEYS = ["n_prompts", "n_records", "acc", "len/mean", "len/median", "len/p90", "len/correct_mean",
              "len/wrong_mean", "trunc_rate", "acc_per_1k_tokens"]


def compare_runs(runs: list[Run], eval_name: str | None = None, ties: str = "half",
                 prompt_term: bool = False) -> dict[str, Any]:
    """The comparison as a dict: {"runs": names, "table": {metric: [value per run]}, "lc": [per run vs first]}.

    The table holds the eval metrics (pass@k for every k all runs share), the final training metrics
    (train/<key> from the last metrics.jsonl row) and AES against the first run. `lc` holds, for each run after
    the first, the raw and length-controlled win rate over the first run (see `lengthrl.analysis.lc`)."""
    if len(runs) < 2:
        raise ConfigError("compare: give at least two runs (RUN_A RUN_B ...)")
    names = unique_names(runs)
    evals = [r.main_eval(eval_name) for r in runs]
    missing = [n for n, e in zip(names, evals) if e is None]
    if missing:
        raise ConfigError(f"compare: run(s) {', '.join(missing)} have no eval file; run `lengthrl eval --model ... "
                          f"--out RUN/eval.json` first")
    pass_keys = sorted({k for e in evals for k in e.metrics if k.startswith("pass@") and "_" not in k},
                       key=lambda k: int(k[5:]))
    pass_keys = [k for k in pass_keys if all(k in e.metrics for e in evals)]
    table: dict[str, list[Any]] = {k: [e.metrics.get(k) for e in evals] for k in TABLE_KEYS[:3] + pass_keys + TABLE_KEYS[3:]}
    base = evals[0].metrics
    table["aes_vs_first"] = [aes(e.metrics["acc"], e.metrics["len/mean"], base["acc"], base["len/mean"])
                             if base.get("acc") and base.get("len/mean") else None for e in evals]
    for key in ("reward/mean", "acc", "len/mean", "entropy"):
        vals = [r.metrics[-1].get(key) if r.metrics else None for r in runs]
        if any(v is not None for v in vals):
            table[f"train/{key}"] = vals
    lc = []
    for name, e in zip(names[1:], evals[1:]):
        fit = length_controlled_winrate(e.records, evals[0].records, ties=ties, prompt_term=prompt_term)
        lc.append({"run": name, "baseline": names[0], "raw_win_rate": fit.raw_win_rate,
                   "lc_win_rate": fit.lc_win_rate, "theta": fit.theta, "phi": fit.phi, "psi": fit.psi,
                   "dlen_std": fit.dlen_std, "n_pairs": fit.n_pairs, "converged": fit.converged})
    return {"runs": names, "table": table, "lc": lc}


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def print_comparison(res: dict[str, Any]) -> None:
    """Rich tables of the metrics and of the win rates."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    t = Table(title="runs side by side")
    t.add_column("metric")
    for n in res["runs"]:
        t.add_column(n, justify="right")
    for k, vals in res["table"].items():
        t.add_row(k, *[_fmt(v) for v in vals])
    con = Console()
    con.print(t)
    if res["lc"]:
        w = Table(title=f"win rate vs {res['runs'][0]} (per-prompt response pairs)")
        for col in ("run", "raw", "length-controlled", "phi (length)", "pairs"):
            w.add_column(col, justify="right")
        for r in res["lc"]:
            w.add_row(r["run"], _fmt(r["raw_win_rate"]), _fmt(r["lc_win_rate"]), _fmt(r["phi"]), str(r["n_pairs"]))
        con.print(w)


@command("compare", help="Compare runs side by side, with a length-controlled win rate against the first run.",
         examples=["lengthrl compare runs/gspo runs/luspo --out runs/compare",
                   "lengthrl compare runs/a/eval.json runs/b/eval.json --ties drop"])
def run(args: argparse.Namespace) -> int:
    """Run the `compare` subcommand."""
    runs = [load_run(p) for p in args.runs]
    res = compare_runs(runs, args.eval, args.ties, args.prompt_term)
    print_comparison(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(res, indent=1))
    names = res["runs"]
    for fname, fig in (("frontier.png", plots.frontier(runs, names)),
                       ("eval_lengths.png", plots.eval_length_boxes(runs, names)),
                       ("win_rates.png", plots.win_rates(res["lc"])),
                       ("curves.png", plots.training_curves(runs, names))):
        if fig is not None:
            plots.save_png(plots.fig_png(fig), out / fname)
    print(f"wrote {out / 'compare.json'} and plots to {out}")
    return 0


@run.args
def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories or eval JSON files; the first is the baseline")
    p.add_argument("--eval", default=None, help="which eval of each run (eval_<NAME>.json; default eval.json)")
    p.add_argument("--ties", default="half", choices=["half", "drop"],
                   help="response pairs where both or neither are right: count 1/2 (default) or drop")
    p.add_argument("--prompt-term", action="store_true", help="add a prompt-difficulty term to the LC model")
    p.add_argument("--out", default="compare", help="folder for compare.json and plots (default ./compare)")
