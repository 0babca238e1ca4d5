"""`lengthrl experiments-report`: the per-seed table and the curves of `make experiments` (a)-(c).

    lengthrl experiments-report runs/experiments --png docs/img/experiments.png --json runs/experiments/report.json

A run directory is named RECIPE-sS or RECIPE-TAG-sS (e.g. grpo-s0, gspo-offpolicy-s3); the runs of one recipe
are its seeds. Per run: held-out accuracy and mean length (eval.json), the training length of the first and
last 5 steps, the least-squares slope per step of the wrong answers' training length (`len/wrong_mean`), and
the mean clipped share of tokens and of sequences over the steps (metrics.jsonl). The figure shows, per recipe,
the training length and the wrong answers' length over the steps, the mean over seeds thick and each seed thin.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lengthrl.analysis.verdict_cli import run_slope, run_value
from lengthrl.commands import command
from lengthrl.errors import ConfigError
from lengthrl.eval.records import read_jsonl

_RUN = re.compile(r"(?P<recipe>.+)-s(?P<seed>\d+)")


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def run_row(path: Path) -> dict[str, Any]:
    """The figures of one run directory (see the module docstring)."""
    rows = read_jsonl(path / "metrics.jsonl")
    lens = [r["len/mean"] for r in rows if isinstance(r.get("len/mean"), (int, float))]
    return {
        "acc": run_value(str(path), "acc"),
        "len": run_value(str(path), "len/mean"),
        "train_len_first5": _mean(lens[:5]),
        "train_len_last5": _mean(lens[-5:]),
        "wrong_len_slope": run_slope(str(path), "len/wrong_mean"),
        "clip_frac_tok": _mean([r.get("clip_frac_tok") for r in rows]),
        "clip_frac_seq": _mean([r.get("clip_frac_seq") for r in rows]),
        "steps": len(rows),
    }


def collect(exp_dir: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """recipe -> seed -> `run_row`, for every finished run (one with eval.json) under `exp_dir`."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ConfigError(f"experiments-report: {exp_dir} is not a directory; run `make experiments` first")
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for d in sorted(exp_dir.iterdir()):
        m = _RUN.fullmatch(d.name)
        if m and (d / "eval.json").is_file() and (d / "metrics.jsonl").is_file():
            out.setdefault(m["recipe"], {})[int(m["seed"])] = run_row(d)
    if not out:
        raise ConfigError(f"experiments-report: no finished run (NAME-sSEED with eval.json) under {exp_dir}")
    return out


def markdown(table: dict[str, dict[int, dict[str, Any]]]) -> str:
    """One row per recipe: the mean over seeds, then the per-seed values in brackets."""
    cols = [("acc", ".3f"), ("len", ".1f"), ("train_len_first5", ".1f"), ("train_len_last5", ".1f"),
            ("wrong_len_slope", "+.3f"), ("clip_frac_tok", ".4f"), ("clip_frac_seq", ".4f")]
    lines = ["| recipe | seeds | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for recipe, seeds in table.items():
        cells = []
        for c, spec in cols:
            vals = [seeds[s][c] for s in sorted(seeds)]
            mean = _mean(vals)
            per = ", ".join("-" if v is None else format(v, spec) for v in vals)
            cells.append("-" if mean is None else f"{format(mean, spec)} ({per})")
        lines.append(f"| {recipe} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(exp_dir: str | Path, table: dict[str, dict[int, dict[str, Any]]], path: str | Path) -> Path:
    """Training `len/mean` and `len/wrong_mean` over the steps, per recipe (mean over seeds thick)."""
    from lengthrl.analysis.plots import fig_png, plt, save_png  # noqa: PLC0415  (plots sets the Agg backend)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, recipe in enumerate(table):
        color = f"C{i % 10}"
        for ax, key in zip(axes, ("len/mean", "len/wrong_mean")):
            curves = []
            for seed in sorted(table[recipe]):
                rows = read_jsonl(Path(exp_dir) / f"{recipe}-s{seed}" / "metrics.jsonl")
                pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
                if pts:
                    ax.plot(*zip(*pts), color=color, lw=0.5, alpha=0.4)
                    curves.append(dict(pts))
            steps = sorted(set().union(*curves)) if curves else []
            mean = [_mean([c.get(s) for c in curves]) for s in steps]
            ax.plot(steps, mean, color=color, lw=2, label=recipe)
    for ax, title in zip(axes, ("training mean length (tokens)", "training mean length of wrong answers")):
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig_png(fig), Path(path))


@command("experiments-report", examples=["lengthrl experiments-report runs/experiments --png runs/experiments/curves.png"])
def run(args) -> int:
    """Print the markdown table of the runs under EXP_DIR; optionally write the figure and the JSON."""
    table = collect(args.exp_dir)
    print(markdown(table))
    if args.json:
        Path(args.json).write_text(json.dumps({r: {str(s): v for s, v in seeds.items()} for r, seeds in table.items()},
                                              indent=1))
    if args.png:
        print(f"figure: {plot(args.exp_dir, table, args.png)}")
    return 0


@run.args
def _args(p) -> None:
    p.add_argument("exp_dir", help="the directory of the runs (make experiments: runs/experiments)")
    p.add_argument("--png", default=None, help="write the curves here")
    p.add_argument("--json", default=None, help="write the per-seed figures here as JSON")
