"""`lengthrl demo`, the main job: from one SFT checkpoint of the model organism, train with GSPO,
LUSPO and a length-penalty recipe (DLER) for each of a few seeds, evaluate each on held-out prompts next to the SFT model, and write a
report (HTML + markdown) with the length-bias audit, plus a summary that says whether the organism reproduces
the papers' direction, with the numbers."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from lengthrl.commands import command

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEMO_RUNS = ("gspo", "luspo", "dler")


def _eval_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())["metrics"]


def _len_se(m: dict) -> float:
    """A rough standard error of the mean length: (p90 - median) / 1.28 as a spread estimate over sqrt(n)."""
    spread = max((m.get("len/p90") or 0) - (m.get("len/median") or 0), 1.0) / 1.28
    return spread / max(m.get("n_records", 1), 1) ** 0.5


def _acc_se(m: dict) -> float:
    p, n = m["acc"], max(m.get("n_records", 1), 1)
    return (p * (1 - p) / n) ** 0.5


def verdicts(results: dict[str, dict]) -> list[str]:
    """Plain-language comparison with the papers' direction, from the measured numbers and their noise."""
    out = []
    g, lu, base = results.get("gspo"), results.get("luspo"), results.get("sft")
    if g and lu:
        lg, ll = g["len/mean"], lu["len/mean"]
        se = (_len_se(g) ** 2 + _len_se(lu) ** 2) ** 0.5
        if ll - lg > 2 * se:
            same = "reproduces"
        elif lg - ll > 2 * se:
            same = "does NOT reproduce (GSPO is longer)"
        else:
            same = "shows no clear difference in"
        out.append(f"GSPO vs LUSPO: held-out mean length {lg:.1f} (GSPO) vs {ll:.1f} (LUSPO), ratio "
                   f"{ll / max(lg, 1e-9):.2f} (difference {ll - lg:+.1f} +- {2 * se:.1f} at 2 s.e.); the paper "
                   f"reports LUSPO longer (x1.51-1.63): the organism {same} that direction. Accuracy "
                   f"{g['acc']:.3f} +- {2 * _acc_se(g):.3f} (GSPO) vs {lu['acc']:.3f} +- {2 * _acc_se(lu):.3f} "
                   "(LUSPO).")
    d = results.get("dler")
    if d and base:
        cut = 1 - d["len/mean"] / max(base["len/mean"], 1e-9)
        dacc = d["acc"] - base["acc"]
        ok = "reproduces" if cut > 0.1 and dacc > -0.05 else "does NOT reproduce"
        out.append(f"DLER vs the SFT model: mean length {base['len/mean']:.1f} -> {d['len/mean']:.1f} "
                   f"({100 * cut:+.0f}% shorter), accuracy {base['acc']:.3f} -> {d['acc']:.3f} ({dacc:+.3f}, "
                   f"2 s.e. {2 * (_acc_se(d) ** 2 + _acc_se(base) ** 2) ** 0.5:.3f}); the paper reports ~70% "
                   f"shorter at the same accuracy: the organism {ok} the direction (criterion: >10% shorter, "
                   "accuracy down by less than 0.05).")
    return out


def pooled_metrics(run_dirs: list[Path]) -> dict:
    """Eval metrics of several runs (seeds) pooled over all their records."""
    from lengthrl.eval.metrics import summarize
    from lengthrl.eval.records import load_eval

    records = [r for d in run_dirs for r in load_eval(d / "eval.json").records]
    return summarize(records)


