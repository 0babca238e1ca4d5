"""Matplotlib figures for reports and comparisons (Agg backend, no display needed), and their encoding as
base64 PNG for self-contained HTML."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lengthrl.analysis.runs import Run  # noqa: E402

CURVES = [  # (title, [metric keys]) panels of the training-curve figure
    ("reward", ["reward/mean"]),
    ("accuracy", ["acc"]),
    ("length (mean, p90)", ["len/mean", "len/p90"]),
    ("length: correct vs wrong", ["len/correct_mean", "len/wrong_mean"]),
]
_STYLES = ["-", "--", ":", "-."]


def fig_png(fig) -> bytes:
    """PNG bytes of a figure (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_b64(png: bytes) -> str:
    """A data URI for an <img> tag."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def training_curves(runs: Sequence[Run], names: Sequence[str]):
    """2x2 panels of reward, accuracy, length mean/p90 and correct-vs-wrong length against step; None when no
    run logged any of them."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    drew = False
    for ax, (title, keys) in zip(axes.flat, CURVES):
        for ci, (run, name) in enumerate(zip(runs, names)):
            for ki, key in enumerate(keys):
                xs, ys = run.series(key)
                if xs:
                    ax.plot(xs, ys, _STYLES[ki % 4], color=f"C{ci}", label=f"{name} {key}")
                    drew = True
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    if not drew:
        plt.close(fig)
        return None
    return fig


def _phase_rows(run: Run, first: bool) -> list[dict]:
    steps = sorted({int(r["step"]) for r in run.samples if isinstance(r.get("step"), (int, float))})
    if not steps:
        return []
    k = max(1, len(steps) // 10)  # first / last 10% of the logged steps
    chosen = set(steps[:k] if first else steps[-k:])
    return [r for r in run.samples if r.get("step") in chosen and isinstance(r.get("length"), (int, float))]


def length_histograms(run: Run):
    """Histograms of response length by correctness at the start and end of training (samples.jsonl, first and
    last 10% of logged steps); None without samples."""
    start, end = _phase_rows(run, True), _phase_rows(run, False)
    if not start:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharex=True)
    all_len = [r["length"] for r in start + end]
    bins = np.linspace(0, max(all_len) + 1, 30)
    for ax, rows, title in ((axes[0], start, "start"), (axes[1], end, "end")):
        for ok, color, label in ((True, "C2", "correct"), (False, "C3", "wrong")):
            L = [r["length"] for r in rows if bool(r.get("correct")) == ok]
            if L:
                ax.hist(L, bins=bins, alpha=0.6, color=color, label=f"{label} (n={len(L)}, mean {np.mean(L):.0f})")
        ax.set_title(f"{run.name}: {title} of training")
        ax.set_xlabel("response length (tokens)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def frontier(runs: Sequence[Run], names: Sequence[str]):
    """Accuracy against mean length: each run's training trajectory (faint, from metrics) and its eval result
    (large marker). Up-and-left is better. None when there is nothing to plot."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    drew = False
    for ci, (run, name) in enumerate(zip(runs, names)):
        xs, L = run.series("len/mean")
        xa, A = run.series("acc")
        common = sorted(set(xs) & set(xa))
        if common:
            dl, da = dict(zip(xs, L)), dict(zip(xa, A))
            ax.plot([dl[s] for s in common], [da[s] for s in common], "-", color=f"C{ci}", alpha=0.35)
            ax.scatter([dl[common[-1]]], [da[common[-1]]], color=f"C{ci}", marker="x")
            drew = True
        ev = run.main_eval()
        if ev is not None and ev.metrics.get("len/mean") is not None:
            ax.scatter([ev.metrics["len/mean"]], [ev.metrics["acc"]], s=80, color=f"C{ci}", label=name,
                       edgecolor="k")
            drew = True
    if not drew:
        plt.close(fig)
        return None
    ax.set_xlabel("mean response length (tokens)")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs length (o: eval, x: last training step)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def eval_length_boxes(runs: Sequence[Run], names: Sequence[str]):
    """Box plots of eval response lengths per run, split by correctness; None without evals."""
    data, labels = [], []
    for run, name in zip(runs, names):
        ev = run.main_eval()
        if ev is None:
            continue
        for ok in (True, False):
            L = [r.length for r in ev.records if r.correct == ok]
            if L:
                data.append(L)
                labels.append(f"{name}\n{'correct' if ok else 'wrong'}")
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(data)), 4))
    ax.boxplot(data, tick_labels=labels)
    ax.set_ylabel("response length (tokens)")
    ax.set_title("eval lengths by correctness")
    fig.tight_layout()
    return fig


def win_rates(rows: Sequence[dict]):
    """Bars of raw vs length-controlled win rate of each run against the baseline."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(rows)), 3.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["raw_win_rate"] for r in rows], 0.4, label="raw")
    ax.bar(x + 0.2, [r["lc_win_rate"] for r in rows], 0.4, label="length-controlled")
    ax.axhline(0.5, color="k", lw=0.8, ls=":")
    ax.set_xticks(x, [r["run"] for r in rows])
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"win rate vs {rows[0]['baseline']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_png(png: bytes, path: Path) -> Path:
    """Write PNG bytes to `path` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


# the length-dynamics panels: (metric logged in metrics.jsonl each step, title)
DYNAMICS_PANELS = (("len/group_std_mean", "within-group length std"), ("adv_len_corr", "corr(length, advantage)"),
                   ("entropy", "entropy"))


def dynamics_figure(runs: Sequence[Run], names: Sequence[str]):
    """Per step, from each run's metrics.jsonl (every response of the step, not the samples.jsonl subset): the
    within-group length std, corr(length, advantage) and entropy, with markers so a one-step run shows; None when
    no run logs any of them."""
    fig, axes = plt.subplots(1, len(DYNAMICS_PANELS), figsize=(12, 3.2))
    drew = False
    for ci, (run, name) in enumerate(zip(runs, names)):
        for ax, (key, _) in zip(axes, DYNAMICS_PANELS):
            xs, ys = run.series(key)
            if xs:
                ax.plot(xs, ys, color=f"C{ci}", label=name, marker="o", markersize=3)
                drew = True
    if not drew:
        plt.close(fig)
        return None
    axes[1].axhline(0, color="k", lw=0.8, ls=":")
    for ax, (key, title) in zip(axes, DYNAMICS_PANELS):
        ax.set_title(f"{title} ({key})", fontsize=9)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"{key} not logged", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig
