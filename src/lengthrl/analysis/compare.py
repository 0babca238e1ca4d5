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

AES_BOOTSTRAP = 1000  # resamples of the prompts for the AES interval

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
    cis = [aes_interval(e.records, evals[0].records) if i else (None, None) for i, e in enumerate(evals)]
    table["aes_ci95_lo"], table["aes_ci95_hi"] = [c[0] for c in cis], [c[1] for c in cis]
    warnings = prompt_set_warnings(names, evals)
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
    return {"runs": names, "table": table, "lc": lc, "warnings": warnings}


def prompt_set_warnings(names: list[str], evals: list) -> list[str]:
    """One line per eval whose task or set of prompt ids differs from the first's: its accuracy, lengths, AES
    and win rates are then not like for like (the win rate pairs only the shared prompts)."""
    out = []
    base_ids = {r.prompt_id for r in evals[0].records}
    for name, e in zip(names[1:], evals[1:]):
        ids = {r.prompt_id for r in e.records}
        if e.task != evals[0].task:
            out.append(f"{name} was evaluated on task {e.task!r}, {names[0]} on {evals[0].task!r}")
        if ids != base_ids:
            out.append(f"{name} and {names[0]} were evaluated on different prompt sets ({len(ids & base_ids)} "
                       f"shared, {len(ids - base_ids)} only in {name}, {len(base_ids - ids)} only in {names[0]}); "
                       "evaluate both with the same --task/--data, --prompts and --seed to compare like for like")
    return out


def aes_interval(records, base_records, n_boot: int = AES_BOOTSTRAP, seed: int = 0,
                 level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of AES(records vs base_records) over prompts: the prompts (with all their
    samples) are resampled with replacement, paired (the same prompts for both) when the two evals share their
    prompt set, else each eval on its own. (None, None) when fewer than half the resamples give a defined AES
    (a baseline accuracy of 0)."""
    import numpy as np  # noqa: PLC0415

    def by_prompt(recs):
        groups: dict[str, list] = {}
        for r in recs:
            groups.setdefault(r.prompt_id, []).append(r)
        ids = sorted(groups)
        # per prompt: (number correct, total length, number of samples)
        return ids, np.array([[sum(r.correct for r in groups[i]), sum(r.length for r in groups[i]),
                               len(groups[i])] for i in ids], dtype=float)

    ids, a = by_prompt(records)
    base_ids, b = by_prompt(base_records)
    if not len(a) or not len(b):
        return None, None
    rng = np.random.default_rng(seed)
    paired = ids == base_ids
    vals = []
    for _ in range(n_boot):
        ia = rng.integers(0, len(a), len(a))
        ib = ia if paired else rng.integers(0, len(b), len(b))
        sa, sb = a[ia].sum(0), b[ib].sum(0)
        if sb[0] <= 0:
            continue
        vals.append(aes(sa[0] / sa[2], sa[1] / sa[2], sb[0] / sb[2], sb[1] / sb[2]))
    if len(vals) < n_boot / 2:
        return None, None
    lo, hi = np.quantile(vals, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


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
    for w in res.get("warnings", []):
        con.print(f"[yellow]warning: {w}")
    if res["lc"]:
        w = Table(title=f"win rate vs {res['runs'][0]} (per-prompt response pairs)")
        for col in ("run", "raw", "length-controlled", "phi (length)", "pairs"):
            w.add_column(col, justify="right")
        for r in res["lc"]:
            w.add_row(r["run"], _fmt(r["raw_win_rate"]), _fmt(r["lc_win_rate"]), _fmt(r["phi"]), str(r["n_pairs"]))
        con.print(w)


@command("compare", examples=["lengthrl compare runs/gspo runs/luspo --out runs/compare",
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