def run_demo(out: Path, steps: int | None, eval_prompts: int, seed: int | tuple[int, ...], model: str | None = None,
             runs: tuple[str, ...] = DEMO_RUNS, extra: list[str] | None = None, progress: bool = True) -> dict:
    """`seed` may be several seeds: each recipe is trained once per seed (the SFT model is the same), the
    held-out records are pooled for the verdicts, and the report shows the first seed's runs."""
    from rich.console import Console
    from rich.table import Table

    from lengthrl.analysis.audit import audit, plot
    from lengthrl.analysis.report import build_report
    from lengthrl.analysis.runs import load_run
    from lengthrl.train.config import build_config
    from lengthrl.models.organism import resolve_model_dir
    from lengthrl.train.loop import Trainer, train

    console = Console()
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    console.rule("[bold]lengthrl demo: what GSPO, LUSPO and a length penalty do to response length")
    model_dir = str(resolve_model_dir(model or "organism"))
    console.print(f"model: {model_dir}  ({time.perf_counter() - t0:.0f}s)")

    rows = audit()
    (out / "audit.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    plot(rows, out / "audit.png")
    console.print(f"length-bias audit: {sum(r.ok for r in rows)}/{len(rows)} rows match the analytical weights "
                  f"-> {out / 'audit.png'}")

    seeds = (seed,) if isinstance(seed, int) else tuple(seed)
    overrides = [f"model={json.dumps(model_dir)}", f"eval_prompts={eval_prompts}", f"seed={seeds[0]}",
                 *(extra or [])]
    if steps is not None:
        overrides.append(f"steps={steps}")
    # the SFT model, evaluated on the same held-out prompts (a trainer with no steps taken)
    base_cfg = build_config(CONFIGS / f"{runs[0]}.toml", overrides)
    base = Trainer(base_cfg, out / "sft", progress=False)
    base.evaluate()
    results = {"sft": _eval_metrics(out / "sft")}
    timings = {}
    for name in runs:
        t = time.perf_counter()
        dirs = []
        for k, sd in enumerate(seeds):
            d = out / (name if k == 0 else f"{name}-seed{sd}")
            console.rule(f"{name}  seed {sd}  ({CONFIGS / f'{name}.toml'})")
            cfg = build_config(CONFIGS / f"{name}.toml", [*overrides, f"seed={sd}"])
            train(cfg, d, progress=progress)
            dirs.append(d)
        results[name] = pooled_metrics(dirs) if len(dirs) > 1 else _eval_metrics(dirs[0])
        timings[name] = time.perf_counter() - t
    (out / "sft" / "audit.json").write_text((out / "audit.json").read_text())
    (out / "sft" / "audit.png").write_bytes((out / "audit.png").read_bytes())
    html, md = build_report([load_run(out / n) for n in ("sft", *runs)], out, title="lengthrl demo")
    notes = verdicts(results)
    ev = build_config(CONFIGS / f"{runs[0]}.toml", overrides)
    how = "greedy" if ev.eval_temperature == 0 else f"temperature {ev.eval_temperature:g}, {ev.eval_samples} samples"
    table = Table(title=f"held-out evaluation ({ev.eval_prompts} prompts, {how}; runs pooled over seeds "
                        f"{', '.join(map(str, seeds))}) after training from the same SFT model")
    for col in ("run", "acc", "len mean", "len correct", "len wrong", "acc / 1k tokens", "train time"):
        table.add_column(col, justify="right")
    for name, m in results.items():
        table.add_row(name, f"{m['acc']:.3f}", f"{m['len/mean']:.1f}", f"{m.get('len/correct_mean') or 0:.1f}",
                      f"{m.get('len/wrong_mean') or 0:.1f}", f"{m.get('acc_per_1k_tokens') or 0:.2f}",
                      f"{timings.get(name, 0):.0f}s")
    console.print(table)
    for n in notes:
        console.print("- " + n)
    wall = time.perf_counter() - t0
    summary = {"results": results, "verdicts": notes, "timings_s": timings, "wall_time_s": wall,
               "overrides": overrides, "seeds": list(seeds)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    with open(md, "a") as f:
        f.write("\n## Does the organism reproduce the papers' direction?\n\n")
        f.write(f"Held-out records pooled over seeds {', '.join(map(str, seeds))} (the runs above are seed "
                f"{seeds[0]}'s).\n\n" + "".join(f"- {n}\n" for n in notes))
        f.write(f"\nWall time of the whole demo: {wall:.0f} s.\n")
    console.print(f"report: {html} and {md}; wall time {wall:.0f}s")
    return summary


@command("demo", examples=["lengthrl demo --out runs/demo", "lengthrl demo --out runs/quick --steps 5 --eval-prompts 50"])
def run_demo_cmd(args) -> int:
    seeds = tuple(int(x) for x in str(args.seeds).split(",") if x.strip())
    run_demo(Path(args.out), args.steps, args.eval_prompts, seeds, args.model,
             tuple(args.runs.split(",")), args.set, progress=not args.quiet)
    return 0


@run_demo_cmd.args
def _(p):
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=None, help="RL steps per run (default: each recipe's)")
    p.add_argument("--eval-prompts", type=int, default=200, help="held-out prompts per evaluation")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds; each recipe is trained once per seed")
    p.add_argument("--model", default=None, help="a local model directory instead of the organism")
    p.add_argument("--runs", default=",".join(DEMO_RUNS), help="recipes from configs/ to train")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--quiet", action="store_true")
