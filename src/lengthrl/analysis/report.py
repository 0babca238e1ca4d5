"""`lengthrl report`: one self-contained HTML file (plots embedded as base64 PNG, no external resources) and a
markdown summary for one or more run directories.

Sections: summary table (final training metrics and eval metrics, AES against the first run), collapse
warnings, length dynamics, training curves, accuracy-vs-length frontier, length histograms by correctness at
the start and end of training, the length-bias audit (RUN/audit.json, RUN/audit.png) when present, and sample
responses.
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path
from typing import Any

from lengthrl.analysis import plots
from lengthrl.analysis.collapse import scan_collapse
from lengthrl.analysis.dynamics import entropy_trend
from lengthrl.analysis.lc import length_controlled_winrate
from lengthrl.analysis.runs import Run, load_run, unique_names
from lengthrl.commands import command
from lengthrl.errors import DataError
from lengthrl.eval.metrics import aes

TRAIN_KEYS = ["reward/mean", "acc", "len/mean", "len/p90", "len/correct_mean", "len/wrong_mean", "trunc_rate",
              "entropy", "zero_var_groups"]
EVAL_KEYS = ["acc", "len/mean", "len/correct_mean", "len/wrong_mean", "trunc_rate", "acc_per_1k_tokens"]
SAMPLE_CHARS = 800  # response text shown per sample


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_rows(runs: list[Run], names: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (one row per run)."""
    evals = [r.main_eval() for r in runs]
    pass_keys = sorted({k for e in evals if e for k in e.metrics if k.startswith("pass@") and "_" not in k},
                       key=lambda k: int(k[5:]))
    header = ["run", "steps"] + [f"train {k}" for k in TRAIN_KEYS] + [f"eval {k}" for k in EVAL_KEYS + pass_keys]
    header.append("eval AES vs first")
    base = evals[0].metrics if evals[0] else None
    rows = []
    for run, name, ev in zip(runs, names, evals):
        last = run.metrics[-1] if run.metrics else {}
        row = [name, str(len(run.metrics))] + [_fmt(last.get(k)) for k in TRAIN_KEYS]
        row += [_fmt(ev.metrics.get(k)) if ev else "-" for k in EVAL_KEYS + pass_keys]
        a = None
        if ev and base and base.get("acc") and base.get("len/mean"):
            a = aes(ev.metrics["acc"], ev.metrics["len/mean"], base["acc"], base["len/mean"])
        row.append(_fmt(a))
        rows.append(row)
    return header, rows


def dynamics_lines(run: Run) -> list[str]:
    """Plain-text findings on a run's length dynamics and collapse warnings."""
    try:
        lines = [w.message for w in scan_collapse(run.metrics)] if run.metrics else []
    except DataError as e:
        return [f"collapse check skipped: {e}"]
    if run.metrics and not lines:
        lines.append("no length or entropy collapse detected (window 20, 30% drop, entropy below 20%)")
    t = entropy_trend(run.metrics)
    if t["slope"] is not None:
        lines.append(f"entropy {t['first']:.3g} -> {t['last']:.3g} (slope {t['slope']:.3g}/step)")
    for key, what in (("len/group_std_mean", "within-group length std"),
                      ("adv_len_corr", "length/advantage correlation")):
        xs, ys = run.series(key)  # logged over every response of each step (metrics.jsonl)
        if xs:
            lines.append(f"{what} ({key}): {ys[0]:+.3g} at step {xs[0]:g} -> {ys[-1]:+.3g} at step {xs[-1]:g}")
    return lines


def _samples_to_show(run: Run, per_kind: int = 2) -> list[dict]:
    steps = sorted({r.get("step") for r in run.samples if isinstance(r.get("step"), (int, float))})
    out = []
    for step in ([steps[0], steps[-1]] if len(steps) > 1 else steps):
        rows = [r for r in run.samples if r.get("step") == step]
        for ok in (True, False):
            out += [r for r in rows if bool(r.get("correct")) == ok][:per_kind]
    return out


def _audit_table(audit: Any) -> tuple[list[str], list[list[str]]]:
    """A table view of audit.json: a list of objects becomes rows; an object of objects one row per key;
    anything else key / JSON value rows."""
    if isinstance(audit, dict) and isinstance(audit.get("rows"), list):
        audit = audit["rows"]
    if isinstance(audit, list) and audit and all(isinstance(r, dict) for r in audit):
        cols = list(dict.fromkeys(k for r in audit for k in r))
        return cols, [[_fmt(r.get(c)) for c in cols] for r in audit]
    if isinstance(audit, dict) and audit and all(isinstance(v, dict) for v in audit.values()):
        cols = list(dict.fromkeys(k for v in audit.values() for k in v))
        return ["name"] + cols, [[k] + [_fmt(v.get(c)) for c in cols] for k, v in audit.items()]
    items = audit.items() if isinstance(audit, dict) else enumerate(audit if isinstance(audit, list) else [audit])
    return ["key", "value"], [[str(k), v if isinstance(v, str) else json.dumps(v)] for k, v in items]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


