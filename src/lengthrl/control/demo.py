"""`lengthrl demo-budget`: the Lagrangian length controller against hand-tuned length penalties.

From one model and seed, train the controller (configs/lagrangian.toml) and the hand-tuned recipes DLER,
L1-exact and Kimi, each aimed at the same budget B where the recipe has a length knob (DLER's cap max_len = B,
L1's target = B; Kimi's group-relative reward has none and runs as published). Report, per run: the final
training length (mean of `len/mean` over the last 5 steps) against B, the first step at which the 3-step
moving average of `len/mean` is at or under B (how fast), the accuracy (training, last 5 steps, and
held-out, sampled as the recipe's eval settings say), and budget-forcing curves of every final model next to the starting one. Writes
OUT/budget_report.md, OUT/budget_summary.json, OUT/budget_training.png and OUT/budget_curves.{json,png}.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

from lengthrl.commands import command

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
RUNS = ("lagrangian", "dler", "l1_exact", "kimi")
# how each recipe is aimed at the budget: reward term name -> hyperparameter set to B
BUDGET_KNOBS = {"dler": "max_len", "l1_exact": "target", "l1_max": "target"}


def aimed_config(name: str, budget: int, overrides: list[str]):
    """The recipe configs/<name>.toml aimed at `budget`: the controller's length_budget, or the length knob of
    its reward terms (BUDGET_KNOBS). Returns (TrainConfig, note on what was set)."""
    from lengthrl.train.validate import build_config

    path = CONFIGS / f"{name}.toml"
    raw = tomllib.loads(path.read_text())
    notes, extra = [], {}
    if raw.get("length_budget") is not None or raw.get("length_budget_per_prompt"):
        extra["length_budget"] = float(budget)
        notes.append(f"length_budget={budget}")
    terms = []
    for t in raw.get("reward", []):
        t = dict(t)
        if t.get("name") in BUDGET_KNOBS:
            t[BUDGET_KNOBS[t["name"]]] = budget
            notes.append(f"{t['name']}.{BUDGET_KNOBS[t['name']]}={budget}")
        terms.append(t)
    if terms:
        extra["reward"] = terms
    return build_config(path, overrides, extra), (", ".join(notes) or "no length knob: run as published")


def _how(cfg) -> str:
    """How the held-out evaluation samples, in words."""
    if cfg.eval_temperature == 0:
        return "greedy"
    return f"temperature {cfg.eval_temperature:g}, {cfg.eval_samples} samples per prompt"


def summarize_run(rows: list[dict], budget: float, window: int = 5, smooth: int = 3) -> dict:
    """Per-run figures from metrics rows: final_len (mean len/mean of the last `window` steps), steps_to_budget
    (first step whose `smooth`-step moving average of len/mean is <= budget; None if never), final_acc
    (mean acc of the last `window` steps), rel_gap ((final_len - budget) / budget), final lambda if any."""
    if not rows:
        return {"final_len": None, "steps_to_budget": None, "final_acc": None, "rel_gap": None}
    lens = [r["len/mean"] for r in rows]
    tail = rows[-window:]
    final_len = sum(r["len/mean"] for r in tail) / len(tail)
    reach = None
    for i in range(len(lens)):
        seg = lens[max(0, i - smooth + 1): i + 1]
        if len(seg) == min(smooth, i + 1) and sum(seg) / len(seg) <= budget:
            reach = rows[i]["step"]
            break
    out = {"final_len": final_len, "steps_to_budget": reach,
           "final_acc": sum(r["acc"] for r in tail) / len(tail), "rel_gap": (final_len - budget) / budget}
    if "lagrange/lambda" in rows[-1]:
        out["final_lambda"] = rows[-1]["lagrange/lambda"]
    return out


def plot_training(runs: dict[str, list[dict]], budget: float, path: Path) -> Path:
    """Mean length (with the budget) and accuracy against the step, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in runs.items():
        steps = [r["step"] for r in rows]
        a1.plot(steps, [r["len/mean"] for r in rows], label=name)
        a2.plot(steps, [r["acc"] for r in rows], label=name)
    a1.axhline(budget, color="k", ls="--", lw=1, label=f"budget {budget:g}")
    a1.set(xlabel="step", ylabel="mean response length (tokens)")
    a2.set(xlabel="step", ylabel="training accuracy", ylim=(-0.02, 1.02))
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    a1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def _reach(s: dict) -> str:
    if "final_len" not in s:  # the starting model: no training
        return "-"
    return "never" if s.get("steps_to_budget") is None else str(s["steps_to_budget"])