CSS = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}img{max-width:100%}
pre{white-space:pre-wrap;background:#f7f7f7;padding:6px;font-size:12px}.warn{color:#a40000}"""


def build_report(runs: list[Run], out_dir: str | Path, title: str = "lengthrl report") -> tuple[Path, Path]:
    """Write OUT/report.html (self-contained) and OUT/report.md (+ OUT/report_files/*.png). Returns both paths."""
    out = Path(out_dir)
    files = out / "report_files"
    out.mkdir(parents=True, exist_ok=True)
    names = unique_names(runs)
    H = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
         f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    M = [f"# {title}", ""]
    H.append("<p>runs: " + ", ".join(f"<b>{html.escape(n)}</b> ({html.escape(str(r.path))})"
                                   for n, r in zip(names, runs)) + "</p>")
    M.append("runs: " + ", ".join(f"**{n}** (`{r.path}`)" for n, r in zip(names, runs)))

    header, rows = summary_rows(runs, names)
    H += ["<h2>Summary</h2>", _html_table(header, rows)]
    M += ["", "## Summary", "", _md_table(header, rows)]

    with_eval = [(r, n) for r, n in zip(runs, names) if r.main_eval() is not None]
    if len(with_eval) >= 2:
        (base_run, base_name), rest = with_eval[0], with_eval[1:]
        wrows = []
        for r, n in rest:
            fit = length_controlled_winrate(r.main_eval().records, base_run.main_eval().records)
            wrows.append([n, _fmt(fit.raw_win_rate), _fmt(fit.lc_win_rate), _fmt(fit.phi), str(fit.n_pairs)])
        wh = ["run", f"raw win rate vs {base_name}", "length-controlled win rate", "phi (length)", "pairs"]
        H += ["<h2>Head to head (eval, length-controlled)</h2>", _html_table(wh, wrows)]
        M += ["", "## Head to head (eval, length-controlled)", "", _md_table(wh, wrows)]

    H.append("<h2>Length dynamics and collapse</h2>")
    M += ["", "## Length dynamics and collapse", ""]
    for run, name in zip(runs, names):
        lines = dynamics_lines(run)
        if lines:
            H.append(f"<h3>{html.escape(name)}</h3><ul>" + "".join(
                f"<li class='{'warn' if 'collapse at' in ln else ''}'>{html.escape(ln)}</li>" for ln in lines) + "</ul>")
            M += [f"### {name}", ""] + [f"- {ln}" for ln in lines] + [""]

    figures: list[tuple[str, str, Any]] = [
        ("Training curves", "curves.png", plots.training_curves(runs, names)),
        ("Length dynamics", "dynamics.png", plots.dynamics_figure(runs, names)),
        ("Accuracy vs length (frontier)", "frontier.png", plots.frontier(runs, names)),
    ]
    figures += [(f"Length by correctness, start vs end: {n}", f"hist_{i}.png", plots.length_histograms(r))
                for i, (r, n) in enumerate(zip(runs, names))]
    figures.append(("Eval lengths by correctness", "eval_lengths.png", plots.eval_length_boxes(runs, names)))
    for caption, fname, fig in figures:
        if fig is None:
            continue
        png = plots.fig_png(fig)
        plots.save_png(png, files / fname)
        H.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='{plots.png_b64(png)}'>")
        M += [f"## {caption}", "", f"![{caption}](report_files/{fname})", ""]

    for run, name in zip(runs, names):
        if run.audit is None and run.audit_png is None:
            continue
        H.append(f"<h2>Length-bias audit: {html.escape(name)}</h2>")
        M += [f"## Length-bias audit: {name}", ""]
        if run.audit is not None:
            ah, ar = _audit_table(run.audit)
            H.append(_html_table(ah, ar))
            M += [_md_table(ah, ar), ""]
        if run.audit_png is not None:
            png = run.audit_png.read_bytes()
            plots.save_png(png, files / f"audit_{name}.png")
            H.append(f"<img alt='audit' src='{plots.png_b64(png)}'>")
            M += [f"![audit](report_files/audit_{name}.png)", ""]

    H.append("<h2>Sample responses</h2>")
    M += ["## Sample responses", ""]
    for run, name in zip(runs, names):
        shown = _samples_to_show(run)
        if not shown:
            continue
        H.append(f"<h3>{html.escape(name)}</h3>")
        M += [f"### {name}", ""]
        for r in shown:
            meta = (f"step {r.get('step')} · prompt {r.get('prompt_id')} · length {r.get('length')} · "
                    f"{'correct' if r.get('correct') else 'wrong'} · reward {_fmt(r.get('reward'))} · "
                    f"advantage {_fmt(r.get('advantage'))}")
            text = str(r.get("response", ""))
            text = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + " [...]"
            H.append(f"<p>{html.escape(meta)}</p><pre>{html.escape(str(r.get('prompt', '')))}\n---\n"
                     f"{html.escape(text)}</pre>")
            M += [f"- {meta}", "", "```", text[:300].replace("```", "'''"), "```", ""]
    H.append("</body></html>")
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text("\n".join(H))
    md_path.write_text("\n".join(M) + "\n")
    return html_path, md_path


@command("report", examples=["lengthrl report runs/demo", "lengthrl report runs/gspo runs/luspo --out runs/report"])
def run(args: argparse.Namespace) -> int:
    """Run the `report` subcommand."""
    runs = [load_run(p) for p in args.runs]
    out = Path(args.out) if args.out else (runs[0].path if len(runs) == 1 and runs[0].path.is_dir() else Path("report"))
    h, m = build_report(runs, out, args.title)
    print(f"wrote {h} and {m}")
    return 0


@run.args
def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (or eval JSON files)")
    p.add_argument("--out", default=None, help="output folder (default: the run directory for one run, else ./report)")
    p.add_argument("--title", default="lengthrl report")