def report_table(summary: dict, budget: float) -> str:
    """The markdown table of the comparison."""
    lines = [f"| run | aimed at B={budget:g} by | final train len | gap to B | steps to B | train acc | held-out acc "
             "| held-out len | final lambda |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        ev = s.get("eval", {})
        lines.append(f"| {name} | {s.get('aimed', '-')} | {_fmt(s.get('final_len'), '.1f')} | "
                     f"{_fmt(None if s.get('rel_gap') is None else 100 * s['rel_gap'], '+.0f')}% | "
                     f"{_reach(s)} | "
                     f"{_fmt(s.get('final_acc'))} | {_fmt(ev.get('acc'))} | {_fmt(ev.get('len/mean'), '.1f')} | "
                     f"{_fmt(s.get('final_lambda'))} |")
    return "\n".join(lines) + "\n"


# claims judged over seeds: recipe -> (claim, paper, per-seed measure, threshold, direction)
BUDGET_CLAIMS = {
    "lagrangian": ("the Lagrangian controller ends within 10% of the budget (final training length)",
                   "PID Lagrangian, arXiv 2007.03964", "abs_gap", 0.10, "below"),
    "l1_exact": ("L1-exact ends within 10% of its target length (final training length)",
                 "L1 / LCPO, arXiv 2503.04697", "abs_gap", 0.10, "below"),
    "dler": ("DLER ends at or under its length cap (final training length)", "DLER, arXiv 2510.15110",
             "rel_gap", 0.0, "below"),
}


def budget_verdicts(per_seed: dict[str, list[dict]], budget: float, seeds: tuple[int, ...]) -> list:
    """The BUDGET_CLAIMS of the recipes that ran, each judged over the seeds' final training lengths:
    abs_gap = |final_len - B| / B, rel_gap = (final_len - B) / B (lengthrl.analysis.verdicts)."""
    from lengthrl.analysis.verdicts import judge_one

    out = []
    for name, (claim, paper, measure, thr, direction) in BUDGET_CLAIMS.items():
        rows = per_seed.get(name)
        if not rows or any(r.get("rel_gap") is None for r in rows):
            continue
        vals = [abs(r["rel_gap"]) if measure == "abs_gap" else r["rel_gap"] for r in rows]
        words = "|final_len - B| / B" if measure == "abs_gap" else "(final_len - B) / B"
        out.append(judge_one(claim, paper, f"{words} at B={budget:g}", vals, thr, direction, seeds))
    return out


def _seed_figures(run: dict, eval_metrics: dict) -> dict:
    """One seed's figures of a recipe: its `summarize_run` values the claims use and its held-out accuracy."""
    return {k: run.get(k) for k in ("final_len", "rel_gap", "final_acc")} | {"eval_acc": eval_metrics["acc"]}


def _verdict_md(found: list, seeds: tuple[int, ...]) -> str:
    if not found:
        return ("## Claims over seeds\n\nOne seed: no verdict (an interval over training seeds needs >= 2; "
                "pass `--seeds 0,1,2,3`).\n\n")
    return (f"## Claims over seeds {', '.join(map(str, seeds))}\n\nEach claim on one value per training seed, "
            "95% t-interval over the seeds (the tables above are the first seed's runs).\n\n"
            + "".join(f"- **{v.status.replace('_', ' ')}**: {v.text()}\n" for v in found) + "\n")


def run_budget_demo(out: Path, budget: int, model: str | None = None, steps: int | None = None,
                    eval_prompts: int = 100, seed: int | tuple[int, ...] = 0, runs: tuple[str, ...] = RUNS,
                    curve_budgets: tuple[int, ...] = (8, 16, 32, 64, 128), extra: list[str] | None = None,
                    progress: bool = True) -> dict:
    """Train every run of `runs` aimed at `budget` once per seed, evaluate, draw the plots, write the report;
    returns the summary dict of the first seed's runs (also in OUT/budget_summary.json, with every seed's
    figures under "per_seed" and the claims judged over the seeds under "verdicts")."""
    from rich.console import Console

    from lengthrl.eval.budget import budget_curve, knee, plot_curves, save_curves
    from lengthrl.rollout import SamplingParams
    from lengthrl.models.organism import resolve_model_dir
    from lengthrl.train.loop import Trainer, train

    console = Console()
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = str(resolve_model_dir(model or "organism"))
    seeds = (seed,) if isinstance(seed, int) else tuple(seed)
    seed = seeds[0]
    overrides = [f"model={json.dumps(model_dir)}", f"eval_prompts={eval_prompts}", f"seed={seed}", *(extra or [])]
    if steps is not None:
        overrides.append(f"steps={steps}")
    summary: dict[str, dict] = {}
    histories: dict[str, list[dict]] = {}
    finals: dict[str, str] = {"start": model_dir}
    base_cfg, _ = aimed_config(runs[0], budget, overrides)
    base = Trainer(base_cfg, out / "start", progress=False)
    summary["start"] = {"aimed": "(the starting model, no RL)", "eval": base.evaluate().metrics}
    for name in runs:
        t = time.perf_counter()
        cfg, note = aimed_config(name, budget, overrides)
        console.rule(f"{name}: {note}")
        tr = train(cfg, out / name, progress=progress)
        rows = tr.metrics.rows()
        histories[name] = rows
        summary[name] = {"aimed": note, **summarize_run(rows, budget),
                         "eval": json.loads((out / name / "eval.json").read_text())["metrics"],
                         "train_time_s": time.perf_counter() - t}
        finals[name] = str(out / name / "final")
    per_seed = {name: [_seed_figures(summary[name], summary[name]["eval"])] for name in runs}
    for sd in seeds[1:]:
        for name in runs:
            cfg, note = aimed_config(name, budget, [*overrides, f"seed={sd}"])
            console.rule(f"{name} seed {sd}: {note}")
            d = out / f"{name}-seed{sd}"
            sm = summarize_run(train(cfg, d, progress=progress).metrics.rows(), budget)
            per_seed[name].append(_seed_figures(sm, json.loads((d / "eval.json").read_text())["metrics"]))
    found = budget_verdicts(per_seed, budget, seeds) if len(seeds) >= 2 else []
    plot_training(histories, budget, out / "budget_training.png")
    params = SamplingParams(temperature=0.0, seed=seed)
    prompts = base.task.samples("test", eval_prompts, seed=seed)
    curves = {name: budget_curve(d, base.task, curve_budgets, params, samples=prompts, seed=seed)
              for name, d in finals.items()}
    save_curves(curves, out / "budget_curves.json", records=False)
    plot_curves(curves, out / "budget_curves.png", title=f"budget forcing on {base.task.name} (greedy)")
    for name, pts in curves.items():
        summary[name]["forced_acc"] = {p.budget: p.acc for p in pts}
        summary[name]["knee"] = knee(pts)
    wall = time.perf_counter() - t0
    table = report_table(summary, budget)
    curve_rows = ["| model | " + " | ".join(f"B={b}" for b in sorted(set(curve_budgets))) + " | knee |",
                  "|---|" + "---|" * (len(set(curve_budgets)) + 1)]
    for name, s in summary.items():
        curve_rows.append(f"| {name} | " + " | ".join(f"{a:.3f}" for a in s["forced_acc"].values())
                          + f" | {s['knee']} |")
    md = (f"# Length budget B = {budget}: Lagrangian controller vs hand-tuned penalties\n\n"
          f"Model {model_dir}, seed {seed}, overrides {overrides}. Held-out: {eval_prompts} prompts, "
          f"{_how(base_cfg)}.\n\n"
          + table + "\n![training](budget_training.png)\n\n## Accuracy under budget forcing (greedy)\n\n"
          + "\n".join(curve_rows) + "\n\n![curves](budget_curves.png)\n\n"
          + _verdict_md(found, seeds) + f"Wall time {wall:.0f} s.\n")
    (out / "budget_report.md").write_text(md)
    (out / "budget_summary.json").write_text(json.dumps(
        {"budget": budget, "runs": summary, "seeds": list(seeds), "per_seed": per_seed,
         "verdicts": [v.to_json() for v in found], "wall_time_s": wall, "overrides": overrides},
        indent=1, default=str))
    console.print(md)
    return summary


@command("demo-budget", examples=["lengthrl demo-budget --out runs/demo-budget",
                   "lengthrl demo-budget --model runs/sft/final --budget 32 --steps 10 --eval-prompts 50"])
def run_budget_demo_cmd(args) -> int:
    """Run `lengthrl demo-budget`."""
    from lengthrl.errors import ConfigError
    from lengthrl.eval.budget import parse_budgets

    if args.budget < 1:
        raise ConfigError(f"--budget must be a positive number of tokens, got {args.budget}")
    runs = tuple(r for r in args.runs.split(",") if r)
    missing = [r for r in runs if not (CONFIGS / f"{r}.toml").is_file()]
    if missing:
        raise ConfigError(f"--runs: no recipe {', '.join(missing)} in {CONFIGS}; valid: "
                          f"{', '.join(sorted(p.stem for p in CONFIGS.glob('*.toml')))}")
    try:
        seeds = (args.seed,) if args.seed is not None else tuple(int(x) for x in str(args.seeds).split(",") if x.strip())
    except ValueError:
        seeds = ()
    if not seeds:
        raise ConfigError(f"--seeds: give comma-separated integers, got {args.seeds!r}")
    run_budget_demo(Path(args.out), args.budget, args.model, args.steps, args.eval_prompts, seeds, runs,
                    tuple(parse_budgets(args.curve_budgets)), args.set, progress=not args.quiet)
    return 0


@run_budget_demo_cmd.args
def _(p):
    p.add_argument("--out", default="runs/demo-budget")
    p.add_argument("--budget", type=int, default=24, help="the length budget B in tokens (default 24: the organism samples ~32-37 tokens on count_letters)")
    p.add_argument("--model", default=None, help="a local model directory instead of the organism")
    p.add_argument("--steps", type=int, default=None, help="RL steps per run (default: each recipe's)")
    p.add_argument("--eval-prompts", type=int, default=100, help="held-out prompts per evaluation")
    p.add_argument("--seeds", default="0,1,2,3",
                   help="comma-separated training seeds; every recipe is trained once per seed and the budget "
                        "claims are judged over them (tables and curves: the first seed's runs)")
    p.add_argument("--seed", type=int, default=None, help="one seed only (no verdicts): the same as --seeds N")
    p.add_argument("--runs", default=",".join(RUNS), help="recipes from configs/ to compare")
    p.add_argument("--curve-budgets", default="8,16,32,64,128", help="budgets of the budget-forcing curves")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--quiet", action="store_true")
